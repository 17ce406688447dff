/* Elastic weight consolidation: vikt_ewc_*.
 *
 * - the Fisher of softmax and logistic regression, whose per-sample
 *   gradients have a closed form, against sums computed here in double:
 *   per sample (the empirical Fisher) and per batch (the squared mean
 *   gradient), by hand and through vikt_ewc_accumulate_dataset;
 * - consolidation: the mean, the anchor, the sum starting again, and the
 *   online combination γ·F + F_new of a second task;
 * - the penalty's value and gradient against a double reference and finite
 *   differences (vt_gradcheck), zero at θ = θ*, frozen parameters;
 * - every rejection (NULLs, state, λ, γ, NaN gradients, datasets);
 * - out of memory at every allocation, and no allocation in a task-B step
 *   or a repeated Fisher pass;
 * - vikt_trainer_set_penalty: a fit equals the hand loop with the penalty,
 *   bit for bit, and reports the data loss. */
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define D 4 /* features */
#define C 3 /* classes */
#define N 6 /* samples */

static float xs[N * D];
static int32_t ys[N] = {0, 2, 1, 1, 0, 2};

static vikt_tensor *softmax_regression(vikt_model *m, vikt_tensor *x, void *ud) {
    (void)ud;
    return vikt_dense(m, "fc", x, C);
}

/* A model whose "fc" layer exists, and a dataset over xs/ys. */
static vikt_model *classifier(vikt_dataset **ds) {
    vt_fill(xs, N * D, 11, -1.0f, 1.0f);
    vikt_model *m = vt_model(3);
    vikt_step_begin(m);
    assert_non_null(softmax_regression(m, vikt_input(m, 2, SHAPE(1, D), xs), NULL));
    assert_int_equal(vikt_dataset_create(m, N, 1, SHAPE(D), xs, ys, NULL, 0, ds), VIKT_OK);
    return m;
}

/* Per-sample gradients of −log softmax(W x + b)[y]: (p − e_y) xᵀ and p − e_y;
 * the Fisher of batches of @p batch as the mean over batches of the squared
 * mean gradient (batch 1: the empirical Fisher). */
static void reference_fisher(vikt_model *m, int batch, double *fw, double *fb) {
    const float *w = vikt_tensor_data(vikt_param_find(m, "fc.weight"));
    const float *b = vikt_tensor_data(vikt_param_find(m, "fc.bias"));
    memset(fw, 0, C * D * sizeof *fw);
    memset(fb, 0, C * sizeof *fb);
    int batches = 0;
    for (int s = 0; s < N; s += batch, batches++) {
        int count = N - s < batch ? N - s : batch;
        double gw[C * D] = {0}, gb[C] = {0};
        for (int n = s; n < s + count; n++) {
            double z[C], max = -INFINITY, sum = 0;
            for (int c = 0; c < C; c++) {
                z[c] = b[c];
                for (int d = 0; d < D; d++) z[c] += (double)w[c * D + d] * xs[n * D + d];
                max = z[c] > max ? z[c] : max;
            }
            for (int c = 0; c < C; c++) sum += exp(z[c] - max);
            for (int c = 0; c < C; c++) {
                double r = exp(z[c] - max) / sum - (c == ys[n]);
                gb[c] += r / count;
                for (int d = 0; d < D; d++) gw[c * D + d] += r * xs[n * D + d] / count;
            }
        }
        for (int i = 0; i < C * D; i++) fw[i] += gw[i] * gw[i];
        for (int c = 0; c < C; c++) fb[c] += gb[c] * gb[c];
    }
    for (int i = 0; i < C * D; i++) fw[i] /= batches;
    for (int c = 0; c < C; c++) fb[c] /= batches;
}

static void expect_close(const float *got, const double *want, int n, double rtol) {
    for (int i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > 1e-9 + rtol * fabs(want[i]))
            fail_msg("element %d: %.9g, expected %.9g", i, (double)got[i], want[i]);
}

/* ----------------------------------------------------------------- Fisher */

static void fisher_of_dataset(int batch) {
    vikt_dataset *ds;
    vikt_model *m = classifier(&ds);
    vikt_ewc *ewc;
    assert_int_equal(vikt_ewc_create(m, &ewc), VIKT_OK);
    int64_t calls = vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL,
                                                VIKT_LOSS_CROSS_ENTROPY, batch);
    assert_int_equal(calls, (N + batch - 1) / batch);
    assert_int_equal(vikt_ewc_pending(ewc), calls);
    assert_int_equal(vikt_ewc_consolidate(ewc, 1.0f), VIKT_OK);
    assert_int_equal(vikt_ewc_pending(ewc), 0);
    double fw[C * D], fb[C];
    reference_fisher(m, batch, fw, fb);
    vikt_tensor *w = vikt_param_find(m, "fc.weight"), *b = vikt_param_find(m, "fc.bias");
    expect_close(vikt_ewc_fisher(ewc, w), fw, C * D, 1e-5);
    expect_close(vikt_ewc_fisher(ewc, b), fb, C, 1e-5);
    /* The anchor is the parameters; the gradients are left at zero. */
    assert_memory_equal(vikt_ewc_anchor(ewc, w), vikt_tensor_data(w), C * D * sizeof(float));
    for (int i = 0; i < C * D; i++) assert_true(vikt_tensor_grad(w)[i] == 0.0f);
    assert_true(vikt_training(m) && vikt_grad_enabled(m));
    vikt_ewc_destroy(ewc);
    vikt_dataset_destroy(ds);
    vikt_model_destroy(m);
}

static void fisher_per_sample_is_the_empirical_fisher(void **state) {
    (void)state;
    fisher_of_dataset(1);
}

static void fisher_per_batch_is_the_squared_mean_gradient(void **state) {
    (void)state;
    fisher_of_dataset(4); /* batches of 4 and 2 */
    fisher_of_dataset(N);
}

/* Logistic regression by hand: per-sample BCE backward, then accumulate;
 * the gradient of w is (σ(w·x + b) − y)·x. */
static void fisher_by_hand_logistic(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    vikt_tensor *w = vikt_param(m, "w", 2, SHAPE(D, 1), VIKT_INIT_ZEROS);
    vikt_tensor *b = vikt_param(m, "b", 1, SHAPE(1), VIKT_INIT_ZEROS);
    float wv[D], x[N * D], y[N] = {1, 0, 0, 1, 1, 0};
    vt_fill(wv, D, 1, -0.8f, 0.8f);
    vt_fill(x, N * D, 2, -1.5f, 1.5f);
    vikt_tensor_copy_in(w, wv, D);
    vikt_tensor_data(b)[0] = 0.3f;
    vikt_ewc *ewc;
    assert_int_equal(vikt_ewc_create(m, &ewc), VIKT_OK);
    double fw[D] = {0}, fb = 0;
    for (int n = 0; n < N; n++) {
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *xin = vikt_input(m, 2, SHAPE(1, D), x + n * D);
        vikt_tensor *z = vikt_add(m, vikt_matmul(m, xin, w), b);
        vikt_tensor *loss = vikt_bce_with_logits_loss(m, z, vikt_input(m, 2, SHAPE(1, 1), y + n));
        assert_int_equal(vikt_backward(m, loss), VIKT_OK);
        assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_OK);
        double zd = 0.3;
        for (int d = 0; d < D; d++) zd += (double)wv[d] * x[n * D + d];
        double r = 1.0 / (1.0 + exp(-zd)) - y[n];
        for (int d = 0; d < D; d++) fw[d] += r * x[n * D + d] * r * x[n * D + d] / N;
        fb += r * r / N;
    }
    assert_int_equal(vikt_ewc_pending(ewc), N);
    assert_int_equal(vikt_ewc_consolidate(ewc, 0.5f), VIKT_OK);
    expect_close(vikt_ewc_fisher(ewc, w), fw, D, 1e-5);
    expect_close(vikt_ewc_fisher(ewc, b), &fb, 1, 1e-5);
    vikt_ewc_destroy(ewc);
    vikt_model_destroy(m);
}

/* --------------------------------------------------------- consolidation */

/* Two parameters whose gradients the test writes directly. */
static vikt_model *two_params(vikt_tensor **p, vikt_tensor **q) {
    vikt_model *m = vt_model(9);
    *p = vikt_param(m, "p", 2, SHAPE(2, 3), VIKT_INIT_ZEROS);
    *q = vikt_param(m, "q", 1, SHAPE(4), VIKT_INIT_ZEROS);
    assert_non_null(*p);
    assert_non_null(*q);
    vt_fill(vikt_tensor_data(*p), 6, 21, -1.0f, 1.0f);
    vt_fill(vikt_tensor_data(*q), 4, 22, -1.0f, 1.0f);
    return m;
}

static void set_grads(vikt_tensor *p, vikt_tensor *q, uint32_t seed) {
    vt_fill(vikt_tensor_grad(p), 6, seed, -2.0f, 2.0f);
    vt_fill(vikt_tensor_grad(q), 4, seed + 1, -2.0f, 2.0f);
}

static void consolidation_and_later_tasks(void **state) {
    (void)state;
    vikt_tensor *p, *q;
    vikt_model *m = two_params(&p, &q);
    vikt_ewc *ewc;
    assert_int_equal(vikt_ewc_create(m, &ewc), VIKT_OK);
    for (int i = 0; i < 6; i++) assert_true(vikt_ewc_fisher(ewc, p)[i] == 0.0f);

    float g1[6], g2[6], g3[6];
    set_grads(p, q, 100);
    memcpy(g1, vikt_tensor_grad(p), sizeof g1);
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_OK);
    set_grads(p, q, 200);
    memcpy(g2, vikt_tensor_grad(p), sizeof g2);
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_OK);
    assert_int_equal(vikt_ewc_consolidate(ewc, 0.25f), VIKT_OK); /* γ: no earlier task */
    double want[6];
    for (int i = 0; i < 6; i++) want[i] = ((double)g1[i] * g1[i] + (double)g2[i] * g2[i]) / 2;
    expect_close(vikt_ewc_fisher(ewc, p), want, 6, 1e-6);
    float anchor1[6];
    memcpy(anchor1, vikt_tensor_data(p), sizeof anchor1);
    assert_memory_equal(vikt_ewc_anchor(ewc, p), anchor1, sizeof anchor1);

    /* Task 2: the sum started again; F ← γ·F + F_new, θ* moves. */
    vikt_tensor_data(p)[0] += 1.0f;
    set_grads(p, q, 300);
    memcpy(g3, vikt_tensor_grad(p), sizeof g3);
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_OK);
    assert_int_equal(vikt_ewc_consolidate(ewc, 0.5f), VIKT_OK);
    for (int i = 0; i < 6; i++) want[i] = 0.5 * (float)want[i] + (double)g3[i] * g3[i];
    expect_close(vikt_ewc_fisher(ewc, p), want, 6, 1e-6);
    assert_true(vikt_ewc_anchor(ewc, p)[0] == anchor1[0] + 1.0f);

    /* γ = 0 keeps only the last task. */
    set_grads(p, q, 400);
    float g4[4];
    memcpy(g4, vikt_tensor_grad(q), sizeof g4);
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_OK);
    assert_int_equal(vikt_ewc_consolidate(ewc, 0.0f), VIKT_OK);
    for (int i = 0; i < 4; i++) assert_true(vikt_ewc_fisher(ewc, q)[i] == g4[i] * g4[i]);
    vikt_ewc_destroy(ewc);
    vikt_model_destroy(m);
}

/* ---------------------------------------------------------------- penalty */

/* λ/2·Σ F(θ − θ*)² and its gradient λ·F·(θ − θ*) in double. */
static void penalty_matches_double_reference(void **state) {
    (void)state;
    vikt_tensor *p, *q;
    vikt_model *m = two_params(&p, &q);
    vikt_ewc *ewc;
    assert_int_equal(vikt_ewc_create(m, &ewc), VIKT_OK);
    set_grads(p, q, 500);
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_OK);
    assert_int_equal(vikt_ewc_consolidate(ewc, 1.0f), VIKT_OK);
    const float lambda = 3.5f;

    /* At θ = θ*: zero, with a zero gradient. */
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *pen = vikt_ewc_penalty(ewc, lambda);
    assert_non_null(pen);
    assert_int_equal(vikt_tensor_rank(pen), 0);
    assert_true(vikt_tensor_data(pen)[0] == 0.0f);
    assert_int_equal(vikt_backward(m, pen), VIKT_OK);
    for (int i = 0; i < 6; i++) assert_true(vikt_tensor_grad(p)[i] == 0.0f);

    float shift[10];
    vt_fill(shift, 10, 600, -0.7f, 0.7f);
    for (int i = 0; i < 6; i++) vikt_tensor_data(p)[i] += shift[i];
    for (int i = 0; i < 4; i++) vikt_tensor_data(q)[i] += shift[6 + i];
    vikt_tensor *t[2] = {p, q};
    double value = 0, grad[10];
    for (int k = 0, at = 0; k < 2; k++)
        for (int i = 0; i < vikt_tensor_numel(t[k]); i++, at++) {
            double f = vikt_ewc_fisher(ewc, t[k])[i];
            double d = (double)vikt_tensor_data(t[k])[i] - vikt_ewc_anchor(ewc, t[k])[i];
            value += 0.5 * lambda * f * d * d;
            grad[at] = lambda * f * d;
        }
    assert_true(value > 0.1);
    vikt_step_begin(m);
    vikt_zero_grad(m);
    pen = vikt_ewc_penalty(ewc, lambda);
    assert_float_equal(vikt_tensor_data(pen)[0], value, 1e-6 * value);
    assert_int_equal(vikt_backward(m, pen), VIKT_OK);
    expect_close(vikt_tensor_grad(p), grad, 6, 1e-6);
    expect_close(vikt_tensor_grad(q), grad + 6, 4, 1e-6);

    /* λ = 0: zero. */
    vikt_step_begin(m);
    assert_true(vikt_tensor_data(vikt_ewc_penalty(ewc, 0.0f))[0] == 0.0f);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_ewc_destroy(ewc);
    vikt_model_destroy(m);
}

/* vt_gradcheck's build: on its first call (on the checker's model) the
 * state is made, with the Fisher from gradients written here and an
 * anchor away from the inputs; every call returns the penalty. */
typedef struct gc_ctx {
    vikt_ewc *ewc;
} gc_ctx;

static vikt_tensor *build_penalty(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    gc_ctx *c = ctx;
    if (!c->ewc) {
        assert_int_equal(vikt_ewc_create(m, &c->ewc), VIKT_OK);
        for (int k = 0; k < 3; k++) {
            float *g = vikt_tensor_grad(in[k]);
            if (g) vt_fill(g, vikt_tensor_numel(in[k]), 700 + k, 0.2f, 1.5f);
        }
        assert_int_equal(vikt_ewc_accumulate(c->ewc), VIKT_OK);
        vikt_zero_grad(m);
        for (int k = 0; k < 3; k++) {
            float *x = vikt_tensor_data(in[k]);
            for (int64_t i = 0; i < vikt_tensor_numel(in[k]); i++) x[i] -= 0.3f * (float)(i % 3);
        }
        assert_int_equal(vikt_ewc_consolidate(c->ewc, 1.0f), VIKT_OK);
        for (int k = 0; k < 3; k++) {
            float *x = vikt_tensor_data(in[k]);
            for (int64_t i = 0; i < vikt_tensor_numel(in[k]); i++) x[i] += 0.3f * (float)(i % 3);
        }
    }
    return vikt_ewc_penalty(c->ewc, 2.0f);
}

static void penalty_gradcheck(void **state) {
    (void)state;
    float a[6], b[3], frozen[2];
    vt_fill(a, 6, 31, -1.0f, 1.0f);
    vt_fill(b, 3, 32, -1.0f, 1.0f);
    vt_fill(frozen, 2, 33, -1.0f, 1.0f);
    vt_grad_input in[3] = {
        {2, {2, 3}, a, 1, "l.weight"},
        {1, {3}, b, 1, "l.bias"},
        {1, {2}, frozen, 0, "frozen"},
    };
    gc_ctx c = {NULL};
    vt_gradcheck("vikt_ewc_penalty", 3, in, build_penalty, &c, 1e-3, 1e-3);
    /* vt_gradcheck destroys its model; the state is one block of the test
     * allocator (the handle), which is released here so the leak check
     * passes. */
    assert_non_null(c.ewc);
    vt_allocator.free(NULL, c.ewc, 1);
}

/* A parameter frozen while the Fisher is accumulated gets none; one frozen
 * during the penalty adds its constant and receives no gradient. */
static void frozen_parameters(void **state) {
    (void)state;
    vikt_tensor *p, *q;
    vikt_model *m = two_params(&p, &q);
    vikt_ewc *ewc;
    assert_int_equal(vikt_ewc_create(m, &ewc), VIKT_OK);
    set_grads(p, q, 800);
    assert_int_equal(vikt_param_freeze(m, "q", 1), 1);
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_OK);
    assert_int_equal(vikt_param_freeze(m, "q", 0), 1);
    set_grads(p, q, 800);
    assert_int_equal(vikt_ewc_consolidate(ewc, 1.0f), VIKT_OK);
    for (int i = 0; i < 4; i++) assert_true(vikt_ewc_fisher(ewc, q)[i] == 0.0f);
    for (int i = 0; i < 6; i++) assert_true(vikt_ewc_fisher(ewc, p)[i] > 0.0f);

    /* Second task: q gets a Fisher, then is frozen for the penalty. */
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_OK);
    assert_int_equal(vikt_ewc_consolidate(ewc, 1.0f), VIKT_OK);
    vikt_tensor_data(q)[1] += 2.0f;
    assert_int_equal(vikt_param_freeze(m, "q", 1), 1);
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *pen = vikt_ewc_penalty(ewc, 1.0f);
    double f = vikt_ewc_fisher(ewc, q)[1];
    assert_float_equal(vikt_tensor_data(pen)[0], 0.5 * f * 4.0, 1e-5 * f);
    assert_int_equal(vikt_backward(m, pen), VIKT_OK);
    for (int i = 0; i < 6; i++) assert_true(vikt_tensor_grad(p)[i] == 0.0f);
    /* All frozen: the penalty is a constant, not recorded. */
    assert_int_equal(vikt_param_freeze(m, "", 1), 2);
    vikt_step_begin(m);
    pen = vikt_ewc_penalty(ewc, 1.0f);
    assert_non_null(pen);
    assert_int_equal(vikt_backward(m, pen), VIKT_ERR_STATE);
    vikt_model_clear_error(m);
    vikt_ewc_destroy(ewc);
    vikt_model_destroy(m);
}

/* -------------------------------------------------------------- rejections */

static vikt_tensor *returns_null(vikt_model *m, vikt_tensor *x, void *ud) {
    (void)m, (void)x, (void)ud;
    return NULL;
}

static void rejects_bad_arguments(void **state) {
    (void)state;
    vikt_ewc *ewc = (vikt_ewc *)1;
    assert_int_equal(vikt_ewc_create(NULL, &ewc), VIKT_ERR_NULL);
    assert_null(ewc);
    vikt_model *empty = vt_model(1);
    assert_int_equal(vikt_ewc_create(empty, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_ewc_create(empty, &ewc), VIKT_ERR_STATE);
    assert_null(ewc);
    vt_expect_error(empty, VIKT_ERR_STATE, "vikt_ewc_create", "no parameters");
    vikt_ewc_destroy(NULL);
    assert_int_equal(vikt_ewc_accumulate(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_ewc_consolidate(NULL, 1.0f), VIKT_ERR_NULL);
    assert_null(vikt_ewc_penalty(NULL, 1.0f));
    assert_int_equal(vikt_ewc_pending(NULL), VIKT_ERR_NULL);
    assert_null(vikt_ewc_fisher(NULL, NULL));
    assert_null(vikt_ewc_anchor(NULL, NULL));

    vikt_dataset *ds;
    vikt_model *m = classifier(&ds);
    assert_int_equal(vikt_ewc_create(m, &ewc), VIKT_OK);
    vikt_tensor *w = vikt_param_find(m, "fc.weight");
    assert_null(vikt_ewc_fisher(ewc, NULL));
    vikt_tensor *other;
    assert_int_equal(vikt_tensor_create(m, 1, SHAPE(2), NULL, 1, &other), VIKT_OK);
    assert_null(vikt_ewc_fisher(ewc, other));
    assert_null(vikt_ewc_anchor(ewc, other));
    /* Made after the state: not tracked. */
    vikt_tensor *late = vikt_param(m, "late", 1, SHAPE(2), VIKT_INIT_ZEROS);
    assert_null(vikt_ewc_fisher(ewc, late));

    /* Penalty before an anchor; consolidate before any accumulate. */
    vikt_step_begin(m);
    assert_null(vikt_ewc_penalty(ewc, 1.0f));
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_ewc_penalty", "consolidate");
    assert_int_equal(vikt_ewc_consolidate(ewc, 1.0f), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_ewc_consolidate", "nothing accumulated");

    /* A NaN gradient adds nothing; nor does a model holding an error. */
    vikt_tensor_grad(w)[5] = NAN;
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_ewc_accumulate", "fc.weight");
    vikt_tensor_grad(w)[5] = INFINITY;
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "element 5", NULL);
    vikt_zero_grad(m);
    assert_null(vikt_relu(m, NULL)); /* records an error */
    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_ERR_STATE);
    vikt_model_clear_error(m);
    assert_int_equal(vikt_ewc_pending(ewc), 0);

    assert_int_equal(vikt_ewc_accumulate(ewc), VIKT_OK);
    float gammas[] = {-0.1f, 1.5f, NAN};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(vikt_ewc_consolidate(ewc, gammas[i]), VIKT_ERR_ARG);
        vt_expect_error(m, VIKT_ERR_ARG, "vikt_ewc_consolidate", "gamma");
    }
    assert_int_equal(vikt_ewc_pending(ewc), 1);
    assert_int_equal(vikt_ewc_consolidate(ewc, 1.0f), VIKT_OK);
    float lambdas[] = {-1.0f, NAN, INFINITY};
    for (int i = 0; i < 3; i++) {
        assert_null(vikt_ewc_penalty(ewc, lambdas[i]));
        vt_expect_error(m, VIKT_ERR_ARG, "vikt_ewc_penalty", "lambda");
    }

    /* Datasets. */
    const vikt_loss_kind ce = VIKT_LOSS_CROSS_ENTROPY;
    assert_int_equal(vikt_ewc_accumulate_dataset(NULL, ds, softmax_regression, NULL, ce, 1),
                     VIKT_ERR_NULL);
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, NULL, softmax_regression, NULL, ce, 1),
                     VIKT_ERR_NULL);
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, NULL, NULL, ce, 1), VIKT_ERR_NULL);
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL, ce, 0),
                     VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_ewc_accumulate_dataset", "batch_size");
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL,
                                                 (vikt_loss_kind)7, 1),
                     VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "unknown loss kind 7", NULL);
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL,
                                                 VIKT_LOSS_MSE, 1),
                     VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "float targets", NULL);
    vikt_dataset *foreign;
    assert_int_equal(vikt_dataset_create(empty, N, 1, SHAPE(D), xs, ys, NULL, 0, &foreign),
                     VIKT_OK);
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, foreign, softmax_regression, NULL, ce, 1),
                     VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "another model", NULL);
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, returns_null, NULL, ce, 1),
                     VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "forward function returned NULL", NULL);
    assert_null(vikt_relu(m, NULL));
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL, ce, 1),
                     VIKT_ERR_STATE);
    vikt_model_clear_error(m);
    /* A forward that records its own error: that error comes back, modes
     * are restored. */
    vikt_set_training(m, 1);
    assert_int_equal(vikt_param_freeze(m, "", 1), 3);
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL, ce, 2),
                     VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_backward", NULL);
    assert_true(vikt_training(m));
    assert_int_equal(vikt_ewc_pending(ewc), 0);

    vikt_dataset_destroy(foreign);
    vikt_ewc_destroy(ewc);
    vikt_dataset_destroy(ds);
    vikt_model_destroy(m);
    vikt_model_destroy(empty);
}

/* --------------------------------------------------------------- memory */

static void out_of_memory_everywhere(void **state) {
    (void)state;
    int64_t ok_at = 0;
    for (int64_t k = 1; k < 200 && !ok_at; k++) {
        vikt_dataset *ds;
        vikt_model *m = classifier(&ds);
        vt_alloc_reset();
        vt_stats.fail_at = k;
        vikt_ewc *ewc = NULL;
        int rc = vikt_ewc_create(m, &ewc);
        int64_t calls = rc;
        if (rc == VIKT_OK)
            calls = vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL,
                                                VIKT_LOSS_CROSS_ENTROPY, 2);
        if (rc == VIKT_OK && calls > 0) {
            assert_int_equal(calls, 3);
            if (vt_stats.calls < k) ok_at = k;
        } else {
            assert_int_equal(rc == VIKT_OK ? calls : rc, VIKT_ERR_NOMEM);
            if (rc) assert_null(ewc);
            vt_expect_error(m, VIKT_ERR_NOMEM, NULL, NULL);
        }
        vt_stats.fail_at = 0;
        vikt_ewc_destroy(ewc);
        vikt_dataset_destroy(ds);
        vikt_model_destroy(m);
    }
    assert_true(ok_at > 1);
}

/* Once the first step has sized the arena, a task-B step with the penalty
 * and a repeated Fisher pass make no allocator call. */
static void no_allocation_per_step(void **state) {
    (void)state;
    vikt_dataset *ds;
    vikt_model *m = classifier(&ds);
    vikt_ewc *ewc;
    vikt_optimizer *opt;
    assert_int_equal(vikt_ewc_create(m, &ewc), VIKT_OK);
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL,
                                                 VIKT_LOSS_CROSS_ENTROPY, 1), N);
    assert_int_equal(vikt_ewc_consolidate(ewc, 1.0f), VIKT_OK);
    assert_int_equal(vikt_adam_create(m, 0.01f, &opt), VIKT_OK);
    float before = 0, after = 0;
    for (int step = 0; step < 12; step++) {
        if (step == 2) vt_alloc_reset();
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *logits = softmax_regression(m, vikt_dataset_input(ds, 0, N), NULL);
        vikt_tensor *loss = vikt_cross_entropy_loss(m, logits, ys);
        vikt_tensor *pen = vikt_ewc_penalty(ewc, 10.0f);
        assert_int_equal(vikt_backward(m, vikt_add(m, loss, pen)), VIKT_OK);
        assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
        if (step == 1) before = vikt_tensor_data(pen)[0];
        after = vikt_tensor_data(pen)[0];
    }
    assert_int_equal(vt_stats.calls, 0);
    assert_true(after > before); /* the parameters moved away from θ* */
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL,
                                                 VIKT_LOSS_CROSS_ENTROPY, 1), N);
    assert_int_equal(vikt_ewc_consolidate(ewc, 1.0f), VIKT_OK);
    assert_int_equal(vt_stats.calls, 0);
    vikt_optimizer_destroy(opt);
    vikt_ewc_destroy(ewc);
    vikt_dataset_destroy(ds);
    vikt_model_destroy(m);
}

/* ---------------------------------------------------------------- trainer */

typedef struct pen_ctx {
    vikt_ewc *ewc;
    float lambda;
    int calls;
} pen_ctx;

static vikt_tensor *ewc_penalty_fn(vikt_model *m, void *ud) {
    (void)m;
    pen_ctx *c = ud;
    c->calls++;
    return vikt_ewc_penalty(c->ewc, c->lambda);
}

static vikt_tensor *null_penalty_fn(vikt_model *m, void *ud) {
    (void)m, (void)ud;
    return NULL;
}

static void params_out(vikt_model *m, float *w, float *b) {
    assert_int_equal(vikt_tensor_copy_out(vikt_param_find(m, "fc.weight"), w, C * D), VIKT_OK);
    assert_int_equal(vikt_tensor_copy_out(vikt_param_find(m, "fc.bias"), b, C), VIKT_OK);
}

static void params_in(vikt_model *m, const float *w, const float *b) {
    assert_int_equal(vikt_tensor_copy_in(vikt_param_find(m, "fc.weight"), w, C * D), VIKT_OK);
    assert_int_equal(vikt_tensor_copy_in(vikt_param_find(m, "fc.bias"), b, C), VIKT_OK);
}

/* A fit with vikt_trainer_set_penalty gives, bit for bit, the parameters of
 * the hand-written loop that adds the penalty, and reports the data loss. */
static void trainer_adds_the_penalty(void **state) {
    (void)state;
    enum { B = 3, EPOCHS = 4 };
    vikt_dataset *ds;
    vikt_model *m = classifier(&ds);
    vikt_ewc *ewc;
    assert_int_equal(vikt_ewc_create(m, &ewc), VIKT_OK);
    assert_int_equal(vikt_ewc_accumulate_dataset(ewc, ds, softmax_regression, NULL,
                                                 VIKT_LOSS_CROSS_ENTROPY, 1), N);
    /* Anchor away from the start, so the penalty pulls from step 1. */
    float w0[C * D], b0[C], shifted[C * D];
    params_out(m, w0, b0);
    for (int i = 0; i < C * D; i++) shifted[i] = w0[i] + 0.5f;
    params_in(m, shifted, b0);
    assert_int_equal(vikt_ewc_consolidate(ewc, 1.0f), VIKT_OK);
    params_in(m, w0, b0);

    pen_ctx pc = {ewc, 20.0f, 0};
    vikt_optimizer *opt;
    vikt_trainer *t;
    assert_int_equal(vikt_sgd_create(m, 0.1f, &opt), VIKT_OK);
    assert_int_equal(vikt_trainer_create(m, opt, softmax_regression, NULL, &t), VIKT_OK);
    assert_int_equal(vikt_trainer_set(t, VIKT_FIT_EPOCHS, EPOCHS), VIKT_OK);
    assert_int_equal(vikt_trainer_set(t, VIKT_FIT_BATCH_SIZE, B), VIKT_OK);
    assert_int_equal(vikt_trainer_set(t, VIKT_FIT_SHUFFLE, 0), VIKT_OK);
    assert_int_equal(vikt_trainer_set(t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF), VIKT_OK);
    assert_int_equal(vikt_trainer_set_penalty(NULL, ewc_penalty_fn, &pc), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_set_penalty(t, ewc_penalty_fn, &pc), VIKT_OK);
    assert_int_equal(vikt_trainer_fit(t, ds, ds), VIKT_OK);
    assert_int_equal(pc.calls, EPOCHS * N / B); /* training steps only */
    float wt[C * D], bt[C];
    params_out(m, wt, bt);
    double batch_loss;
    assert_int_equal(vikt_trainer_get(t, VIKT_FIT_BATCH_LOSS, &batch_loss), VIKT_OK);

    /* The same by hand. */
    params_in(m, w0, b0);
    vikt_optimizer *opt2;
    assert_int_equal(vikt_sgd_create(m, 0.1f, &opt2), VIKT_OK);
    float last = 0;
    for (int e = 0; e < EPOCHS; e++)
        for (int s = 0; s < N; s += B) {
            vikt_step_begin(m);
            vikt_zero_grad(m);
            vikt_tensor *logits = softmax_regression(m, vikt_dataset_input(ds, s, B), NULL);
            vikt_tensor *loss = vikt_cross_entropy_loss(m, logits, ys + s);
            last = vikt_tensor_data(loss)[0];
            assert_int_equal(vikt_backward(m, vikt_add(m, loss, vikt_ewc_penalty(ewc, 20.0f))),
                             VIKT_OK);
            assert_int_equal(vikt_optimizer_step(opt2), VIKT_OK);
        }
    float wh[C * D], bh[C];
    params_out(m, wh, bh);
    assert_memory_equal(wt, wh, sizeof wt);
    assert_memory_equal(bt, bh, sizeof bt);
    assert_true(batch_loss == last);

    /* Without the penalty the fit ends elsewhere. */
    params_in(m, w0, b0);
    assert_int_equal(vikt_trainer_set_penalty(t, NULL, NULL), VIKT_OK);
    assert_int_equal(vikt_trainer_fit(t, ds, NULL), VIKT_OK);
    params_out(m, wh, bh);
    assert_memory_not_equal(wt, wh, sizeof wt);

    /* A penalty that fails without saying why. */
    assert_int_equal(vikt_trainer_set_penalty(t, null_penalty_fn, NULL), VIKT_OK);
    assert_int_equal(vikt_trainer_fit(t, ds, NULL), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "penalty function returned NULL", NULL);

    vikt_trainer_destroy(t);
    vikt_optimizer_destroy(opt);
    vikt_optimizer_destroy(opt2);
    vikt_ewc_destroy(ewc);
    vikt_dataset_destroy(ds);
    vikt_model_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fisher_per_sample_is_the_empirical_fisher),
        cmocka_unit_test(fisher_per_batch_is_the_squared_mean_gradient),
        cmocka_unit_test(fisher_by_hand_logistic),
        cmocka_unit_test(consolidation_and_later_tasks),
        cmocka_unit_test(penalty_matches_double_reference),
        cmocka_unit_test(penalty_gradcheck),
        cmocka_unit_test(frozen_parameters),
        cmocka_unit_test(rejects_bad_arguments),
        cmocka_unit_test(out_of_memory_everywhere),
        cmocka_unit_test(no_allocation_per_step),
        cmocka_unit_test(trainer_adds_the_penalty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
