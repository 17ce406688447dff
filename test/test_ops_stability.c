/* Numerical stability and hand-checkable forward values.
 *
 * softmax, log_softmax and cross_entropy_loss must stay finite and exact to
 * float precision for logits of ±1e4 (a naive exp overflows at 89); the
 * binary losses and sigmoid must too at their extremes. Expected values are
 * worked out by hand (or from the closed form in double) in the comments. */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* |got - want| <= abs_tol + rel_tol·|want|, and got finite. */
static void expect_close(const char *what, int64_t i, double got, double want, double rel_tol,
                         double abs_tol) {
    if (!isfinite(got))
        fail_msg("%s[%lld]: %.9g is not finite (want %.9g)", what, (long long)i, got, want);
    if (fabs(got - want) > abs_tol + rel_tol * fabs(want))
        fail_msg("%s[%lld]: got %.9g, want %.9g (|diff| %.3g)", what, (long long)i, got, want,
                 fabs(got - want));
}

static void expect_all(const char *what, const float *got, const double *want, int64_t n,
                       double rel_tol, double abs_tol) {
    assert_non_null(got);
    for (int64_t i = 0; i < n; i++) expect_close(what, i, got[i], want[i], rel_tol, abs_tol);
}

static void expect_all_finite(const char *what, const float *x, int64_t n) {
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) fail_msg("%s[%lld] = %g is not finite", what, (long long)i, (double)x[i]);
}

/* A persistent leaf that requires a gradient, so backward reaches it. */
static vikt_tensor *leaf(vikt_model *m, int rank, const int64_t *shape, const float *data) {
    vikt_tensor *t;
    assert_int_equal(vikt_tensor_create(m, rank, shape, data, 1, &t), VIKT_OK);
    return t;
}

/* Backward of Σ out ⊙ r. */
static void backward_dot(vikt_model *m, vikt_tensor *out, const float *r) {
    int64_t shape[4];
    int rank = vikt_tensor_shape(out, shape);
    vikt_tensor *rt = vikt_input(m, rank, shape, r);
    int rc = vikt_backward(m, vikt_sum(m, vikt_mul(m, out, rt)));
    if (rc) fail_msg("backward: %s", vikt_model_errmsg(m));
}

/* ------------------------------------------------------- large logits */

/* Rows of [4,3] logits:
 *   {1e4, -1e4, 0}          one logit dominates: softmax {1, 0, 0}
 *   {1e4, 1e4-1, 1e4-2}     softmax ∝ {1, e⁻¹, e⁻²}
 *   {-1e4, -1e4, -1e4}      all equal and very negative: 1/3 each
 *   {-1e4, 1e4, 1e4}        a tie at the top: {0, ½, ½} */
static const float big_rows[12] = {1e4f, -1e4f, 0.0f, 1e4f, 1e4f - 1, 1e4f - 2,
                                   -1e4f, -1e4f, -1e4f, -1e4f, 1e4f, 1e4f};
/* log(1 + e⁻¹ + e⁻²) */
#define LSE3 0.40760596444438013
#define LN2 0.69314718055994531
#define LN3 1.09861228866810969

static void big_softmax_expected(double *y) {
    const double want[12] = {1, 0, 0,
                             exp(-LSE3), exp(-1 - LSE3), exp(-2 - LSE3),
                             1.0 / 3, 1.0 / 3, 1.0 / 3,
                             0, 0.5, 0.5};
    memcpy(y, want, sizeof want);
}

static void softmax_large_logits(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *x = leaf(m, 2, (int64_t[]){4, 3}, big_rows);
    vikt_tensor *y = vikt_softmax(m, x);
    assert_non_null(y);
    double want[12];
    big_softmax_expected(want);
    expect_all("softmax(±1e4)", vikt_tensor_data(y), want, 12, 1e-6, 1e-7);
    /* The two-element tie. */
    vikt_tensor *tie = vikt_softmax(m, vikt_input(m, 1, (int64_t[]){2}, (float[]){1e4f, 1e4f}));
    expect_all("softmax({1e4, 1e4})", vikt_tensor_data(tie), (double[]){0.5, 0.5}, 2, 0, 1e-7);

    /* Gradient y ⊙ (r − Σ r⊙y) per row, finite and right. */
    const float r[12] = {0.3f, -0.7f, 1.1f, 0.9f, -0.2f, 0.4f, 1.5f, -1.0f, 0.25f, 2.0f, 0.5f, -0.5f};
    backward_dot(m, y, r);
    double g[12];
    for (int row = 0; row < 4; row++) {
        double dot = 0;
        for (int j = 0; j < 3; j++) dot += r[row * 3 + j] * want[row * 3 + j];
        for (int j = 0; j < 3; j++) g[row * 3 + j] = want[row * 3 + j] * (r[row * 3 + j] - dot);
    }
    expect_all("softmax(±1e4) gradient", vikt_tensor_grad(x), g, 12, 1e-5, 1e-6);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void log_softmax_large_logits(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *x = leaf(m, 2, (int64_t[]){4, 3}, big_rows);
    vikt_tensor *y = vikt_log_softmax(m, x);
    assert_non_null(y);
    const double want[12] = {0, -2e4, -1e4,
                             -LSE3, -1 - LSE3, -2 - LSE3,
                             -LN3, -LN3, -LN3,
                             -2e4 - LN2, -LN2, -LN2};
    /* rel 1e-6 is a few float ulps; abs 1e-6 covers the exact zero. */
    expect_all("log_softmax(±1e4)", vikt_tensor_data(y), want, 12, 1e-6, 1e-6);
    vikt_tensor *tie =
        vikt_log_softmax(m, vikt_input(m, 1, (int64_t[]){2}, (float[]){1e4f, 1e4f}));
    expect_all("log_softmax({1e4, 1e4})", vikt_tensor_data(tie), (double[]){-LN2, -LN2}, 2,
               1e-6, 0);

    /* Gradient r − softmax ⊙ Σ r per row. */
    const float r[12] = {0.3f, -0.7f, 1.1f, 0.9f, -0.2f, 0.4f, 1.5f, -1.0f, 0.25f, 2.0f, 0.5f, -0.5f};
    backward_dot(m, y, r);
    double p[12], g[12];
    big_softmax_expected(p);
    for (int row = 0; row < 4; row++) {
        double total = r[row * 3] + r[row * 3 + 1] + r[row * 3 + 2];
        for (int j = 0; j < 3; j++) g[row * 3 + j] = r[row * 3 + j] - p[row * 3 + j] * total;
    }
    expect_all("log_softmax(±1e4) gradient", vikt_tensor_grad(x), g, 12, 1e-5, 1e-6);
    vikt_model_destroy(m);
}

static void cross_entropy_large_logits(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    /* {1e4, -1e4} with label 1: -log softmax_1 = 1e4 - (-1e4) = 2e4. */
    vikt_tensor *a = leaf(m, 2, (int64_t[]){1, 2}, (float[]){1e4f, -1e4f});
    vikt_tensor *l1 = vikt_cross_entropy_loss(m, a, (int32_t[]){1});
    assert_non_null(l1);
    expect_close("CE({1e4,-1e4}, label 1)", 0, vikt_tensor_data(l1)[0], 2e4, 1e-6, 0);
    /* d/dx = softmax − onehot = {1, 0} − {0, 1}. */
    assert_int_equal(vikt_backward(m, l1), VIKT_OK);
    expect_all("CE({1e4,-1e4}, label 1) gradient", vikt_tensor_grad(a), (double[]){1, -1}, 2,
               1e-6, 1e-7);

    /* Label 0: the right class dominates, the loss is 0. */
    vikt_step_begin(m);
    memset(vikt_tensor_grad(a), 0, 2 * sizeof(float)); /* a is not a parameter */
    vikt_tensor *l0 = vikt_cross_entropy_loss(m, a, (int32_t[]){0});
    expect_close("CE({1e4,-1e4}, label 0)", 0, vikt_tensor_data(l0)[0], 0, 0, 1e-6);
    assert_int_equal(vikt_backward(m, l0), VIKT_OK);
    expect_all("CE({1e4,-1e4}, label 0) gradient", vikt_tensor_grad(a), (double[]){0, 0}, 2, 0,
               1e-7);

    /* The [4,3] rows with labels {1, 2, 0, 0}: losses 2e4, 2 + LSE3, ln 3,
     * 2e4 + ln 2; the mean is 10001.0498413583. */
    vikt_step_begin(m);
    vikt_tensor *x = leaf(m, 2, (int64_t[]){4, 3}, big_rows);
    const int32_t labels[4] = {1, 2, 0, 0};
    vikt_tensor *l = vikt_cross_entropy_loss(m, x, labels);
    assert_non_null(l);
    double mean = (2e4 + (2 + LSE3) + LN3 + (2e4 + LN2)) / 4;
    expect_close("CE([4,3] ±1e4)", 0, vikt_tensor_data(l)[0], mean, 1e-6, 0);
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    double p[12];
    big_softmax_expected(p);
    for (int row = 0; row < 4; row++) {
        for (int j = 0; j < 3; j++) p[row * 3 + j] /= 4;
        p[row * 3 + labels[row]] -= 0.25;
    }
    expect_all("CE([4,3] ±1e4) gradient", vikt_tensor_grad(x), p, 12, 1e-5, 1e-7);
    vikt_model_destroy(m);
}

/* max(x,0) − x·t + log(1 + e^−|x|): at x = ±1e4 the exp term is 0 and the
 * loss is linear; the gradients are (σ(x) − t)/N and −x/N. */
static void bce_with_logits_extremes(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    const float xs[7] = {1e4f, 1e4f, -1e4f, -1e4f, 0.0f, 100.0f, -100.0f};
    const float ts[7] = {0.0f, 1.0f, 1.0f, 0.0f, 0.5f, 0.25f, 0.25f};
    vikt_tensor *x = leaf(m, 1, (int64_t[]){7}, xs);
    vikt_tensor *t = leaf(m, 1, (int64_t[]){7}, ts);
    vikt_tensor *l = vikt_bce_with_logits_loss(m, x, t);
    assert_non_null(l);
    /* per element: 1e4, 0, 1e4, 0, ln 2, 100 − 25 = 75, 0 + 25 = 25 (e^-100 is below float
     * resolution next to them) */
    double want = (1e4 + 0 + 1e4 + 0 + LN2 + 75 + 25) / 7;
    expect_close("bce(±1e4)", 0, vikt_tensor_data(l)[0], want, 1e-6, 0);
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    const double gx[7] = {1.0 / 7, 0, -1.0 / 7, 0, 0, 0.75 / 7, -0.25 / 7};
    const double gt[7] = {-1e4 / 7, -1e4 / 7, 1e4 / 7, 1e4 / 7, 0, -100.0 / 7, 100.0 / 7};
    expect_all("bce(±1e4) d/dlogits", vikt_tensor_grad(x), gx, 7, 1e-6, 1e-7);
    expect_all("bce(±1e4) d/dtarget", vikt_tensor_grad(t), gt, 7, 1e-6, 1e-7);
    vikt_model_destroy(m);
}

/* σ(±100), σ(±1e4), tanh(±100): saturated but finite, with finite gradients. */
static void sigmoid_tanh_saturate(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    const float xs[4] = {100.0f, -100.0f, 1e4f, -1e4f};
    vikt_tensor *x = leaf(m, 1, (int64_t[]){4}, xs);
    vikt_tensor *s = vikt_sigmoid(m, x);
    assert_non_null(s);
    const float *S = vikt_tensor_data(s);
    expect_all_finite("sigmoid(±100, ±1e4)", S, 4);
    assert_float_equal(S[0], 1.0f, 0);
    assert_true(S[1] >= 0.0f && S[1] < 1e-40f); /* e^-100 ≈ 3.7e-44, a denormal */
    assert_float_equal(S[2], 1.0f, 0);
    assert_float_equal(S[3], 0.0f, 0);
    backward_dot(m, s, (float[]){1, 1, 1, 1});
    const float *G = vikt_tensor_grad(x);
    expect_all_finite("sigmoid(±100, ±1e4) gradient", G, 4);
    for (int i = 0; i < 4; i++) assert_true(G[i] >= 0.0f && G[i] < 1e-40f);

    vikt_step_begin(m);
    memset(vikt_tensor_grad(x), 0, 4 * sizeof(float));
    vikt_tensor *th = vikt_tanh(m, x);
    const double want[4] = {1, -1, 1, -1};
    expect_all("tanh(±100, ±1e4)", vikt_tensor_data(th), want, 4, 0, 0);
    backward_dot(m, th, (float[]){1, 1, 1, 1});
    expect_all("tanh(±100, ±1e4) gradient", vikt_tensor_grad(x), (double[]){0, 0, 0, 0}, 4, 0, 0);
    vikt_model_destroy(m);
}

/* Softmax over a long row of large, nearly equal logits still sums to 1. */
static void softmax_long_row_sums_to_one(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    float x[1001];
    vt_fill(x, 1001, 5, 5000.0f, 5010.0f);
    vikt_tensor *y = vikt_softmax(m, vikt_input(m, 2, (int64_t[]){1, 1001}, x));
    double s = 0;
    for (int i = 0; i < 1001; i++) s += vikt_tensor_data(y)[i];
    expect_close("Σ softmax(5000..5010 ×1001)", 0, s, 1.0, 0, 1e-5);
    vikt_tensor *ly = vikt_log_softmax(m, vikt_input(m, 1, (int64_t[]){1001}, x));
    for (int i = 0; i < 1001; i++) {
        double want = log(vikt_tensor_data(y)[i]);
        expect_close("log_softmax vs log(softmax)", i, vikt_tensor_data(ly)[i], want, 1e-5, 1e-5);
    }
    vikt_model_destroy(m);
}

/* A -inf logit (a masked position) gets probability 0 and passes no
 * gradient; the other entries are the softmax of the rest: {0, -inf, 1}
 * gives {1/(1+e), 0, e/(1+e)}. */
static void softmax_masked_minus_inf(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *x = leaf(m, 2, (int64_t[]){1, 3}, (float[]){0.0f, -INFINITY, 1.0f});
    vikt_tensor *y = vikt_softmax(m, x);
    const double e = exp(1.0);
    expect_all("softmax({0,-inf,1})", vikt_tensor_data(y), (double[]){1 / (1 + e), 0, e / (1 + e)},
               3, 1e-6, 0);
    backward_dot(m, y, (float[]){1.0f, 5.0f, -1.0f});
    double dot = 1 / (1 + e) - e / (1 + e);
    expect_all("softmax({0,-inf,1}) gradient", vikt_tensor_grad(x),
               (double[]){(1 - dot) / (1 + e), 0, (-1 - dot) * e / (1 + e)}, 3, 1e-5, 1e-7);
    /* cross-entropy with a masked class that is not the label */
    vikt_step_begin(m);
    memset(vikt_tensor_grad(x), 0, 3 * sizeof(float));
    vikt_tensor *l = vikt_cross_entropy_loss(m, x, (int32_t[]){2});
    expect_close("CE({0,-inf,1}, label 2)", 0, vikt_tensor_data(l)[0], log(1 + 1 / e), 1e-6, 0);
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    expect_all("CE({0,-inf,1}, label 2) gradient", vikt_tensor_grad(x),
               (double[]){1 / (1 + e), 0, e / (1 + e) - 1}, 3, 1e-6, 1e-7);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------ forward values */

static void unary_known_values(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    const float xs[6] = {1, -1, 0, 2, -3, 0.5f};
    vikt_tensor *x = leaf(m, 1, (int64_t[]){6}, xs);
    /* gelu(x) = x·Φ(x), exact erf form (the tanh approximation gives
     * gelu(1) = 0.8411920, outside the tolerance). */
    vikt_tensor *g = vikt_gelu(m, x);
    const double gelu[6] = {0.8413447460685429, -0.15865525393145707, 0, 1.9544997361036416,
                            -0.00404969409489031, 0.34573123063700656};
    expect_all("gelu", vikt_tensor_data(g), gelu, 6, 1e-6, 1e-7);
    /* d gelu = Φ(x) + x·φ(x) */
    backward_dot(m, g, (float[]){1, 1, 1, 1, 1, 1});
    const double dgelu[6] = {1.0833154705876864, -0.08331547058768629, 0.5, 1.085231801078197,
                             -0.01194564720418392, 0.8674951246561629};
    expect_all("gelu gradient", vikt_tensor_grad(x), dgelu, 6, 1e-5, 1e-7);

    const float in1[5] = {0.0f, 2.0f, -2.0f, 0.5f, 3.0f};
    vikt_tensor *v = vikt_input(m, 1, (int64_t[]){5}, in1);
    expect_all("sigmoid", vikt_tensor_data(vikt_sigmoid(m, v)),
               (double[]){0.5, 0.8807970779778823, 0.11920292202211769, 0.6224593312018546,
                          0.9525741268224334},
               5, 1e-6, 0);
    expect_all("tanh", vikt_tensor_data(vikt_tanh(m, v)),
               (double[]){0, 0.9640275800758169, -0.9640275800758169, 0.46211715726000974,
                          0.9950547536867305},
               5, 1e-6, 0);
    expect_all("relu", vikt_tensor_data(vikt_relu(m, v)), (double[]){0, 2, 0, 0.5, 3}, 5, 0, 0);
    expect_all("leaky_relu 0.1", vikt_tensor_data(vikt_leaky_relu(m, v, 0.1f)),
               (double[]){0, 2, -0.2f, 0.5, 3}, 5, 0, 0);
    expect_all("square", vikt_tensor_data(vikt_square(m, v)), (double[]){0, 4, 4, 0.25, 9}, 5, 0,
               0);
    expect_all("scale -1.5", vikt_tensor_data(vikt_scale(m, v, -1.5f)),
               (double[]){0, -3, 3, -0.75, -4.5}, 5, 0, 0);
    expect_all("exp", vikt_tensor_data(vikt_exp(m, v)),
               (double[]){1, 7.38905609893065, 0.1353352832366127, 1.6487212707001282,
                          20.085536923187668},
               5, 1e-6, 0);
    const float pos[4] = {1.0f, 4.0f, 10.0f, 0.25f};
    vikt_tensor *p = vikt_input(m, 1, (int64_t[]){4}, pos);
    expect_all("log", vikt_tensor_data(vikt_log(m, p)),
               (double[]){0, 1.3862943611198906, 2.302585092994046, -1.3862943611198906}, 4, 1e-6,
               1e-7);
    expect_all("sqrt", vikt_tensor_data(vikt_sqrt(m, p)),
               (double[]){1, 2, 3.1622776601683795, 0.5}, 4, 1e-6, 0);
    expect_all("softmax {1,2,3}",
               vikt_tensor_data(vikt_softmax(m, vikt_input(m, 1, (int64_t[]){3},
                                                           (float[]){1, 2, 3}))),
               (double[]){0.09003057317038046, 0.24472847105479767, 0.6652409557748219}, 3, 1e-6,
               0);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* [[1,2,3],[4,5,6]]·[[7,8],[9,10],[11,12]] = [[58,64],[139,154]], through
 * every transpose flag (operands stored transposed), batched and shared.
 * Small integers: float sums are exact, so equality is exact. */
static void matmul_known_values(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    const float A[6] = {1, 2, 3, 4, 5, 6}, At[6] = {1, 4, 2, 5, 3, 6};
    const float B[6] = {7, 8, 9, 10, 11, 12}, Bt[6] = {7, 9, 11, 8, 10, 12};
    const double C[4] = {58, 64, 139, 154};
    vikt_tensor *a = leaf(m, 2, (int64_t[]){2, 3}, A);
    vikt_tensor *at = vikt_input(m, 2, (int64_t[]){3, 2}, At);
    vikt_tensor *b = leaf(m, 2, (int64_t[]){3, 2}, B);
    vikt_tensor *bt = vikt_input(m, 2, (int64_t[]){2, 3}, Bt);
    vikt_tensor *c = vikt_matmul(m, a, b);
    expect_all("matmul NN", vikt_tensor_data(c), C, 4, 0, 0);
    expect_all("matmul NT", vikt_tensor_data(vikt_matmul_t(m, a, bt, 0, 1)), C, 4, 0, 0);
    expect_all("matmul TN", vikt_tensor_data(vikt_matmul_t(m, at, b, 1, 0)), C, 4, 0, 0);
    expect_all("matmul TT", vikt_tensor_data(vikt_matmul_t(m, at, bt, 1, 1)), C, 4, 0, 0);
    assert_int_equal(vikt_tensor_dim(c, 0), 2);
    assert_int_equal(vikt_tensor_dim(c, 1), 2);
    /* d Σ(A·B)/dA[i][k] = Σ_j B[k][j] = {15, 19, 23}; d/dB[k][j] = Σ_i A[i][k] = {5, 7, 9}. */
    assert_int_equal(vikt_backward(m, vikt_sum(m, c)), VIKT_OK);
    expect_all("d sum(A·B)/dA", vikt_tensor_grad(a), (double[]){15, 19, 23, 15, 19, 23}, 6, 0, 0);
    expect_all("d sum(A·B)/dB", vikt_tensor_grad(b), (double[]){5, 5, 7, 7, 9, 9}, 6, 0, 0);

    /* Batched: batch 1 is -A, so its product is -C. */
    const float A2[12] = {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6};
    const float B2[12] = {7, 8, 9, 10, 11, 12, 7, 8, 9, 10, 11, 12};
    const double C2[8] = {58, 64, 139, 154, -58, -64, -139, -154};
    vikt_tensor *a2 = vikt_input(m, 3, (int64_t[]){2, 2, 3}, A2);
    vikt_tensor *b2 = vikt_input(m, 3, (int64_t[]){2, 3, 2}, B2);
    vikt_tensor *c2 = vikt_matmul(m, a2, b2);
    assert_int_equal(vikt_tensor_rank(c2), 3);
    expect_all("matmul 3d·3d", vikt_tensor_data(c2), C2, 8, 0, 0);
    expect_all("matmul 3d·2d shared", vikt_tensor_data(vikt_matmul(m, a2, b)), C2, 8, 0, 0);
    /* 2-D · 3-D: A times each batch of [B, 2B]. */
    const float B3[12] = {7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 22, 24};
    vikt_tensor *c3 = vikt_matmul(m, a, vikt_input(m, 3, (int64_t[]){2, 3, 2}, B3));
    assert_int_equal(vikt_tensor_rank(c3), 3);
    expect_all("matmul 2d·3d shared", vikt_tensor_data(c3),
               (double[]){58, 64, 139, 154, 116, 128, 278, 308}, 8, 0, 0);
    vikt_model_destroy(m);
}

/* Layout ops and reductions on x = [[1,2,3],[4,5,6]]. */
static void shape_and_reduce_known_values(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *x = vikt_input(m, 2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
    expect_all("transpose", vikt_tensor_data(vikt_transpose(m, x)), (double[]){1, 4, 2, 5, 3, 6},
               6, 0, 0);
    expect_all("sum", vikt_tensor_data(vikt_sum(m, x)), (double[]){21}, 1, 0, 0);
    expect_all("mean", vikt_tensor_data(vikt_mean(m, x)), (double[]){3.5}, 1, 0, 0);
    vikt_tensor *s0 = vikt_sum_axis(m, x, 0, 0);
    assert_int_equal(vikt_tensor_rank(s0), 1);
    expect_all("sum_axis 0", vikt_tensor_data(s0), (double[]){5, 7, 9}, 3, 0, 0);
    vikt_tensor *s1 = vikt_sum_axis(m, x, 1, 1);
    assert_int_equal(vikt_tensor_rank(s1), 2);
    assert_int_equal(vikt_tensor_dim(s1, 0), 2);
    assert_int_equal(vikt_tensor_dim(s1, 1), 1);
    expect_all("sum_axis 1 keepdim", vikt_tensor_data(s1), (double[]){6, 15}, 2, 0, 0);
    expect_all("mean_axis -1", vikt_tensor_data(vikt_mean_axis(m, x, -1, 0)), (double[]){2, 5},
               2, 1e-7, 0);
    expect_all("mean_axis 0", vikt_tensor_data(vikt_mean_axis(m, x, 0, 0)),
               (double[]){2.5, 3.5, 4.5}, 3, 0, 0);
    expect_all("slice axis 1 [1:3]", vikt_tensor_data(vikt_slice(m, x, 1, 1, 2)),
               (double[]){2, 3, 5, 6}, 4, 0, 0);
    expect_all("slice axis 0 [1:2]", vikt_tensor_data(vikt_slice(m, x, 0, 1, 1)),
               (double[]){4, 5, 6}, 3, 0, 0);
    vikt_tensor *y = vikt_input(m, 2, (int64_t[]){2, 1}, (float[]){10, 20});
    vikt_tensor *parts[3] = {x, y, x};
    vikt_tensor *cat = vikt_concat(m, 3, parts, -1);
    assert_int_equal(vikt_tensor_dim(cat, 1), 7);
    expect_all("concat axis -1", vikt_tensor_data(cat),
               (double[]){1, 2, 3, 10, 1, 2, 3, 4, 5, 6, 20, 4, 5, 6}, 14, 0, 0);
    vikt_tensor *r = vikt_reshape(m, x, 2, (int64_t[]){-1, 2});
    assert_int_equal(vikt_tensor_dim(r, 0), 3);
    expect_all("reshape [-1,2]", vikt_tensor_data(r), (double[]){1, 2, 3, 4, 5, 6}, 6, 0, 0);
    /* Broadcasting: row, column, scalar. */
    expect_all("add row", vikt_tensor_data(vikt_add(m, x, vikt_input(m, 1, (int64_t[]){3},
                                                                      (float[]){10, 20, 30}))),
               (double[]){11, 22, 33, 14, 25, 36}, 6, 0, 0);
    expect_all("sub column", vikt_tensor_data(vikt_sub(m, x, y)),
               (double[]){-9, -8, -7, -16, -15, -14}, 6, 0, 0);
    expect_all("mul scalar", vikt_tensor_data(vikt_mul(m, x, vikt_input(m, 0, NULL,
                                                                         (float[]){-2}))),
               (double[]){-2, -4, -6, -8, -10, -12}, 6, 0, 0);
    expect_all("div scalar left", vikt_tensor_data(vikt_div(m, vikt_input(m, 1, (int64_t[]){1},
                                                                          (float[]){6}), x)),
               (double[]){6, 3, 2, 1.5, 1.2, 1}, 6, 1e-7, 0);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void loss_known_values(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *x3 = vikt_input(m, 1, (int64_t[]){3}, (float[]){1, 2, 3});
    /* mse: ((0)² + 2² + (−2)²)/3 */
    expect_all("mse", vikt_tensor_data(vikt_mse_loss(m, x3, vikt_input(m, 1, (int64_t[]){3},
                                                                        (float[]){1, 0, 5}))),
               (double[]){8.0 / 3}, 1, 1e-7, 0);
    /* hinge: mean(max(0, 1 − t·x)) = mean(0, 0.5, 0.7) */
    vikt_tensor *sc = vikt_input(m, 1, (int64_t[]){3}, (float[]){2, 0.5f, -0.3f});
    vikt_tensor *tg = vikt_input(m, 1, (int64_t[]){3}, (float[]){1, 1, -1});
    expect_all("hinge", vikt_tensor_data(vikt_hinge_loss(m, sc, tg)), (double[]){0.4}, 1, 1e-6,
               0);
    /* bce(0, t) = ln 2 for any t; bce(2, 1) = ln(1 + e⁻²) */
    vikt_tensor *bx = vikt_input(m, 1, (int64_t[]){2}, (float[]){0, 2});
    vikt_tensor *bt = vikt_input(m, 1, (int64_t[]){2}, (float[]){0.3f, 1});
    expect_all("bce", vikt_tensor_data(vikt_bce_with_logits_loss(m, bx, bt)),
               (double[]){(LN2 + 0.12692801104297263) / 2}, 1, 1e-6, 0);
    /* CE: uniform logits give ln C; {1,2,3} with label 2 gives LSE3. */
    vikt_tensor *cx = vikt_input(m, 2, (int64_t[]){2, 3}, (float[]){0, 0, 0, 1, 2, 3});
    expect_all("cross_entropy", vikt_tensor_data(vikt_cross_entropy_loss(m, cx,
                                                                         (int32_t[]){0, 2})),
               (double[]){(LN3 + LSE3) / 2}, 1, 1e-6, 0);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(softmax_large_logits),
        cmocka_unit_test(log_softmax_large_logits),
        cmocka_unit_test(cross_entropy_large_logits),
        cmocka_unit_test(bce_with_logits_extremes),
        cmocka_unit_test(sigmoid_tanh_saturate),
        cmocka_unit_test(softmax_long_row_sums_to_one),
        cmocka_unit_test(softmax_masked_minus_inf),
        cmocka_unit_test(unary_known_values),
        cmocka_unit_test(matmul_known_values),
        cmocka_unit_test(shape_and_reduce_known_values),
        cmocka_unit_test(loss_known_values),
    };
    return cmocka_run_group_tests_name("ops_stability", tests, NULL, NULL);
}
