/* Optimizers: every torch.optim fixture replayed step by step (one cmocka
 * test per configuration), then the contract around the update rules:
 * validation of every hyperparameter, zero-gradient steps, skipping
 * non-finite steps, frozen parameters, per-parameter step counts, clipping,
 * schedules, allocation behaviour and out-of-memory on the first step.
 *
 * Tolerance: parameters agree with PyTorch 1.13 at rtol 1e-4 / atol 1e-5
 * after every one of the 20 steps. The update arithmetic follows torch's
 * float32 operation order; what remains is last-bit noise in the gradients
 * (torch and vikt accumulate the slice gradients in different orders, and
 * torch's kernels may fuse multiply-adds) carried through 20 steps. */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/optim_fixtures.h"

#define RTOL 1e-4
#define ATOL 1e-5

enum { NP = OF_NX + OF_NW };

/* The fixture objective's two parameters on a model. */
typedef struct rig {
    vikt_model *m;
    vikt_tensor *x; /* [6] */
    vikt_tensor *w; /* [2, 3] */
} rig;

static rig rig_make(void) {
    rig r;
    r.m = vt_model(3);
    r.x = vikt_param(r.m, "x", 1, (int64_t[]){OF_NX}, VIKT_INIT_ZEROS);
    r.w = vikt_param(r.m, "w", 2, (int64_t[]){2, 3}, VIKT_INIT_ZEROS);
    assert_non_null(r.x);
    assert_non_null(r.w);
    assert_int_equal(vikt_tensor_copy_in(r.x, of_x0, OF_NX), VIKT_OK);
    assert_int_equal(vikt_tensor_copy_in(r.w, of_w0, OF_NW), VIKT_OK);
    return r;
}

/* sum(10·(b − a²)² + (1 − a)²) + sum(C·(W − T)²), a = x[0:5], b = x[1:6]: the
 * same ops in the same order as tools/gen_optim_fixtures.py. */
static vikt_tensor *objective(vikt_model *m, vikt_tensor *x, vikt_tensor *w) {
    const int64_t five = 5, mat[2] = {2, 3};
    vikt_tensor *a = vikt_slice(m, x, 0, 0, 5), *b = vikt_slice(m, x, 0, 1, 5);
    vikt_tensor *valley = vikt_scale(m, vikt_square(m, vikt_sub(m, b, vikt_square(m, a))),
                                     of_rosen_scale);
    vikt_tensor *slope = vikt_square(m, vikt_sub(m, vikt_ones(m, 1, &five), a));
    vikt_tensor *rosen = vikt_sum(m, vikt_add(m, valley, slope));
    vikt_tensor *target = vikt_input(m, 2, mat, of_target);
    vikt_tensor *weight = vikt_input(m, 2, mat, of_weight);
    vikt_tensor *quad = vikt_sum(m, vikt_mul(m, weight, vikt_square(m, vikt_sub(m, w, target))));
    return vikt_add(m, rosen, quad);
}

/* A fresh step: zero the gradients, forward, backward. */
static void compute_grads(rig *r) {
    assert_int_equal(vikt_step_begin(r->m), VIKT_OK);
    assert_int_equal(vikt_zero_grad(r->m), VIKT_OK);
    if (vikt_backward(r->m, objective(r->m, r->x, r->w)) != VIKT_OK)
        fail_msg("backward: %s", vikt_model_errmsg(r->m));
}

/* x then w, as bytes can be compared. */
static void snapshot(rig *r, float *out) {
    memcpy(out, vikt_tensor_data(r->x), OF_NX * sizeof(float));
    memcpy(out + OF_NX, vikt_tensor_data(r->w), OF_NW * sizeof(float));
}

static void snapshot_grads(rig *r, float *out) {
    memcpy(out, vikt_tensor_grad(r->x), OF_NX * sizeof(float));
    memcpy(out + OF_NX, vikt_tensor_grad(r->w), OF_NW * sizeof(float));
}

static vikt_optimizer *make_opt(rig *r, vikt_optim_kind kind, float lr) {
    vikt_optimizer *opt = NULL;
    if (vikt_optimizer_create(r->m, kind, lr, &opt) != VIKT_OK)
        fail_msg("create: %s", vikt_model_errmsg(r->m));
    return opt;
}

static void set_ok(vikt_optimizer *opt, vikt_model *m, vikt_optim_param p, double v) {
    if (vikt_optimizer_set(opt, p, v) != VIKT_OK)
        fail_msg("set %d = %g: %s", (int)p, v, vikt_model_errmsg(m));
}

static double get(const vikt_optimizer *opt, vikt_optim_param p) {
    double v = -12345;
    assert_int_equal(vikt_optimizer_get(opt, p, &v), VIKT_OK);
    return v;
}

static void step_ok(vikt_optimizer *opt, vikt_model *m) {
    if (vikt_optimizer_step(opt) != VIKT_OK) fail_msg("step: %s", vikt_model_errmsg(m));
}

/* ------------------------------------------------------------ fixtures */

/* worst[0]: largest |diff|; worst[1]: largest |diff| / |torch|. */
static void compare(const char *fixture, int step, const char *which, const float *got,
                    const float *want, int n, double *worst) {
    for (int i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (err > worst[0]) worst[0] = err;
        if (want[i] != 0 && err / fabs(want[i]) > worst[1]) worst[1] = err / fabs(want[i]);
        if (!(err <= ATOL + RTOL * fabs(want[i])))
            fail_msg("%s: step %d: %s[%d] = %.9g, torch %.9g (|diff| %.3g)", fixture, step + 1,
                     which, i, (double)got[i], (double)want[i], err);
    }
}

static void replay_fixture(void **state) {
    const of_fixture *f = &of_fixtures[*(int *)*state];
    rig r = rig_make();
    vikt_optimizer *opt = make_opt(&r, f->kind, 0.01f);
    for (int s = 0; s < f->nsettings; s++)
        set_ok(opt, r.m, f->settings[s].param, f->settings[s].value);
    double worst[2] = {0, 0};
    for (int step = 0; step < OF_STEPS; step++) {
        compute_grads(&r);
        step_ok(opt, r.m);
        compare(f->name, step, "x", vikt_tensor_data(r.x), f->x[step], OF_NX, worst);
        compare(f->name, step, "w", vikt_tensor_data(r.w), f->w[step], OF_NW, worst);
    }
    assert_int_equal(get(opt, VIKT_OPT_STEP), OF_STEPS);
    if (getenv("VIKT_TEST_VERBOSE"))
        printf("%-30s max |diff| %.3g, max relative %.3g\n", f->name, worst[0], worst[1]);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(r.m);
}

/* ---------------------------------------------------------- validation */

typedef struct bad_setting {
    vikt_optim_kind kind;
    vikt_optim_param param;
    double value;
    int err;
    const char *needle; /* besides "vikt_optimizer_set" */
} bad_setting;

static const bad_setting bad_settings[] = {
    {VIKT_OPTIM_SGD, VIKT_OPT_LR, -0.01, VIKT_ERR_ARG, "lr must be finite and >= 0, got -0.01"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_LR, NAN, VIKT_ERR_ARG, "lr must be finite and >= 0, got nan"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_LR, INFINITY, VIKT_ERR_ARG, "lr must be finite"},
    {VIKT_OPTIM_SGD, VIKT_OPT_WEIGHT_DECAY, -1e-4, VIKT_ERR_ARG, "weight_decay must be"},
    {VIKT_OPTIM_ADAMW, VIKT_OPT_WEIGHT_DECAY, INFINITY, VIKT_ERR_ARG, "weight_decay must be"},
    {VIKT_OPTIM_SGD, VIKT_OPT_MOMENTUM, 1.0, VIKT_ERR_ARG, "momentum must be in [0, 1), got 1"},
    {VIKT_OPTIM_RMSPROP, VIKT_OPT_MOMENTUM, -0.1, VIKT_ERR_ARG, "momentum must be in [0, 1)"},
    {VIKT_OPTIM_SGD, VIKT_OPT_DAMPENING, 1.5, VIKT_ERR_ARG, "dampening must be in [0, 1], got 1.5"},
    {VIKT_OPTIM_SGD, VIKT_OPT_NESTEROV, 2, VIKT_ERR_ARG, "nesterov must be 0 or 1, got 2"},
    {VIKT_OPTIM_SGD, VIKT_OPT_NESTEROV, 0.5, VIKT_ERR_ARG, "nesterov must be 0 or 1, got 0.5"},
    {VIKT_OPTIM_SGD, VIKT_OPT_NESTEROV, 1, VIKT_ERR_ARG, "nesterov = 1: Nesterov momentum needs"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_BETA1, 1.0, VIKT_ERR_ARG, "beta1 must be in [0, 1), got 1"},
    {VIKT_OPTIM_ADAMW, VIKT_OPT_BETA1, -0.1, VIKT_ERR_ARG, "beta1 must be in [0, 1), got -0.1"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_BETA2, 1.5, VIKT_ERR_ARG, "beta2 must be in [0, 1), got 1.5"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_EPS, 0, VIKT_ERR_ARG, "eps must be finite and > 0, got 0"},
    {VIKT_OPTIM_ADAGRAD, VIKT_OPT_EPS, -1e-8, VIKT_ERR_ARG, "eps must be finite and > 0"},
    {VIKT_OPTIM_RMSPROP, VIKT_OPT_EPS, NAN, VIKT_ERR_ARG, "eps must be finite and > 0, got nan"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_AMSGRAD, 3, VIKT_ERR_ARG, "amsgrad must be 0 or 1, got 3"},
    {VIKT_OPTIM_RMSPROP, VIKT_OPT_ALPHA, 1.0, VIKT_ERR_ARG, "alpha must be in [0, 1), got 1"},
    {VIKT_OPTIM_RMSPROP, VIKT_OPT_CENTERED, -1, VIKT_ERR_ARG, "centered must be 0 or 1, got -1"},
    {VIKT_OPTIM_ADAGRAD, VIKT_OPT_LR_DECAY, -0.5, VIKT_ERR_ARG, "lr_decay must be finite and >= 0"},
    {VIKT_OPTIM_ADAGRAD, VIKT_OPT_INITIAL_ACCUMULATOR, -1, VIKT_ERR_ARG,
     "initial_accumulator must be finite and >= 0, got -1"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_CLIP_NORM, -1, VIKT_ERR_ARG, "clip_norm must be finite and >= 0"},
    {VIKT_OPTIM_SGD, VIKT_OPT_CLIP_VALUE, NAN, VIKT_ERR_ARG, "clip_value must be finite and >= 0"},
    {VIKT_OPTIM_SGD, VIKT_OPT_SKIP_NONFINITE, 0.5, VIKT_ERR_ARG, "skip_nonfinite must be 0 or 1"},
    {VIKT_OPTIM_SGD, VIKT_OPT_SCHEDULE, 4, VIKT_ERR_ARG, "schedule must be a whole number in [0, 3], got 4"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_SCHEDULE, -1, VIKT_ERR_ARG, "schedule must be"},
    {VIKT_OPTIM_SGD, VIKT_OPT_STEP_SIZE, 0, VIKT_ERR_ARG, "step_size must be a whole number from 1 to 1e+15"},
    {VIKT_OPTIM_SGD, VIKT_OPT_STEP_SIZE, 2.5, VIKT_ERR_ARG, "step_size must be a whole number from 1 to 1e+15"},
    {VIKT_OPTIM_SGD, VIKT_OPT_GAMMA, 0, VIKT_ERR_ARG, "gamma must be in (0, 1], got 0"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_GAMMA, 1.01, VIKT_ERR_ARG, "gamma must be in (0, 1], got 1.01"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_WARMUP_STEPS, -1, VIKT_ERR_ARG, "warmup_steps must be a whole number from 0 to 1e+15, got -1"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_T_MAX, 0, VIKT_ERR_ARG, "t_max must be a whole number from 1 to 1e+15, got 0"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_ETA_MIN, -1e-3, VIKT_ERR_ARG, "eta_min must be finite and >= 0"},
    /* read-only */
    {VIKT_OPTIM_SGD, VIKT_OPT_STEP, 3, VIKT_ERR_ARG, "step is read-only"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_CURRENT_LR, 0.1, VIKT_ERR_ARG, "current_lr is read-only"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_SKIPPED_STEPS, 0, VIKT_ERR_ARG, "skipped_steps is read-only"},
    /* not used by the rule */
    {VIKT_OPTIM_SGD, VIKT_OPT_EPS, 1e-8, VIKT_ERR_ARG, "eps is not used by SGD"},
    {VIKT_OPTIM_SGD, VIKT_OPT_BETA1, 0.9, VIKT_ERR_ARG, "beta1 is not used by SGD"},
    {VIKT_OPTIM_SGD, VIKT_OPT_CENTERED, 1, VIKT_ERR_ARG, "centered is not used by SGD"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_MOMENTUM, 0.9, VIKT_ERR_ARG, "momentum is not used by Adam"},
    {VIKT_OPTIM_ADAM, VIKT_OPT_LR_DECAY, 0.1, VIKT_ERR_ARG, "lr_decay is not used by Adam"},
    {VIKT_OPTIM_ADAMW, VIKT_OPT_INITIAL_ACCUMULATOR, 0.1, VIKT_ERR_ARG,
     "initial_accumulator is not used by AdamW"},
    {VIKT_OPTIM_ADAGRAD, VIKT_OPT_ALPHA, 0.9, VIKT_ERR_ARG, "alpha is not used by AdaGrad"},
    {VIKT_OPTIM_ADAGRAD, VIKT_OPT_MOMENTUM, 0.9, VIKT_ERR_ARG, "momentum is not used by AdaGrad"},
    {VIKT_OPTIM_RMSPROP, VIKT_OPT_NESTEROV, 1, VIKT_ERR_ARG, "nesterov is not used by RMSProp"},
    {VIKT_OPTIM_RMSPROP, VIKT_OPT_BETA2, 0.9, VIKT_ERR_ARG, "beta2 is not used by RMSProp"},
    {VIKT_OPTIM_RMSPROP, VIKT_OPT_AMSGRAD, 1, VIKT_ERR_ARG, "amsgrad is not used by RMSProp"},
    /* unknown */
    {VIKT_OPTIM_SGD, (vikt_optim_param)99, 1, VIKT_ERR_ARG, "unknown parameter 99"},
    {VIKT_OPTIM_SGD, (vikt_optim_param)-1, 1, VIKT_ERR_ARG, "unknown parameter -1"},
};

static void every_bad_setting_is_refused(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    for (size_t i = 0; i < sizeof bad_settings / sizeof bad_settings[0]; i++) {
        const bad_setting *b = &bad_settings[i];
        vikt_optimizer *opt;
        assert_int_equal(vikt_optimizer_create(m, b->kind, 0.01f, &opt), VIKT_OK);
        double before[VIKT_OPT_SKIPPED_STEPS + 1];
        for (int p = 0; p <= VIKT_OPT_SKIPPED_STEPS; p++)
            before[p] = get(opt, (vikt_optim_param)p);
        int rc = vikt_optimizer_set(opt, b->param, b->value);
        if (rc != b->err)
            fail_msg("case %zu (param %d = %g): returned %d, expected %d", i, (int)b->param,
                     b->value, rc, b->err);
        vt_expect_error(m, b->err, "vikt_optimizer_set: ", b->needle);
        for (int p = 0; p <= VIKT_OPT_SKIPPED_STEPS; p++) /* nothing changed */
            assert_memory_equal(&before[p], &(double){get(opt, (vikt_optim_param)p)},
                                sizeof(double));
        vikt_optimizer_destroy(opt);
    }
    vikt_model_destroy(m);
}

/* Nesterov needs momentum > 0 and dampening 0, whichever is set last. */
static void nesterov_combinations(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(m, 0.1f, &opt), VIKT_OK);
    assert_int_equal(vikt_optimizer_set(opt, VIKT_OPT_NESTEROV, 1), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "nesterov = 1", "momentum 0, dampening 0");
    set_ok(opt, m, VIKT_OPT_MOMENTUM, 0.9);
    set_ok(opt, m, VIKT_OPT_NESTEROV, 1);
    assert_int_equal(vikt_optimizer_set(opt, VIKT_OPT_MOMENTUM, 0), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_optimizer_set: momentum = 0", "Nesterov");
    assert_int_equal(vikt_optimizer_set(opt, VIKT_OPT_DAMPENING, 0.1), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_optimizer_set: dampening = 0.1", "Nesterov");
    assert_true(get(opt, VIKT_OPT_MOMENTUM) == 0.9);
    assert_true(get(opt, VIKT_OPT_DAMPENING) == 0);
    set_ok(opt, m, VIKT_OPT_NESTEROV, 0);
    set_ok(opt, m, VIKT_OPT_DAMPENING, 1); /* the closed end of [0, 1] */
    set_ok(opt, m, VIKT_OPT_MOMENTUM, 0);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

static void create_errors(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_optimizer *opt = (vikt_optimizer *)&opt;
    assert_int_equal(vikt_optimizer_create(m, (vikt_optim_kind)5, 0.1f, &opt), VIKT_ERR_ARG);
    assert_null(opt);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_optimizer_create", "unknown optimizer kind 5");
    assert_int_equal(vikt_optimizer_create(m, VIKT_OPTIM_RMSPROP, -1.0f, &opt), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_optimizer_create", "lr must be finite and >= 0, got -1");
    assert_int_equal(vikt_sgd_create(m, NAN, &opt), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_sgd_create", "got nan");
    assert_int_equal(vikt_adam_create(m, INFINITY, &opt), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_adam_create", "got inf");
    assert_int_equal(vikt_adam_create(m, 0.1f, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_adam_create", "out is NULL");
    assert_int_equal(vikt_adam_create(NULL, 0.1f, &opt), VIKT_ERR_NULL);
    assert_null(opt);
    /* out of memory for the handle */
    vt_stats.fail_at = vt_stats.calls + 1;
    assert_int_equal(vikt_adam_create(m, 0.1f, &opt), VIKT_ERR_NOMEM);
    vt_stats.fail_at = 0;
    assert_null(opt);
    vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_adam_create", "out of memory");
    /* NULL handles */
    assert_int_equal(vikt_optimizer_set(NULL, VIKT_OPT_LR, 0.1), VIKT_ERR_NULL);
    assert_int_equal(vikt_optimizer_get(NULL, VIKT_OPT_LR, &(double){0}), VIKT_ERR_NULL);
    assert_int_equal(vikt_optimizer_step(NULL), VIKT_ERR_NULL);
    vikt_optimizer_destroy(NULL);
    assert_int_equal(vikt_adam_create(m, 0.0f, &opt), VIKT_OK); /* lr 0 is allowed */
    assert_int_equal(vikt_optimizer_get(opt, VIKT_OPT_LR, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_optimizer_get", NULL);
    assert_int_equal(vikt_optimizer_get(opt, (vikt_optim_param)25, &(double){0}), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_optimizer_get", "unknown parameter 25");
    vikt_optimizer_destroy(opt);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* The defaults the header documents, and values at the edges of each range. */
static void defaults_and_edges(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_optimizer *opt[5];
    for (int k = 0; k < 5; k++)
        assert_int_equal(vikt_optimizer_create(m, (vikt_optim_kind)k, 0.25f, &opt[k]), VIKT_OK);
    assert_true(get(opt[VIKT_OPTIM_SGD], VIKT_OPT_LR) == 0.25);
    assert_true(get(opt[VIKT_OPTIM_SGD], VIKT_OPT_MOMENTUM) == 0);
    assert_true(get(opt[VIKT_OPTIM_SGD], VIKT_OPT_DAMPENING) == 0);
    assert_true(get(opt[VIKT_OPTIM_SGD], VIKT_OPT_WEIGHT_DECAY) == 0);
    assert_true(get(opt[VIKT_OPTIM_ADAGRAD], VIKT_OPT_EPS) == 1e-10);
    assert_true(get(opt[VIKT_OPTIM_ADAGRAD], VIKT_OPT_INITIAL_ACCUMULATOR) == 0);
    assert_true(get(opt[VIKT_OPTIM_ADAGRAD], VIKT_OPT_LR_DECAY) == 0);
    assert_true(get(opt[VIKT_OPTIM_RMSPROP], VIKT_OPT_ALPHA) == 0.99);
    assert_true(get(opt[VIKT_OPTIM_RMSPROP], VIKT_OPT_EPS) == 1e-8);
    assert_true(get(opt[VIKT_OPTIM_ADAM], VIKT_OPT_BETA1) == 0.9);
    assert_true(get(opt[VIKT_OPTIM_ADAM], VIKT_OPT_BETA2) == 0.999);
    assert_true(get(opt[VIKT_OPTIM_ADAM], VIKT_OPT_EPS) == 1e-8);
    assert_true(get(opt[VIKT_OPTIM_ADAM], VIKT_OPT_WEIGHT_DECAY) == 0);
    assert_true(get(opt[VIKT_OPTIM_ADAMW], VIKT_OPT_WEIGHT_DECAY) == 0.01);
    for (int k = 0; k < 5; k++) {
        assert_true(get(opt[k], VIKT_OPT_SCHEDULE) == VIKT_SCHEDULE_CONSTANT);
        assert_true(get(opt[k], VIKT_OPT_STEP_SIZE) == 1);
        assert_true(get(opt[k], VIKT_OPT_GAMMA) == 0.1);
        assert_true(get(opt[k], VIKT_OPT_T_MAX) == 1);
        assert_true(get(opt[k], VIKT_OPT_WARMUP_STEPS) == 0);
        assert_true(get(opt[k], VIKT_OPT_ETA_MIN) == 0);
        assert_true(get(opt[k], VIKT_OPT_CLIP_NORM) == 0);
        assert_true(get(opt[k], VIKT_OPT_CLIP_VALUE) == 0);
        assert_true(get(opt[k], VIKT_OPT_SKIP_NONFINITE) == 0);
        assert_true(get(opt[k], VIKT_OPT_STEP) == 0);
        assert_true(get(opt[k], VIKT_OPT_SKIPPED_STEPS) == 0);
        assert_true(get(opt[k], VIKT_OPT_CURRENT_LR) == 0.25);
        set_ok(opt[k], m, VIKT_OPT_LR, 0);
        set_ok(opt[k], m, VIKT_OPT_GAMMA, 1);
        set_ok(opt[k], m, VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_COSINE);
        set_ok(opt[k], m, VIKT_OPT_WARMUP_STEPS, 0);
        set_ok(opt[k], m, VIKT_OPT_CLIP_NORM, 0);
        set_ok(opt[k], m, VIKT_OPT_SKIP_NONFINITE, 1);
    }
    set_ok(opt[VIKT_OPTIM_ADAM], m, VIKT_OPT_BETA1, 0);
    set_ok(opt[VIKT_OPTIM_ADAM], m, VIKT_OPT_BETA2, 0.99999);
    set_ok(opt[VIKT_OPTIM_RMSPROP], m, VIKT_OPT_ALPHA, 0);
    set_ok(opt[VIKT_OPTIM_RMSPROP], m, VIKT_OPT_MOMENTUM, 0.999);
    set_ok(opt[VIKT_OPTIM_ADAGRAD], m, VIKT_OPT_EPS, 1e-30);
    for (int k = 0; k < 5; k++) vikt_optimizer_destroy(opt[k]);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* AdaGrad's initial accumulator seeds the state on the first step; later it
 * is refused. */
static void initial_accumulator_only_before_first_step(void **state) {
    (void)state;
    rig r = rig_make();
    vikt_optimizer *opt = make_opt(&r, VIKT_OPTIM_ADAGRAD, 0.1f);
    set_ok(opt, r.m, VIKT_OPT_INITIAL_ACCUMULATOR, 0.5);
    compute_grads(&r);
    step_ok(opt, r.m);
    assert_int_equal(vikt_optimizer_set(opt, VIKT_OPT_INITIAL_ACCUMULATOR, 0.1), VIKT_ERR_STATE);
    vt_expect_error(r.m, VIKT_ERR_STATE, "vikt_optimizer_set: initial_accumulator = 0.1",
                    "before the first step");
    assert_true(get(opt, VIKT_OPT_INITIAL_ACCUMULATOR) == 0.5);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(r.m);
}

/* ------------------------------------------------------ update contract */

/* Rules that leave parameters unchanged under a zero gradient: every rule
 * from fresh state without weight decay (Adam: m = v = 0, so 0/(0 + eps)). */
static void zero_gradient_changes_nothing(void **state) {
    (void)state;
    struct { vikt_optim_kind kind; vikt_optim_param p; double v; } cases[] = {
        {VIKT_OPTIM_SGD, VIKT_OPT_LR, 0.1},
        {VIKT_OPTIM_SGD, VIKT_OPT_MOMENTUM, 0.9},
        {VIKT_OPTIM_ADAGRAD, VIKT_OPT_INITIAL_ACCUMULATOR, 0.3},
        {VIKT_OPTIM_ADAGRAD, VIKT_OPT_LR_DECAY, 0.1},
        {VIKT_OPTIM_RMSPROP, VIKT_OPT_LR, 0.1},
        {VIKT_OPTIM_RMSPROP, VIKT_OPT_CENTERED, 1},
        {VIKT_OPTIM_RMSPROP, VIKT_OPT_MOMENTUM, 0.9},
        {VIKT_OPTIM_ADAM, VIKT_OPT_LR, 0.1},
        {VIKT_OPTIM_ADAM, VIKT_OPT_AMSGRAD, 1},
        {VIKT_OPTIM_ADAMW, VIKT_OPT_WEIGHT_DECAY, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rig r = rig_make();
        vikt_optimizer *opt = make_opt(&r, cases[c].kind, 0.1f);
        set_ok(opt, r.m, cases[c].p, cases[c].v);
        float before[NP], after[NP];
        snapshot(&r, before);
        assert_int_equal(vikt_zero_grad(r.m), VIKT_OK);
        for (int s = 0; s < 3; s++) step_ok(opt, r.m);
        snapshot(&r, after);
        if (memcmp(before, after, sizeof before))
            fail_msg("case %zu (rule %d): a zero gradient changed the parameters", c,
                     (int)cases[c].kind);
        assert_true(get(opt, VIKT_OPT_STEP) == 3);
        vikt_optimizer_destroy(opt);
        vikt_model_destroy(r.m);
    }
}

/* ... and those that move them: decay, and momentum carried from earlier
 * steps. */
static void zero_gradient_with_decay_or_momentum_moves(void **state) {
    (void)state;
    rig r = rig_make();
    vikt_optimizer *adamw = make_opt(&r, VIKT_OPTIM_ADAMW, 0.1f); /* weight decay 0.01 */
    set_ok(adamw, r.m, VIKT_OPT_LR, 0.1);
    vikt_optimizer *sgd = make_opt(&r, VIKT_OPTIM_SGD, 0.1f);
    set_ok(sgd, r.m, VIKT_OPT_WEIGHT_DECAY, 0.5);
    assert_int_equal(vikt_zero_grad(r.m), VIKT_OK);
    step_ok(adamw, r.m);
    /* p·(1 − lr·wd), then a zero Adam update */
    assert_true(vikt_tensor_data(r.x)[0] == of_x0[0] * (float)(1.0 - 0.1 * 0.01));
    float before = vikt_tensor_data(r.w)[1];
    step_ok(sgd, r.m);
    assert_true(vikt_tensor_data(r.w)[1] == before + -0.1f * (0.0f + 0.5f * before));
    vikt_optimizer_destroy(sgd);

    vikt_optimizer *mom = make_opt(&r, VIKT_OPTIM_SGD, 0.1f);
    set_ok(mom, r.m, VIKT_OPT_MOMENTUM, 0.9);
    compute_grads(&r);
    step_ok(mom, r.m);
    float mid[NP], after[NP];
    snapshot(&r, mid);
    assert_int_equal(vikt_zero_grad(r.m), VIKT_OK);
    step_ok(mom, r.m);
    snapshot(&r, after);
    assert_true(memcmp(mid, after, sizeof mid) != 0);
    vikt_optimizer_destroy(mom);
    vikt_optimizer_destroy(adamw);
    vikt_model_destroy(r.m);
}

/* With the option, a NaN or Inf anywhere skips the whole step: parameters and
 * gradients bitwise unchanged, state and schedule position not advanced. */
static void skip_nonfinite_changes_nothing(void **state) {
    (void)state;
    const float bad[2] = {NAN, -INFINITY};
    for (int b = 0; b < 2; b++) {
        rig r = rig_make(), ref = rig_make();
        vikt_optimizer *opt = make_opt(&r, VIKT_OPTIM_ADAM, 0.05f);
        vikt_optimizer *ref_opt = make_opt(&ref, VIKT_OPTIM_ADAM, 0.05f);
        vikt_optimizer *both[2] = {opt, ref_opt};
        vikt_model *models[2] = {r.m, ref.m};
        for (int k = 0; k < 2; k++) {
            set_ok(both[k], models[k], VIKT_OPT_SKIP_NONFINITE, 1);
            set_ok(both[k], models[k], VIKT_OPT_AMSGRAD, 1);
            set_ok(both[k], models[k], VIKT_OPT_CLIP_NORM, 1.0);
            set_ok(both[k], models[k], VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_EXPONENTIAL);
            set_ok(both[k], models[k], VIKT_OPT_GAMMA, 0.5);
        }
        compute_grads(&r);
        step_ok(opt, r.m);
        compute_grads(&ref);
        step_ok(ref_opt, ref.m);

        compute_grads(&r);
        vikt_tensor_grad(r.w)[4] = bad[b];
        float before[NP], after[NP], grads_before[NP], grads_after[NP];
        snapshot(&r, before);
        snapshot_grads(&r, grads_before);
        assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
        snapshot(&r, after);
        snapshot_grads(&r, grads_after);
        assert_memory_equal(before, after, sizeof before);
        assert_memory_equal(grads_before, grads_after, sizeof grads_before);
        assert_true(get(opt, VIKT_OPT_SKIPPED_STEPS) == 1);
        assert_true(get(opt, VIKT_OPT_STEP) == 1);
        assert_true(get(opt, VIKT_OPT_CURRENT_LR) == (double)0.05f * 0.5);

        /* The next finite step continues as if the bad one never happened. */
        for (int s = 0; s < 3; s++) {
            compute_grads(&r);
            step_ok(opt, r.m);
            compute_grads(&ref);
            step_ok(ref_opt, ref.m);
        }
        snapshot(&r, after);
        snapshot(&ref, before);
        assert_memory_equal(before, after, sizeof before);
        assert_true(get(opt, VIKT_OPT_STEP) == 4);
        assert_true(get(opt, VIKT_OPT_SKIPPED_STEPS) == 1);
        vikt_optimizer_destroy(opt);
        vikt_optimizer_destroy(ref_opt);
        vikt_model_destroy(r.m);
        vikt_model_destroy(ref.m);
    }
}

/* Without the option a NaN gradient is applied as the rule says: the
 * elements it reaches become NaN, the rest update normally. */
static void nonfinite_is_applied_without_the_option(void **state) {
    (void)state;
    for (int k = 0; k < 5; k++) {
        rig r = rig_make();
        vikt_optimizer *opt = make_opt(&r, (vikt_optim_kind)k, 0.01f);
        compute_grads(&r);
        vikt_tensor_grad(r.x)[2] = NAN;
        step_ok(opt, r.m);
        const float *x = vikt_tensor_data(r.x);
        for (int i = 0; i < OF_NX; i++) {
            if (i == 2) assert_true(isnan(x[i]));
            else assert_true(isfinite(x[i]) && x[i] != of_x0[i]);
        }
        assert_true(get(opt, VIKT_OPT_SKIPPED_STEPS) == 0);
        assert_true(get(opt, VIKT_OPT_STEP) == 1);
        vikt_optimizer_destroy(opt);
        vikt_model_destroy(r.m);
    }
}

/* A frozen parameter is left alone (even with a stale non-zero gradient),
 * keeps no state and advances no step count of its own. */
static void frozen_parameters_are_skipped(void **state) {
    (void)state;
    for (int k = 0; k < 5; k++) {
        rig r = rig_make();
        vikt_optimizer *opt = make_opt(&r, (vikt_optim_kind)k, 0.05f);
        compute_grads(&r); /* both parameters get gradients */
        assert_int_equal(vikt_tensor_set_requires_grad(r.x, 0), VIKT_OK);
        float x_before[OF_NX], w_before[OF_NW];
        memcpy(x_before, vikt_tensor_data(r.x), sizeof x_before);
        memcpy(w_before, vikt_tensor_data(r.w), sizeof w_before);
        for (int s = 0; s < 3; s++) step_ok(opt, r.m);
        assert_memory_equal(x_before, vikt_tensor_data(r.x), sizeof x_before);
        assert_true(memcmp(w_before, vikt_tensor_data(r.w), sizeof w_before) != 0);
        vikt_optimizer_destroy(opt);
        vikt_model_destroy(r.m);
    }
}

/* Step counts are per parameter, as torch keeps them: a parameter unfrozen
 * (or created) after three steps gets Adam's first, fully bias-corrected
 * update, |Δ| ≈ lr, not the update of step four. */
static void step_counts_are_per_parameter(void **state) {
    (void)state;
    rig r = rig_make();
    vikt_optimizer *opt = make_opt(&r, VIKT_OPTIM_ADAM, 0.05f);
    assert_int_equal(vikt_tensor_set_requires_grad(r.x, 0), VIKT_OK);
    for (int s = 0; s < 3; s++) {
        compute_grads(&r);
        step_ok(opt, r.m);
    }
    assert_int_equal(vikt_tensor_set_requires_grad(r.x, 1), VIKT_OK);
    compute_grads(&r);
    float g[OF_NX];
    memcpy(g, vikt_tensor_grad(r.x), sizeof g);
    step_ok(opt, r.m);
    for (int i = 0; i < OF_NX; i++) {
        float want = of_x0[i] - 0.05f * (g[i] > 0 ? 1.0f : -1.0f);
        assert_float_equal(vikt_tensor_data(r.x)[i], want, 1e-6);
    }
    /* A parameter created after four steps. */
    vikt_tensor *z = vikt_param(r.m, "z", 1, (int64_t[]){3}, VIKT_INIT_ONES);
    assert_non_null(z);
    vikt_tensor_grad(z)[0] = 2.0f, vikt_tensor_grad(z)[1] = -0.5f, vikt_tensor_grad(z)[2] = 0;
    step_ok(opt, r.m);
    assert_float_equal(vikt_tensor_data(z)[0], 1.0f - 0.05f, 1e-6);
    assert_float_equal(vikt_tensor_data(z)[1], 1.0f + 0.05f, 1e-6);
    assert_true(vikt_tensor_data(z)[2] == 1.0f);
    assert_true(get(opt, VIKT_OPT_STEP) == 5);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(r.m);
}

static double norm_of(rig *r) {
    double s = 0;
    for (int i = 0; i < OF_NX; i++) s += (double)vikt_tensor_grad(r->x)[i] * vikt_tensor_grad(r->x)[i];
    for (int i = 0; i < OF_NW; i++) s += (double)vikt_tensor_grad(r->w)[i] * vikt_tensor_grad(r->w)[i];
    return sqrt(s);
}

/* Clipping rewrites the gradients in place before the update: by value to
 * [−v, v]; by norm to a global norm of max_norm (direction kept), and not at
 * all when already below; frozen parameters do not count. */
static void clipping_rewrites_gradients(void **state) {
    (void)state;
    rig r = rig_make();
    vikt_optimizer *opt = make_opt(&r, VIKT_OPTIM_SGD, 0.0f);
    set_ok(opt, r.m, VIKT_OPT_CLIP_VALUE, 2.0);
    compute_grads(&r);
    float raw[NP], clipped[NP];
    snapshot_grads(&r, raw);
    step_ok(opt, r.m);
    snapshot_grads(&r, clipped);
    for (int i = 0; i < NP; i++)
        assert_true(clipped[i] == (raw[i] > 2 ? 2.0f : raw[i] < -2 ? -2.0f : raw[i]));
    set_ok(opt, r.m, VIKT_OPT_CLIP_VALUE, 0);

    set_ok(opt, r.m, VIKT_OPT_CLIP_NORM, 1.5);
    compute_grads(&r);
    snapshot_grads(&r, raw);
    double before = norm_of(&r);
    assert_true(before > 1.5);
    step_ok(opt, r.m);
    snapshot_grads(&r, clipped);
    assert_true(fabs(norm_of(&r) - 1.5) < 1e-5);
    for (int i = 0; i < NP; i++)
        assert_float_equal(clipped[i], raw[i] * (1.5 / (before + 1e-6)), 1e-6);

    set_ok(opt, r.m, VIKT_OPT_CLIP_NORM, 1e6); /* far above: untouched */
    compute_grads(&r);
    snapshot_grads(&r, raw);
    step_ok(opt, r.m);
    snapshot_grads(&r, clipped);
    assert_memory_equal(raw, clipped, sizeof raw);

    /* Frozen x: only w's gradient enters the norm and is scaled. */
    set_ok(opt, r.m, VIKT_OPT_CLIP_NORM, 0.5);
    compute_grads(&r);
    assert_int_equal(vikt_tensor_set_requires_grad(r.x, 0), VIKT_OK);
    snapshot_grads(&r, raw);
    step_ok(opt, r.m);
    snapshot_grads(&r, clipped);
    assert_memory_equal(raw, clipped, OF_NX * sizeof(float));
    double w_norm = 0;
    for (int i = 0; i < OF_NW; i++) w_norm += (double)clipped[OF_NX + i] * clipped[OF_NX + i];
    assert_true(fabs(sqrt(w_norm) - 0.5) < 1e-5);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(r.m);
}

/* A model holding an error: the step refuses and changes nothing. */
static void step_refuses_a_model_with_an_error(void **state) {
    (void)state;
    rig r = rig_make();
    vikt_optimizer *opt = make_opt(&r, VIKT_OPTIM_ADAM, 0.1f);
    compute_grads(&r);
    vikt_matmul(r.m, r.x, r.x); /* rank 1: a shape error */
    float before[NP], after[NP];
    snapshot(&r, before);
    assert_int_equal(vikt_optimizer_step(opt), VIKT_ERR_STATE);
    snapshot(&r, after);
    assert_memory_equal(before, after, sizeof before);
    assert_true(get(opt, VIKT_OPT_STEP) == 0);
    vikt_model_clear_error(r.m);
    step_ok(opt, r.m);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(r.m);
}

/* ------------------------------------------------------------ schedules */

static double expected_lr(int schedule, double lr, int64_t t) {
    const double pi = 3.14159265358979323846;
    switch (schedule) {
    case VIKT_SCHEDULE_STEP: return lr * pow(0.5, (double)(t / 4));
    case VIKT_SCHEDULE_EXPONENTIAL: return lr * pow(0.8, (double)t);
    case VIKT_SCHEDULE_COSINE: {
        const double warmup = 5, t_max = 10, eta_min = 0.002;
        if (t < 5) return lr * (double)t / warmup;
        double after = fmin((double)t - warmup, t_max);
        return eta_min + (lr - eta_min) * (1 + cos(pi * after / t_max)) / 2;
    }
    default: return lr;
    }
}

static void schedules_follow_their_formulas(void **state) {
    (void)state;
    for (int sched = VIKT_SCHEDULE_CONSTANT; sched <= VIKT_SCHEDULE_COSINE; sched++) {
        rig r = rig_make();
        vikt_optimizer *opt = make_opt(&r, VIKT_OPTIM_SGD, 0.1f);
        set_ok(opt, r.m, VIKT_OPT_LR, 0.1);
        set_ok(opt, r.m, VIKT_OPT_SCHEDULE, sched);
        set_ok(opt, r.m, VIKT_OPT_STEP_SIZE, 4);
        set_ok(opt, r.m, VIKT_OPT_GAMMA, sched == VIKT_SCHEDULE_STEP ? 0.5 : 0.8);
        set_ok(opt, r.m, VIKT_OPT_WARMUP_STEPS, 5);
        set_ok(opt, r.m, VIKT_OPT_T_MAX, 10);
        set_ok(opt, r.m, VIKT_OPT_ETA_MIN, 0.002);
        set_ok(opt, r.m, VIKT_OPT_SKIP_NONFINITE, 1);
        assert_int_equal(vikt_zero_grad(r.m), VIKT_OK);
        for (int64_t t = 0; t <= 25; t++) {
            double want = expected_lr(sched, 0.1, t), got = get(opt, VIKT_OPT_CURRENT_LR);
            if (!(fabs(got - want) <= 1e-15 * fabs(want)))
                fail_msg("schedule %d, t %lld: lr %.17g, expected %.17g", sched, (long long)t,
                         got, want);
            assert_true(get(opt, VIKT_OPT_STEP) == (double)t);
            /* The lr of this position is the one applied: SGD with g = 1. */
            float before = vikt_tensor_data(r.x)[0];
            vikt_tensor_grad(r.x)[0] = 1.0f;
            step_ok(opt, r.m);
            assert_true(vikt_tensor_data(r.x)[0] == before + (float)-want * 1.0f);
            /* A skipped step does not move the position. */
            vikt_tensor_grad(r.x)[0] = NAN;
            step_ok(opt, r.m);
        }
        assert_true(get(opt, VIKT_OPT_SKIPPED_STEPS) == 26);
        vikt_optimizer_destroy(opt);
        vikt_model_destroy(r.m);
    }
    /* Landmarks of the cosine schedule, straight from the definition. */
    vikt_model *m = vt_model(1);
    vikt_optimizer *opt;
    assert_int_equal(vikt_adam_create(m, 0.5f, &opt), VIKT_OK);
    set_ok(opt, m, VIKT_OPT_LR, 0.5);
    set_ok(opt, m, VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_COSINE);
    set_ok(opt, m, VIKT_OPT_WARMUP_STEPS, 2);
    set_ok(opt, m, VIKT_OPT_T_MAX, 4);
    set_ok(opt, m, VIKT_OPT_ETA_MIN, 0.1);
    const double landmarks[9] = {0, 0.25, 0.5, 0.1 + 0.4 * (1 + cos(3.14159265358979323846 / 4)) / 2,
                                 0.3, 0.1 + 0.4 * (1 - cos(3.14159265358979323846 / 4)) / 2,
                                 0.1, 0.1, 0.1};
    for (int t = 0; t < 9; t++) {
        assert_true(fabs(get(opt, VIKT_OPT_CURRENT_LR) - landmarks[t]) <= 1e-15);
        step_ok(opt, m); /* no parameters: only the position moves */
    }
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------------ memory */

/* Every rule with every buffer it can have. */
static vikt_optimizer *fully_loaded(rig *r, vikt_optim_kind kind) {
    vikt_optimizer *opt = make_opt(r, kind, 0.01f);
    if (kind == VIKT_OPTIM_SGD || kind == VIKT_OPTIM_RMSPROP)
        set_ok(opt, r->m, VIKT_OPT_MOMENTUM, 0.9);
    if (kind == VIKT_OPTIM_RMSPROP) set_ok(opt, r->m, VIKT_OPT_CENTERED, 1);
    if (kind == VIKT_OPTIM_ADAM || kind == VIKT_OPTIM_ADAMW)
        set_ok(opt, r->m, VIKT_OPT_AMSGRAD, 1);
    set_ok(opt, r->m, VIKT_OPT_CLIP_NORM, 1.0);
    set_ok(opt, r->m, VIKT_OPT_CLIP_VALUE, 5.0);
    set_ok(opt, r->m, VIKT_OPT_SKIP_NONFINITE, 1);
    set_ok(opt, r->m, VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_COSINE);
    set_ok(opt, r->m, VIKT_OPT_WARMUP_STEPS, 1);
    set_ok(opt, r->m, VIKT_OPT_T_MAX, 10);
    return opt;
}

/* The first step allocates the state; later steps allocate nothing until a
 * parameter is added or an option needing more state is turned on. */
static void steady_state_steps_allocate_nothing(void **state) {
    (void)state;
    for (int k = 0; k < 5; k++) {
        rig r = rig_make();
        vikt_optimizer *opt = fully_loaded(&r, (vikt_optim_kind)k);
        compute_grads(&r);
        int64_t calls = vt_stats.calls;
        step_ok(opt, r.m);
        assert_true(vt_stats.calls > calls);
        for (int s = 0; s < 5; s++) {
            compute_grads(&r);
            calls = vt_stats.calls;
            step_ok(opt, r.m);
            assert_int_equal(vt_stats.calls, calls);
        }
        vikt_tensor *z = vikt_param(r.m, "z", 1, (int64_t[]){4}, VIKT_INIT_ONES);
        assert_non_null(z);
        calls = vt_stats.calls;
        step_ok(opt, r.m);
        assert_true(vt_stats.calls > calls);
        calls = vt_stats.calls;
        step_ok(opt, r.m);
        assert_int_equal(vt_stats.calls, calls);
        vikt_optimizer_destroy(opt);
        vikt_model_destroy(r.m);
    }
}

/* Fail the Nth allocation of the first step, for N = 1, 2, … until the step
 * needs fewer: NOMEM with parameters, gradients and counters unchanged;
 * clearing the error and retrying gives bitwise the same result as a step
 * that never failed; everything is freed. */
static void out_of_memory_on_the_first_step(void **state) {
    (void)state;
    for (int k = 0; k < 5; k++) {
        float want[NP];
        {
            rig ref = rig_make();
            vikt_tensor *z = vikt_param(ref.m, "z", 2, (int64_t[]){2, 2}, VIKT_INIT_ONES);
            assert_non_null(z);
            vikt_optimizer *opt = fully_loaded(&ref, (vikt_optim_kind)k);
            compute_grads(&ref);
            step_ok(opt, ref.m);
            snapshot(&ref, want);
            vikt_optimizer_destroy(opt);
            vikt_model_destroy(ref.m);
        }
        int failures = 0;
        for (int64_t n = 1;; n++) {
            int64_t live = vt_stats.live;
            rig r = rig_make();
            vikt_tensor *z = vikt_param(r.m, "z", 2, (int64_t[]){2, 2}, VIKT_INIT_ONES);
            assert_non_null(z);
            vikt_optimizer *opt = fully_loaded(&r, (vikt_optim_kind)k);
            compute_grads(&r);
            float before[NP], after[NP], grads[NP], grads_after[NP];
            snapshot(&r, before);
            snapshot_grads(&r, grads);
            vt_stats.fail_at = vt_stats.calls + n;
            int rc = vikt_optimizer_step(opt);
            vt_stats.fail_at = 0;
            if (rc == VIKT_OK) {
                snapshot(&r, after);
                assert_memory_equal(after, want, sizeof want);
            } else {
                failures++;
                assert_int_equal(rc, VIKT_ERR_NOMEM);
                vt_expect_error(r.m, VIKT_ERR_NOMEM, "vikt_optimizer_step", "out of memory");
                snapshot(&r, after);
                snapshot_grads(&r, grads_after);
                assert_memory_equal(before, after, sizeof before);
                assert_memory_equal(grads, grads_after, sizeof grads);
                assert_true(get(opt, VIKT_OPT_STEP) == 0);
                step_ok(opt, r.m); /* the retry */
                snapshot(&r, after);
                assert_memory_equal(after, want, sizeof want);
            }
            assert_true(get(opt, VIKT_OPT_STEP) == 1);
            vikt_optimizer_destroy(opt);
            vikt_model_destroy(r.m);
            assert_int_equal(vt_stats.live, live);
            if (rc == VIKT_OK) break;
        }
        /* the slot table plus one buffer per parameter and state kind */
        assert_true(failures >= 4);
    }
}

/* Every allocation of the first step failing at once, then recovery. */
static void out_of_memory_every_call(void **state) {
    (void)state;
    rig r = rig_make();
    vikt_optimizer *opt = fully_loaded(&r, VIKT_OPTIM_ADAMW);
    compute_grads(&r);
    float before[NP], after[NP];
    snapshot(&r, before);
    vt_stats.fail_from = vt_stats.calls + 1;
    assert_int_equal(vikt_optimizer_step(opt), VIKT_ERR_NOMEM);
    vt_expect_error(r.m, VIKT_ERR_NOMEM, "vikt_optimizer_step", NULL);
    assert_int_equal(vikt_optimizer_step(opt), VIKT_ERR_NOMEM);
    vt_expect_error(r.m, VIKT_ERR_NOMEM, "vikt_optimizer_step", NULL);
    vt_stats.fail_from = 0;
    snapshot(&r, after);
    assert_memory_equal(before, after, sizeof before);
    step_ok(opt, r.m);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(r.m);
}

/* ------------------------------------------------------------ main */

int main(void) {
    static const struct CMUnitTest contract[] = {
        cmocka_unit_test(every_bad_setting_is_refused),
        cmocka_unit_test(nesterov_combinations),
        cmocka_unit_test(create_errors),
        cmocka_unit_test(defaults_and_edges),
        cmocka_unit_test(initial_accumulator_only_before_first_step),
        cmocka_unit_test(zero_gradient_changes_nothing),
        cmocka_unit_test(zero_gradient_with_decay_or_momentum_moves),
        cmocka_unit_test(skip_nonfinite_changes_nothing),
        cmocka_unit_test(nonfinite_is_applied_without_the_option),
        cmocka_unit_test(frozen_parameters_are_skipped),
        cmocka_unit_test(step_counts_are_per_parameter),
        cmocka_unit_test(clipping_rewrites_gradients),
        cmocka_unit_test(step_refuses_a_model_with_an_error),
        cmocka_unit_test(schedules_follow_their_formulas),
        cmocka_unit_test(steady_state_steps_allocate_nothing),
        cmocka_unit_test(out_of_memory_on_the_first_step),
        cmocka_unit_test(out_of_memory_every_call),
    };
    /* One test per fixture, named after its configuration. */
    static struct CMUnitTest fixtures[OF_COUNT];
    static int which[OF_COUNT];
    static char names[OF_COUNT][80];
    for (int i = 0; i < OF_COUNT; i++) {
        which[i] = i;
        snprintf(names[i], sizeof names[i], "torch_parity_%s", of_fixtures[i].name);
        fixtures[i] = (struct CMUnitTest){names[i], replay_fixture, NULL, NULL, &which[i]};
    }
    int failed = _cmocka_run_group_tests("optim_torch_parity", fixtures, OF_COUNT, NULL, NULL);
    failed += cmocka_run_group_tests(contract, NULL, NULL);
    return failed;
}
