/* The tape and the step arena: a steady training step allocates nothing,
 * gradients accumulate (persistent tensors) or are recomputed (step tensors),
 * no-grad mode records nothing, shared tensors sum their gradients, backward
 * stops at the loss, op results stay non-leaves, and SGD fits a line. */
#include "support.h"

#include <math.h>
#include <string.h>

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

enum { B = 16, IN = 8, H = 32, C = 4 };

static float X[B * IN];
static int32_t Y[B];

static void data_init(void) {
    vt_fill(X, B * IN, 21, -1.0f, 1.0f);
    for (int i = 0; i < B; i++) Y[i] = (int32_t)((i * 3 + 1) % C);
}

static void assert_close(const float *got, const double *want, int64_t n, double tol,
                         const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)got[i] - want[i]) > tol * (1.0 + fabs(want[i])))
            fail_msg("%s[%lld]: %.8g, want %.8g", what, (long long)i, (double)got[i], want[i]);
}

/* ------------------------------------------------------------ the models */

/* x·W + b with named parameters [in, out] and [out]. */
static vikt_tensor *dense(vikt_model *m, vikt_tensor *x, const char *w, const char *b, int64_t in,
                          int64_t out) {
    vikt_tensor *W = vikt_param(m, w, 2, SHAPE(in, out), VIKT_INIT_XAVIER_UNIFORM);
    vikt_tensor *bias = vikt_param(m, b, 1, SHAPE(out), VIKT_INIT_ZEROS);
    return vikt_add(m, vikt_matmul(m, x, W), bias);
}

typedef vikt_tensor *(*forward_fn)(vikt_model *m);

/* Two layers and cross-entropy. */
static vikt_tensor *plain_mlp(vikt_model *m) {
    vikt_tensor *x = vikt_input(m, 2, SHAPE(B, IN), X);
    vikt_tensor *h = vikt_relu(m, dense(m, x, "fc1.weight", "fc1.bias", IN, H));
    vikt_tensor *logits = dense(m, h, "fc2.weight", "fc2.bias", H, C);
    return vikt_cross_entropy_loss(m, logits, Y);
}

/* The same with dropout, slice and concat (the halves swapped), a batched
 * matmul against a rank-3 parameter, and an entropy term built from
 * softmax and log-softmax. */
static vikt_tensor *busy_mlp(vikt_model *m) {
    vikt_tensor *x = vikt_input(m, 2, SHAPE(B, IN), X);
    vikt_tensor *h = vikt_relu(m, dense(m, x, "fc1.weight", "fc1.bias", IN, H));
    h = vikt_dropout(m, h, 0.25f);
    vikt_tensor *left = vikt_slice(m, h, 1, 0, H / 2), *right = vikt_slice(m, h, 1, H / 2, H / 2);
    vikt_tensor *parts[2] = {right, left};
    vikt_tensor *hc = vikt_concat(m, 2, parts, 1);
    vikt_tensor *h3 = vikt_reshape(m, hc, 3, SHAPE(2, B / 2, H));
    vikt_tensor *P = vikt_param(m, "heads.weight", 3, SHAPE(2, H, C), VIKT_INIT_XAVIER_UNIFORM);
    vikt_tensor *bias = vikt_param(m, "heads.bias", 1, SHAPE(C), VIKT_INIT_ZEROS);
    vikt_tensor *o = vikt_matmul(m, h3, P); /* [2, B/2, C] */
    vikt_tensor *logits = vikt_add(m, vikt_reshape(m, o, 2, SHAPE(B, -1)), bias);
    vikt_tensor *ce = vikt_cross_entropy_loss(m, logits, Y);
    vikt_tensor *neg_entropy =
        vikt_sum(m, vikt_mul(m, vikt_softmax(m, logits), vikt_log_softmax(m, logits)));
    return vikt_add(m, ce, vikt_scale(m, neg_entropy, 0.01f / B));
}

static float train_step(vikt_model *m, vikt_optimizer *opt, forward_fn f) {
    assert_int_equal(vikt_step_begin(m), VIKT_OK);
    assert_int_equal(vikt_zero_grad(m), VIKT_OK);
    vikt_tensor *loss = f(m);
    if (!loss) fail_msg("forward: %s", vikt_model_errmsg(m));
    assert_int_equal(vikt_backward(m, loss), VIKT_OK);
    assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    float l = vikt_tensor_data(loss)[0];
    assert_true(isfinite(l));
    return l;
}

/* ----------------------------------------------- (a) the zero-allocation step */

static void steady_state(forward_fn f, int nparams) {
    data_init();
    vt_alloc_reset();
    vikt_model *m = vt_model(1);
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(m, 0.2f, &opt), VIKT_OK);
    int64_t before = vt_stats.calls;
    float first = train_step(m, opt, f);
    assert_int_equal(vikt_param_count(m), nparams);
    /* The first step did allocate: parameters and the arena. */
    assert_true(vt_stats.calls > before + 4 * nparams);
    int64_t calls = vt_stats.calls, live = vt_stats.live, frees = vt_stats.frees;
    float last = first;
    for (int s = 0; s < 10; s++) {
        last = train_step(m, opt, f);
        if (vt_stats.calls != calls)
            fail_msg("step %d made %lld allocator calls", s + 2, (long long)(vt_stats.calls - calls));
    }
    assert_int_equal(vt_stats.live, live);
    assert_int_equal(vt_stats.frees, frees);
    assert_true(last < first); /* it did train */
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

static void steady_step_allocates_nothing(void **state) {
    (void)state;
    steady_state(plain_mlp, 4);
}

static void steady_step_with_every_kind_of_op(void **state) {
    (void)state;
    steady_state(busy_mlp, 4);
}

/* Wide enough that the matrix products run on several threads (each with
 * its own GEMM workspace). */
enum { WB = 64, WIN = 128, WH = 256 };
static float WX[WB * WIN];

static vikt_tensor *wide_mlp(vikt_model *m) {
    vikt_tensor *x = vikt_input(m, 2, SHAPE(WB, WIN), WX);
    vikt_tensor *h = vikt_relu(m, dense(m, x, "w1.weight", "w1.bias", WIN, WH));
    vikt_tensor *logits = dense(m, h, "w2.weight", "w2.bias", WH, C);
    return vikt_cross_entropy_loss(m, vikt_slice(m, logits, 0, 0, B), Y);
}

static void steady_step_on_several_threads(void **state) {
    (void)state;
    data_init();
    vt_fill(WX, WB * WIN, 8, -1.0f, 1.0f);
    vt_alloc_reset();
    vikt_model *m = vt_model(1);
    assert_int_equal(vikt_set_num_threads(m, 2), VIKT_OK);
    assert_int_equal(vikt_num_threads(m), 2);
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(m, 0.1f, &opt), VIKT_OK);
    float first = train_step(m, opt, wide_mlp), last = first;
    int64_t calls = vt_stats.calls, live = vt_stats.live;
    for (int s = 0; s < 10; s++) last = train_step(m, opt, wide_mlp);
    assert_int_equal(vt_stats.calls, calls);
    assert_int_equal(vt_stats.live, live);
    assert_true(last < first);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

/* Two backward passes per step and a larger first step: still nothing after
 * the first. */
static void steady_step_with_two_backward_passes(void **state) {
    (void)state;
    data_init();
    vt_alloc_reset();
    vikt_model *m = vt_model(2);
    int64_t calls = 0;
    for (int s = 0; s < 11; s++) {
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *a = plain_mlp(m), *b = busy_mlp(m);
        assert_int_equal(vikt_backward(m, a), VIKT_OK);
        assert_int_equal(vikt_backward(m, b), VIKT_OK);
        if (s == 0)
            calls = vt_stats.calls;
        else
            assert_int_equal(vt_stats.calls, calls);
    }
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

/* ----------------------------------------------------- (b) accumulation */

static const float XS[4 * 3] = {0.5f, -1.0f, 2.0f, 1.5f, 0.25f, -0.75f,
                                -2.0f, 1.0f, 0.5f, 0.0f, 3.0f, -1.25f};
static const float WS[3 * 2] = {0.2f, -0.4f, 0.6f, 0.1f, -0.3f, 0.5f};

/* loss = Σ (x·W)², x [4,3], W [3,2]: dW = 2 xᵀ(xW), dx = 2 (xW) Wᵀ. */
static void expected_grads(double *dW, double *dx, double *y) {
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 2; j++) {
            double s = 0;
            for (int k = 0; k < 3; k++) s += (double)XS[r * 3 + k] * WS[k * 2 + j];
            y[r * 2 + j] = s;
        }
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 2; j++) {
            double s = 0;
            for (int r = 0; r < 4; r++) s += 2.0 * XS[r * 3 + k] * y[r * 2 + j];
            dW[k * 2 + j] = s;
        }
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < 3; k++) {
            double s = 0;
            for (int j = 0; j < 2; j++) s += 2.0 * y[r * 2 + j] * WS[k * 2 + j];
            dx[r * 3 + k] = s;
        }
}

static vikt_tensor *square_loss(vikt_model *m, vikt_tensor *x, vikt_tensor *w) {
    return vikt_sum(m, vikt_square(m, vikt_matmul(m, x, w)));
}

static void scaled(const double *v, double k, double *out, int n) {
    for (int i = 0; i < n; i++) out[i] = k * v[i];
}

static void gradients_accumulate(void **state) {
    (void)state;
    double dW[6], dx[12], y[8], want[12];
    expected_grads(dW, dx, y);
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "w", 2, SHAPE(3, 2), VIKT_INIT_ZEROS);
    vikt_tensor *cw; /* a persistent tensor from vikt_tensor_create accumulates too */
    assert_int_equal(vikt_tensor_create(m, 2, SHAPE(3, 2), WS, 1, &cw), VIKT_OK);
    assert_int_equal(vikt_tensor_copy_in(w, WS, 6), VIKT_OK);

    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *x = vikt_input(m, 2, SHAPE(4, 3), XS);
    vikt_tensor *l = square_loss(m, x, w), *lc = square_loss(m, x, cw);
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    assert_close(vikt_tensor_grad(w), dW, 6, 1e-5, "dW once");
    assert_int_equal(vikt_backward(m, l), VIKT_OK); /* the same loss again */
    scaled(dW, 2, want, 6);
    assert_close(vikt_tensor_grad(w), want, 6, 1e-5, "dW twice");
    assert_int_equal(vikt_backward(m, lc), VIKT_OK);
    assert_close(vikt_tensor_grad(cw), dW, 6, 1e-5, "created tensor once");
    assert_close(vikt_tensor_grad(w), want, 6, 1e-5, "dW untouched by another loss");

    /* The next step, without zero_grad: a third time. */
    vikt_step_begin(m);
    x = vikt_input(m, 2, SHAPE(4, 3), XS);
    l = square_loss(m, x, w);
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    scaled(dW, 3, want, 6);
    assert_close(vikt_tensor_grad(w), want, 6, 1e-5, "dW across steps");

    /* Zeroed, then once more within this step. */
    assert_int_equal(vikt_zero_grad(m), VIKT_OK);
    for (int i = 0; i < 6; i++) {
        assert_float_equal(vikt_tensor_grad(w)[i], 0.0f, 0);
        assert_float_equal(vikt_tensor_grad(cw)[i], 0.0f, 0);
    }
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    assert_close(vikt_tensor_grad(w), dW, 6, 1e-5, "dW after zero_grad");
    vikt_model_destroy(m);
}

static void step_tensor_gradients_are_not_accumulated(void **state) {
    (void)state;
    double dW[6], dx[12], y[8], want[12];
    expected_grads(dW, dx, y);
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "w", 2, SHAPE(3, 2), VIKT_INIT_ZEROS);
    vikt_tensor_copy_in(w, WS, 6);
    vikt_step_begin(m);
    vikt_tensor *x = vikt_input(m, 2, SHAPE(4, 3), XS);
    assert_int_equal(vikt_tensor_set_requires_grad(x, 1), VIKT_OK);
    assert_int_equal(vikt_tensor_requires_grad(x), 1);
    assert_null(vikt_tensor_grad(x)); /* none until a backward pass reaches it */
    vikt_tensor *xw = vikt_matmul(m, x, w);
    vikt_tensor *l = vikt_sum(m, vikt_square(m, xw));
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    assert_close(vikt_tensor_grad(x), dx, 12, 1e-5, "dx");
    scaled(y, 2, want, 8);
    assert_close(vikt_tensor_grad(xw), want, 8, 1e-5, "d(xW)");
    assert_close(vikt_tensor_grad(l), (double[]){1.0}, 1, 0, "dl");

    for (int pass = 2; pass <= 3; pass++) {
        assert_int_equal(vikt_backward(m, l), VIKT_OK);
        assert_close(vikt_tensor_grad(x), dx, 12, 1e-5, "dx again");      /* not doubled */
        assert_close(vikt_tensor_grad(xw), want, 8, 1e-5, "d(xW) again"); /* not doubled */
        assert_close(vikt_tensor_grad(l), (double[]){1.0}, 1, 0, "dl again");
        double acc[6];
        scaled(dW, pass, acc, 6);
        assert_close(vikt_tensor_grad(w), acc, 6, 1e-5, "dW accumulates");
    }
    /* Another loss in the same step: the step tensors hold only its gradient. */
    vikt_tensor *l2 = vikt_sum(m, x);
    assert_int_equal(vikt_backward(m, l2), VIKT_OK);
    for (int i = 0; i < 12; i++) assert_float_equal(vikt_tensor_grad(x)[i], 1.0f, 0);
    vikt_model_destroy(m);
}

/* ----------------------------------------------------------- (c) no grad */

static void no_grad_records_nothing(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "w", 1, SHAPE(3), VIKT_INIT_ZEROS);
    vikt_tensor_copy_in(w, (float[]){1, -2, 3}, 3);
    vikt_step_begin(m);
    assert_int_equal(vikt_grad_enabled(m), 1);
    assert_int_equal(vikt_set_grad_enabled(m, 0), VIKT_OK);
    assert_int_equal(vikt_grad_enabled(m), 0);
    vikt_tensor *y = vikt_scale(m, w, 2.0f);
    vikt_tensor *s = vikt_sum(m, vikt_mul(m, y, w));
    assert_non_null(y);
    assert_non_null(s);
    assert_int_equal(vikt_tensor_requires_grad(y), 0);
    assert_int_equal(vikt_tensor_requires_grad(s), 0);
    assert_float_equal(vikt_tensor_data(s)[0], 2.0f * (1 + 4 + 9), 1e-5);
    assert_int_equal(vikt_backward(m, s), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_backward", NULL);
    for (int i = 0; i < 3; i++) assert_float_equal(vikt_tensor_grad(w)[i], 0.0f, 0);

    /* Back on: y is a constant, so d Σ y⊙w / dw = y = 2w (4w if y had been
     * recorded). */
    assert_int_equal(vikt_set_grad_enabled(m, 1), VIKT_OK);
    vikt_tensor *l = vikt_sum(m, vikt_mul(m, y, w));
    assert_int_equal(vikt_tensor_requires_grad(l), 1);
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    assert_close(vikt_tensor_grad(w), (double[]){2, -4, 6}, 3, 1e-6, "dw");
    assert_null(vikt_tensor_grad(y));
    vikt_model_destroy(m);
}

static vikt_tensor *eval_forward(vikt_model *m) {
    vikt_step_begin(m);
    vikt_tensor *l = busy_mlp(m);
    assert_non_null(l);
    assert_int_equal(vikt_tensor_requires_grad(l), 0);
    return l;
}

static void eval_forward_allocates_nothing(void **state) {
    (void)state;
    data_init();
    vt_alloc_reset();
    vikt_model *m = vt_model(1);
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(m, 0.1f, &opt), VIKT_OK);
    train_step(m, opt, busy_mlp);

    vikt_set_grad_enabled(m, 0);
    vikt_set_training(m, 0);
    assert_int_equal(vikt_training(m), 0);
    float first = vikt_tensor_data(eval_forward(m))[0];
    int64_t calls = vt_stats.calls;
    for (int s = 0; s < 10; s++) {
        vikt_tensor *l = eval_forward(m);
        /* Dropout passes values through in evaluation: the same loss. */
        assert_float_equal(vikt_tensor_data(l)[0], first, 0);
        assert_int_equal(vikt_backward(m, l), VIKT_ERR_STATE);
        vikt_model_clear_error(m);
    }
    assert_int_equal(vt_stats.calls, calls);

    /* A fresh model whose first steps are evaluation only: the same. */
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    m = vt_model(1);
    vikt_set_grad_enabled(m, 0);
    eval_forward(m);
    calls = vt_stats.calls;
    for (int s = 0; s < 10; s++) eval_forward(m);
    assert_int_equal(vt_stats.calls, calls);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

/* ------------------------------------------------------ (d) shared inputs */

static void a_tensor_used_twice_sums_its_gradients(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *t;
    assert_int_equal(vikt_tensor_create(m, 1, SHAPE(3), (float[]){1, -2, 3}, 1, &t), VIKT_OK);
    /* x * x */
    vikt_step_begin(m);
    assert_int_equal(vikt_backward(m, vikt_sum(m, vikt_mul(m, t, t))), VIKT_OK);
    assert_close(vikt_tensor_grad(t), (double[]){2, -4, 6}, 3, 1e-6, "d(x*x)");
    /* x + x, and x / x (d/dx of 1 is 0) */
    vikt_zero_grad(m);
    assert_int_equal(vikt_backward(m, vikt_sum(m, vikt_add(m, t, t))), VIKT_OK);
    assert_close(vikt_tensor_grad(t), (double[]){2, 2, 2}, 3, 0, "d(x+x)");
    vikt_zero_grad(m);
    assert_int_equal(vikt_backward(m, vikt_sum(m, vikt_div(m, t, t))), VIKT_OK);
    assert_close(vikt_tensor_grad(t), (double[]){0, 0, 0}, 3, 1e-6, "d(x/x)");
    /* x used by three different ops: Σ (x² + 3x + exp(0)·x) */
    vikt_zero_grad(m);
    vikt_tensor *l = vikt_sum(m, vikt_add(m, vikt_add(m, vikt_square(m, t), vikt_scale(m, t, 3.0f)),
                                          vikt_mul(m, t, vikt_ones(m, 1, SHAPE(3)))));
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    assert_close(vikt_tensor_grad(t), (double[]){6, 0, 10}, 3, 1e-6, "d(x²+3x+x)");

    /* A shared weight in two matmuls: dW[i][j] = x1[i] + x2[i]. */
    vikt_tensor *w = vikt_param(m, "w", 2, SHAPE(2, 2), VIKT_INIT_ONES);
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *x1 = vikt_input(m, 2, SHAPE(1, 2), (float[]){1, 2});
    vikt_tensor *x2 = vikt_input(m, 2, SHAPE(1, 2), (float[]){10, 20});
    l = vikt_add(m, vikt_sum(m, vikt_matmul(m, x1, w)), vikt_sum(m, vikt_matmul(m, x2, w)));
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    assert_close(vikt_tensor_grad(w), (double[]){11, 11, 22, 22}, 4, 1e-6, "shared dW");

    /* A step tensor used twice: h = x·w (all 3 and 30), loss = Σ h⊙h + Σ h. */
    vikt_zero_grad(m);
    vikt_tensor *h = vikt_matmul(m, vikt_concat(m, 2, (vikt_tensor *[]){x1, x2}, 0), w);
    l = vikt_add(m, vikt_sum(m, vikt_mul(m, h, h)), vikt_sum(m, h));
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    assert_close(vikt_tensor_grad(h), (double[]){7, 7, 61, 61}, 4, 1e-6, "dh");
    /* dW = xᵀ·dh = [[1·7+10·61]*2, [2·7+20·61]*2] */
    assert_close(vikt_tensor_grad(w), (double[]){617, 617, 1234, 1234}, 4, 1e-6, "dW via h");
    vikt_model_destroy(m);
}

/* ------------------------------------------------ (e) backward stops at loss */

static void backward_stops_at_the_loss(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "w", 2, SHAPE(2, 3), VIKT_INIT_ONES);
    vikt_tensor *v = vikt_param(m, "v", 1, SHAPE(3), VIKT_INIT_ONES);
    vikt_step_begin(m);
    vikt_tensor *l = vikt_sum(m, w);
    /* Recorded after the loss: its own use of w, a use of the loss, and an
     * op on a parameter the loss never touched. */
    vikt_tensor *after = vikt_sum(m, vikt_scale(m, w, 100.0f));
    vikt_tensor *l5 = vikt_scale(m, l, 5.0f);
    vikt_tensor *lv = vikt_sum(m, vikt_mul(m, v, v));
    assert_non_null(after);
    assert_non_null(l5);
    assert_non_null(lv);
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    for (int i = 0; i < 6; i++) assert_float_equal(vikt_tensor_grad(w)[i], 1.0f, 0);
    for (int i = 0; i < 3; i++) assert_float_equal(vikt_tensor_grad(v)[i], 0.0f, 0);
    assert_null(vikt_tensor_grad(after));
    assert_null(vikt_tensor_grad(l5));
    /* Each later loss adds only its own part. */
    assert_int_equal(vikt_backward(m, after), VIKT_OK);
    for (int i = 0; i < 6; i++) assert_float_equal(vikt_tensor_grad(w)[i], 101.0f, 0);
    assert_int_equal(vikt_backward(m, l5), VIKT_OK);
    for (int i = 0; i < 6; i++) assert_float_equal(vikt_tensor_grad(w)[i], 106.0f, 0);
    for (int i = 0; i < 3; i++) assert_float_equal(vikt_tensor_grad(v)[i], 0.0f, 0);
    assert_int_equal(vikt_backward(m, lv), VIKT_OK);
    for (int i = 0; i < 3; i++) assert_float_equal(vikt_tensor_grad(v)[i], 2.0f, 0);
    for (int i = 0; i < 6; i++) assert_float_equal(vikt_tensor_grad(w)[i], 106.0f, 0);
    vikt_model_destroy(m);
}

/* --------------------------------------------- (f) requires_grad on leaves */

static void requires_grad_only_on_leaves(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "w", 1, SHAPE(3), VIKT_INIT_ONES);
    vikt_step_begin(m);
    /* A recorded op result. */
    vikt_tensor *y = vikt_add(m, w, w);
    assert_int_equal(vikt_tensor_requires_grad(y), 1);
    assert_int_equal(vikt_tensor_set_requires_grad(y, 0), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_tensor_set_requires_grad", "vikt_add");
    assert_int_equal(vikt_tensor_requires_grad(y), 1);
    assert_int_equal(vikt_tensor_set_requires_grad(y, 1), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_tensor_set_requires_grad", "vikt_add");
    /* An op result nothing required a gradient for. */
    vikt_tensor *x = vikt_input(m, 1, SHAPE(3), (float[]){1, 2, 3});
    vikt_tensor *r = vikt_relu(m, x);
    assert_int_equal(vikt_tensor_requires_grad(r), 0);
    assert_int_equal(vikt_tensor_set_requires_grad(r, 1), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_tensor_set_requires_grad", "vikt_relu");
    assert_int_equal(vikt_tensor_requires_grad(r), 0);
    /* An op result made with gradients off. */
    vikt_set_grad_enabled(m, 0);
    vikt_tensor *e = vikt_exp(m, w);
    vikt_set_grad_enabled(m, 1);
    assert_int_equal(vikt_tensor_set_requires_grad(e, 1), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_tensor_set_requires_grad", "vikt_exp");
    assert_int_equal(vikt_tensor_requires_grad(e), 0);

    /* Leaves: an input, a created tensor (gradient allocated now), and a
     * parameter switched off and on. */
    assert_int_equal(vikt_tensor_set_requires_grad(x, 1), VIKT_OK);
    assert_int_equal(vikt_tensor_requires_grad(x), 1);
    vikt_tensor *t;
    assert_int_equal(vikt_tensor_create(m, 1, SHAPE(3), NULL, 0, &t), VIKT_OK);
    assert_null(vikt_tensor_grad(t));
    assert_int_equal(vikt_tensor_set_requires_grad(t, 1), VIKT_OK);
    assert_non_null(vikt_tensor_grad(t));
    for (int i = 0; i < 3; i++) assert_float_equal(vikt_tensor_grad(t)[i], 0.0f, 0);
    assert_int_equal(vikt_tensor_set_requires_grad(w, 0), VIKT_OK);
    vikt_tensor *l = vikt_sum(m, vikt_add(m, vikt_mul(m, x, w), t));
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    assert_close(vikt_tensor_grad(x), (double[]){1, 1, 1}, 3, 0, "dx");
    assert_close(vikt_tensor_grad(t), (double[]){1, 1, 1}, 3, 0, "dt");
    for (int i = 0; i < 3; i++) assert_float_equal(vikt_tensor_grad(w)[i], 0.0f, 0);
    assert_int_equal(vikt_tensor_set_requires_grad(w, 1), VIKT_OK);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* ---------------------------------------------- (g) a sanity training run */

static void sgd_fits_a_line(void **state) {
    (void)state;
    enum { N = 32, D = 3 };
    const float true_w[D] = {1.5f, -2.0f, 0.5f}, true_b = 0.25f;
    float xs[N * D], ys[N];
    vt_fill(xs, N * D, 5, -1.0f, 1.0f);
    for (int i = 0; i < N; i++) {
        double s = true_b;
        for (int k = 0; k < D; k++) s += (double)xs[i * D + k] * true_w[k];
        ys[i] = (float)s;
    }
    vikt_model *m = vt_model(3);
    vikt_tensor *w = vikt_param(m, "w", 2, SHAPE(D, 1), VIKT_INIT_ZEROS);
    vikt_tensor *b = vikt_param(m, "b", 1, SHAPE(1), VIKT_INIT_ZEROS);
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(m, 0.1f, &opt), VIKT_OK);
    float first = -1, loss = -1;
    for (int step = 0; step < 1000; step++) {
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *x = vikt_input(m, 2, SHAPE(N, D), xs);
        vikt_tensor *y = vikt_input(m, 2, SHAPE(N, 1), ys);
        vikt_tensor *l = vikt_mse_loss(m, vikt_add(m, vikt_matmul(m, x, w), b), y);
        assert_int_equal(vikt_backward(m, l), VIKT_OK);
        assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
        loss = vikt_tensor_data(l)[0];
        if (step == 0) first = loss;
    }
    assert_true(first > 1.0f);
    if (!(loss < 1e-3f)) fail_msg("final loss %g", (double)loss);
    for (int k = 0; k < D; k++) assert_float_equal(vikt_tensor_data(w)[k], true_w[k], 1e-3);
    assert_float_equal(vikt_tensor_data(b)[0], true_b, 1e-3);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(steady_step_allocates_nothing),
        cmocka_unit_test(steady_step_with_every_kind_of_op),
        cmocka_unit_test(steady_step_with_two_backward_passes),
        cmocka_unit_test(steady_step_on_several_threads),
        cmocka_unit_test(gradients_accumulate),
        cmocka_unit_test(step_tensor_gradients_are_not_accumulated),
        cmocka_unit_test(no_grad_records_nothing),
        cmocka_unit_test(eval_forward_allocates_nothing),
        cmocka_unit_test(a_tensor_used_twice_sums_its_gradients),
        cmocka_unit_test(backward_stops_at_the_loss),
        cmocka_unit_test(requires_grad_only_on_leaves),
        cmocka_unit_test(sgd_fits_a_line),
    };
    return cmocka_run_group_tests_name("tape", tests, NULL, NULL);
}
