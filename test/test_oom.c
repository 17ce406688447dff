/* Out of memory: for N = 1, 2, … the Nth allocator call fails (vt_stats.fail_at,
 * or every call from the Nth on with vt_stats.fail_from), until N lies past the
 * last call the sequence makes. Each failure must be reported as
 * VIKT_ERR_NOMEM, leave nothing behind, and allow a retry that gives exactly
 * what a run that never failed gives.
 *
 * Every model here runs on a checking allocator over the test allocator: it
 * records each block's size and fails the test when a block is freed with
 * another size (the allocator contract passes the size back). */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* ------------------------------------------------------ checking allocator */

#define HDR 64 /* keeps the caller's alignment (<= 64) */

static void *sized_alloc(void *ud, size_t size, size_t align) {
    assert_true(align <= HDR);
    unsigned char *raw = vt_allocator.alloc(ud, size + HDR, align);
    if (!raw) return NULL;
    memcpy(raw, &size, sizeof size);
    return raw + HDR;
}

static void sized_free(void *ud, void *ptr, size_t size) {
    unsigned char *raw = (unsigned char *)ptr - HDR;
    size_t had;
    memcpy(&had, raw, sizeof had);
    if (had != size) fail_msg("a block of %zu bytes was freed as %zu bytes", had, size);
    vt_allocator.free(ud, raw, had + HDR);
}

static const vikt_allocator sized_allocator = {sized_alloc, sized_free, NULL};

static vikt_model *model(uint64_t seed) {
    vikt_model *m = NULL;
    assert_int_equal(vikt_model_create(&sized_allocator, seed, &m), VIKT_OK);
    assert_non_null(m);
    return m;
}

/* Arm a failure at the nth allocator call from now. */
static int64_t arm(int64_t n, int from) {
    int64_t start = vt_stats.calls;
    vt_stats.fail_at = from ? 0 : start + n;
    vt_stats.fail_from = from ? start + n : 0;
    return start;
}

static void disarm(void) {
    vt_stats.fail_at = 0;
    vt_stats.fail_from = 0;
}

#define MAX_N 2000 /* a sequence making more calls than this is a bug in itself */

/* --------------------------------------------------------- model creation */

static void model_create_oom(void **state) {
    (void)state;
    int failed = 0;
    for (int64_t n = 1;; n++) {
        assert_true(n < MAX_N);
        vt_alloc_reset();
        vt_stats.fail_at = n;
        vikt_model *m = (vikt_model *)&m;
        int rc = vikt_model_create(&sized_allocator, 7, &m);
        disarm();
        if (vt_stats.calls < n) { /* the failure was never reached */
            assert_int_equal(rc, VIKT_OK);
            assert_non_null(m);
            assert_int_equal(vikt_model_errcode(m), VIKT_OK);
            vikt_model_destroy(m);
            assert_int_equal(vt_stats.live, 0);
            break;
        }
        assert_int_equal(rc, VIKT_ERR_NOMEM);
        assert_null(m);
        assert_int_equal(vt_stats.live, 0);
        failed++;
    }
    assert_int_equal(failed, 1); /* creating a model is one allocation */
    /* Every call failing: the same. */
    vt_alloc_reset();
    vt_stats.fail_from = 1;
    vikt_model *m = (vikt_model *)&m;
    assert_int_equal(vikt_model_create(&sized_allocator, 7, &m), VIKT_ERR_NOMEM);
    assert_null(m);
    disarm();
    assert_int_equal(vt_stats.live, 0);
}

/* ------------------------------------------------------ tensor creation */

static void tensor_create_oom(void **state) {
    (void)state;
    vt_alloc_reset();
    vikt_model *m = model(1);
    const float src[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    int failed = 0;
    for (int64_t n = 1;; n++) {
        assert_true(n < MAX_N);
        int64_t live = vt_stats.live;
        int64_t start = arm(n, 0);
        vikt_tensor *t = (vikt_tensor *)&t;
        int rc = vikt_tensor_create(m, 2, SHAPE(3, 4), src, 1, &t);
        int64_t made = vt_stats.calls - start;
        disarm();
        if (made < n) {
            assert_int_equal(rc, VIKT_OK);
            vikt_tensor_destroy(t);
            assert_int_equal(vt_stats.live, live);
            break;
        }
        assert_int_equal(rc, VIKT_ERR_NOMEM);
        assert_null(t);
        assert_int_equal(vt_stats.live, live);
        vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_tensor_create", "3x4");
        failed++;
        /* Retried without a failure: a whole tensor. */
        assert_int_equal(vikt_tensor_create(m, 2, SHAPE(3, 4), src, 1, &t), VIKT_OK);
        assert_memory_equal(vikt_tensor_data(t), src, sizeof src);
        assert_non_null(vikt_tensor_grad(t));
        for (int i = 0; i < 12; i++) assert_float_equal(vikt_tensor_grad(t)[i], 0.0f, 0);
        vikt_tensor_destroy(t);
        assert_int_equal(vt_stats.live, live);
    }
    assert_int_equal(failed, 3); /* header, data, gradient */

    /* Without a gradient: two allocations. */
    failed = 0;
    for (int64_t n = 1;; n++) {
        assert_true(n < MAX_N);
        int64_t live = vt_stats.live;
        int64_t start = arm(n, 0);
        vikt_tensor *t = (vikt_tensor *)&t;
        int rc = vikt_tensor_create(m, 1, SHAPE(5), NULL, 0, &t);
        int64_t made = vt_stats.calls - start;
        disarm();
        if (made < n) {
            assert_int_equal(rc, VIKT_OK);
            vikt_tensor_destroy(t);
            break;
        }
        assert_int_equal(rc, VIKT_ERR_NOMEM);
        assert_null(t);
        assert_int_equal(vt_stats.live, live);
        vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_tensor_create", "5");
        failed++;
    }
    assert_int_equal(failed, 2);

    /* A gradient added later. */
    vikt_tensor *t;
    assert_int_equal(vikt_tensor_create(m, 1, SHAPE(5), NULL, 0, &t), VIKT_OK);
    int64_t live = vt_stats.live;
    arm(1, 0);
    assert_int_equal(vikt_tensor_set_requires_grad(t, 1), VIKT_ERR_NOMEM);
    disarm();
    assert_int_equal(vt_stats.live, live);
    assert_int_equal(vikt_tensor_requires_grad(t), 0);
    assert_null(vikt_tensor_grad(t));
    vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_tensor_set_requires_grad", NULL);
    assert_int_equal(vikt_tensor_set_requires_grad(t, 1), VIKT_OK);
    assert_non_null(vikt_tensor_grad(t));
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

/* The values a parameter gets in a model that never failed. */
static int64_t reference_param(const char *name, int rank, const int64_t *shape, vikt_init init,
                               float *out, int64_t count) {
    vikt_model *m = model(5);
    vikt_tensor *p = vikt_param(m, name, rank, shape, init);
    assert_non_null(p);
    int64_t live = vt_stats.live;
    assert_int_equal(vikt_tensor_numel(p), count);
    memcpy(out, vikt_tensor_data(p), (size_t)count * sizeof(float));
    vikt_model_destroy(m);
    return live;
}

static void param_oom(void **state) {
    (void)state;
    const vikt_init inits[3] = {VIKT_INIT_ZEROS, VIKT_INIT_XAVIER_NORMAL, VIKT_INIT_ORTHOGONAL};
    float want[24], again[24];
    for (int k = 0; k < 3; k++) {
        vt_alloc_reset();
        int64_t ref_live = reference_param("layer.weight", 2, SHAPE(4, 6), inits[k], want, 24);
        int failed = 0;
        for (int64_t n = 1;; n++) {
            assert_true(n < MAX_N);
            vt_alloc_reset();
            vikt_model *m = model(5);
            int64_t start = arm(n, 0);
            vikt_tensor *p = vikt_param(m, "layer.weight", 2, SHAPE(4, 6), inits[k]);
            int64_t made = vt_stats.calls - start;
            disarm();
            if (made < n) {
                assert_non_null(p);
                assert_memory_equal(vikt_tensor_data(p), want, sizeof want);
                vikt_model_destroy(m);
                assert_int_equal(vt_stats.live, 0);
                break;
            }
            assert_null(p);
            vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_param", NULL);
            /* Nothing half-made is left: not registered, not owned. */
            assert_int_equal(vikt_param_count(m), 0);
            assert_int_equal(vikt_model_num_params(m), 0);
            assert_null(vikt_param_find(m, "layer.weight"));
            /* the model, and the registry when it was grown before the
             * failure (kept for reuse, freed with the model) */
            assert_true(vt_stats.live == 1 || vt_stats.live == 2);
            /* Retried: created, and with the values a model that never
             * failed gives. */
            p = vikt_param(m, "layer.weight", 2, SHAPE(4, 6), inits[k]);
            assert_non_null(p);
            assert_int_equal(vikt_model_errcode(m), VIKT_OK);
            assert_string_equal(vikt_tensor_name(p), "layer.weight");
            assert_ptr_equal(vikt_param_find(m, "layer.weight"), p);
            assert_int_equal(vikt_param_count(m), 1);
            memcpy(again, vikt_tensor_data(p), sizeof again);
            assert_memory_equal(again, want, sizeof want);
            assert_non_null(vikt_tensor_grad(p));
            assert_int_equal(vt_stats.live, ref_live); /* nothing extra is held */
            vikt_model_destroy(m);
            assert_int_equal(vt_stats.live, 0);
            failed++;
        }
        /* header, data, gradient, name, the registry; orthogonal adds its
         * work buffer */
        assert_int_equal(failed, inits[k] == VIKT_INIT_ORTHOGONAL ? 6 : 5);
    }
}

/* The registry grows past its first capacity (16): failures while it grows
 * keep every earlier parameter. */
static void param_registry_growth_oom(void **state) {
    (void)state;
    vt_alloc_reset();
    vikt_model *m = model(5);
    char name[32];
    for (int i = 0; i < 16; i++) {
        snprintf(name, sizeof name, "p%d", i);
        assert_non_null(vikt_param(m, name, 1, SHAPE(3), VIKT_INIT_ONES));
    }
    int failed = 0;
    for (int64_t n = 1;; n++) {
        assert_true(n < MAX_N);
        int64_t live = vt_stats.live;
        int64_t start = arm(n, 0);
        vikt_tensor *p = vikt_param(m, "p16", 1, SHAPE(3), VIKT_INIT_ONES);
        int64_t made = vt_stats.calls - start;
        disarm();
        if (made < n) {
            assert_non_null(p);
            break;
        }
        assert_null(p);
        vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_param", "out of memory");
        assert_int_equal(vt_stats.live, live);
        assert_int_equal(vikt_param_count(m), 16);
        assert_null(vikt_param_find(m, "p16"));
        for (int i = 0; i < 16; i++) {
            snprintf(name, sizeof name, "p%d", i);
            vikt_tensor *q = vikt_param_find(m, name);
            assert_non_null(q);
            assert_ptr_equal(vikt_param_at(m, i), q);
            assert_float_equal(vikt_tensor_data(q)[2], 1.0f, 0);
        }
        failed++;
    }
    assert_int_equal(failed, 5); /* header, data, gradient, name, the grown registry */
    assert_int_equal(vikt_param_count(m), 17);
    assert_ptr_equal(vikt_param_at(m, 16), vikt_param_find(m, "p16"));
    assert_ptr_equal(vikt_param_at(m, 0), vikt_param_find(m, "p0"));
    assert_int_equal(vikt_model_num_params(m), 17 * 3);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

/* ------------------------------------------------------- a training step */

enum { B = 64, IN = 32, HID = 1024, C = 10, NP = 4 };

static float X[B * IN];
static int32_t Y[B];
static const char *const PNAME[NP] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
static const int64_t PNUMEL[NP] = {IN * HID, HID, HID * C, C};

static void data_init(void) {
    vt_fill(X, B * IN, 11, -1.0f, 1.0f);
    for (int i = 0; i < B; i++) Y[i] = (int32_t)((i * 7) % C);
}

/* The parameters in a fixed order, stopping at the first failure so a retry
 * draws the same numbers in the same order as a run that never failed. */
static int mlp_params(vikt_model *m, vikt_tensor **p) {
    p[0] = vikt_param(m, PNAME[0], 2, SHAPE(IN, HID), VIKT_INIT_XAVIER_UNIFORM);
    if (!p[0]) return vikt_model_errcode(m);
    p[1] = vikt_param(m, PNAME[1], 1, SHAPE(HID), VIKT_INIT_ZEROS);
    if (!p[1]) return vikt_model_errcode(m);
    p[2] = vikt_param(m, PNAME[2], 2, SHAPE(HID, C), VIKT_INIT_XAVIER_UNIFORM);
    if (!p[2]) return vikt_model_errcode(m);
    p[3] = vikt_param(m, PNAME[3], 1, SHAPE(C), VIKT_INIT_ZEROS);
    if (!p[3]) return vikt_model_errcode(m);
    return VIKT_OK;
}

/* One forward and backward pass; the first error, or VIKT_OK with the loss. */
static int mlp_step(vikt_model *m, float *loss) {
    assert_int_equal(vikt_step_begin(m), VIKT_OK);
    assert_int_equal(vikt_zero_grad(m), VIKT_OK);
    vikt_tensor *p[NP] = {NULL};
    int rc = mlp_params(m, p);
    if (rc) return rc;
    vikt_tensor *x = vikt_input(m, 2, SHAPE(B, IN), X);
    vikt_tensor *h = vikt_relu(m, vikt_add(m, vikt_matmul(m, x, p[0]), p[1]));
    vikt_tensor *logits = vikt_add(m, vikt_matmul(m, h, p[2]), p[3]);
    vikt_tensor *l = vikt_cross_entropy_loss(m, logits, Y);
    rc = vikt_backward(m, l);
    if (vikt_model_errcode(m)) return vikt_model_errcode(m);
    if (rc) return rc;
    assert_non_null(l);
    *loss = vikt_tensor_data(l)[0];
    return VIKT_OK;
}

typedef struct snapshot {
    float loss[3];
    float data[NP][IN * HID];
    float grad[NP][IN * HID];
} snapshot;

static snapshot REF, GOT;

static void take(vikt_model *m, snapshot *s) {
    for (int k = 0; k < NP; k++) {
        vikt_tensor *p = vikt_param_find(m, PNAME[k]);
        assert_non_null(p);
        assert_int_equal(vikt_tensor_numel(p), PNUMEL[k]);
        memcpy(s->data[k], vikt_tensor_data(p), (size_t)PNUMEL[k] * sizeof(float));
        memcpy(s->grad[k], vikt_tensor_grad(p), (size_t)PNUMEL[k] * sizeof(float));
    }
}

static void same_as(const snapshot *got, const snapshot *want, int nloss) {
    for (int i = 0; i < nloss; i++)
        if (got->loss[i] != want->loss[i])
            fail_msg("loss %d: %.9g, a run that never failed gives %.9g", i, (double)got->loss[i],
                     (double)want->loss[i]);
    for (int k = 0; k < NP; k++) {
        size_t bytes = (size_t)PNUMEL[k] * sizeof(float);
        if (memcmp(got->data[k], want->data[k], bytes))
            fail_msg("%s differs from a run that never failed", PNAME[k]);
        if (memcmp(got->grad[k], want->grad[k], bytes))
            fail_msg("the gradient of %s differs from a run that never failed", PNAME[k]);
    }
}

static void step_oom(int from) {
    data_init();
    vt_alloc_reset();
    vikt_model *m = model(3);
    assert_int_equal(mlp_step(m, &REF.loss[0]), VIKT_OK);
    assert_true(isfinite(REF.loss[0]) && REF.loss[0] > 0.5f);
    take(m, &REF);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);

    int failed = 0, in_params = 0, in_forward = 0, in_backward = 0;
    for (int64_t n = 1;; n++) {
        assert_true(n < MAX_N);
        vt_alloc_reset();
        m = model(3);
        int64_t start = arm(n, from);
        GOT.loss[0] = -1;
        int rc = mlp_step(m, &GOT.loss[0]);
        int64_t made = vt_stats.calls - start;
        disarm();
        if (made < n) {
            assert_int_equal(rc, VIKT_OK);
            take(m, &GOT);
            same_as(&GOT, &REF, 1);
            vikt_model_destroy(m);
            assert_int_equal(vt_stats.live, 0);
            break;
        }
        assert_int_equal(rc, VIKT_ERR_NOMEM);
        assert_int_equal(vikt_model_errcode(m), VIKT_ERR_NOMEM);
        const char *msg = vikt_model_errmsg(m);
        if (!strstr(msg, "out of memory")) fail_msg("N=%lld: message \"%s\"", (long long)n, msg);
        if (strstr(msg, "vikt_param"))
            in_params++;
        else if (strstr(msg, "vikt_backward"))
            in_backward++;
        else
            in_forward++;
        /* Recovery: clear, begin a step, and the step is what it would
         * have been. */
        vikt_model_clear_error(m);
        rc = mlp_step(m, &GOT.loss[0]);
        if (rc) fail_msg("N=%lld: retry failed: %s", (long long)n, vikt_model_errmsg(m));
        take(m, &GOT);
        same_as(&GOT, &REF, 1);
        vikt_model_destroy(m);
        assert_int_equal(vt_stats.live, 0);
        failed++;
    }
    /* Four parameters of four calls each and the registry once, and arena
     * chunks in both passes. */
    print_message("%d failure points: %d in parameters, %d forward, %d backward\n", failed,
                  in_params, in_forward, in_backward);
    assert_true(failed >= 19);
    assert_int_equal(in_params, 17);
    assert_true(in_forward >= 1);
    assert_true(in_backward >= 1);
}

static void training_step_oom(void **state) {
    (void)state;
    step_oom(0);
}

static void training_step_oom_every_call_after(void **state) {
    (void)state;
    step_oom(1);
}

/* --------------------------------------------------------------- optimizer */

static void optimizer_oom(void **state) {
    (void)state;
    data_init();
    const float lr = 0.05f;
    /* Reference: three steps of training, nothing failing. */
    vt_alloc_reset();
    vikt_model *m = model(9);
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(m, lr, &opt), VIKT_OK);
    for (int s = 0; s < 3; s++) {
        assert_int_equal(mlp_step(m, &REF.loss[s]), VIKT_OK);
        assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
    }
    assert_true(REF.loss[2] < REF.loss[0]);
    take(m, &REF);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);

    int runs = 0, in_create = 0;
    for (int64_t n = 1;; n++) {
        assert_true(n < MAX_N);
        vt_alloc_reset();
        m = model(9);
        int64_t start = arm(n, 0);
        int failed = 0;
        opt = (vikt_optimizer *)&opt;
        int rc = vikt_sgd_create(m, lr, &opt);
        if (rc) {
            assert_int_equal(rc, VIKT_ERR_NOMEM);
            assert_null(opt);
            vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_sgd_create", "out of memory");
            failed++, in_create++;
            assert_int_equal(vikt_sgd_create(m, lr, &opt), VIKT_OK);
        }
        assert_non_null(opt);
        for (int s = 0; s < 3; s++) {
            rc = mlp_step(m, &GOT.loss[s]);
            if (rc) {
                assert_int_equal(rc, VIKT_ERR_NOMEM);
                failed++;
                /* The optimizer refuses while the model holds the error,
                 * and changes nothing. */
                for (int k = 0; k < NP; k++) {
                    vikt_tensor *q = vikt_param_find(m, PNAME[k]);
                    if (q) memcpy(GOT.data[k], vikt_tensor_data(q), (size_t)PNUMEL[k] * 4);
                }
                assert_int_equal(vikt_optimizer_step(opt), VIKT_ERR_STATE);
                for (int k = 0; k < NP; k++) {
                    vikt_tensor *q = vikt_param_find(m, PNAME[k]);
                    if (q)
                        assert_memory_equal(vikt_tensor_data(q), GOT.data[k],
                                            (size_t)PNUMEL[k] * sizeof(float));
                }
                vt_expect_error(m, VIKT_ERR_NOMEM, NULL, NULL);
                rc = mlp_step(m, &GOT.loss[s]);
                assert_int_equal(rc, VIKT_OK);
            }
            rc = vikt_optimizer_step(opt);
            if (rc) { /* an optimizer with state may allocate it on its first step */
                assert_int_equal(rc, VIKT_ERR_NOMEM);
                vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_optimizer_step", NULL);
                failed++;
                assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
            }
        }
        int64_t made = vt_stats.calls - start;
        disarm();
        take(m, &GOT);
        same_as(&GOT, &REF, 3);
        vikt_optimizer_destroy(opt);
        vikt_model_destroy(m);
        assert_int_equal(vt_stats.live, 0);
        if (made < n) {
            assert_int_equal(failed, 0);
            break;
        }
        assert_int_equal(failed, 1); /* exactly the one injected failure */
        runs++;
    }
    assert_int_equal(in_create, 1);
    assert_true(runs >= 20);
}

/* ------------------------------------------ no failure: what is allocated */

/* The checking allocator itself: aligned, and it frees what it took. */
static void checking_allocator_round_trip(void **state) {
    (void)state;
    vt_alloc_reset();
    void *p = sized_alloc(NULL, 100, 64);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    sized_free(NULL, p, 100);
    assert_int_equal(vt_stats.live, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(checking_allocator_round_trip),
        cmocka_unit_test(model_create_oom),
        cmocka_unit_test(tensor_create_oom),
        cmocka_unit_test(param_oom),
        cmocka_unit_test(param_registry_growth_oom),
        cmocka_unit_test(training_step_oom),
        cmocka_unit_test(training_step_oom_every_call_after),
        cmocka_unit_test(optimizer_oom),
    };
    return cmocka_run_group_tests_name("oom", tests, NULL, NULL);
}
