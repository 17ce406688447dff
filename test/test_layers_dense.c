/* The dense layer: PyTorch parity, gradient checks, parameter reuse and
 * errors. Fixtures come from tools/gen_layer_fixtures_dense.py. */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fixtures/layers_dense.h"

static void expect_close(const char *what, const float *got, const float *want, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (fabsf(got[i] - want[i]) > 1e-5f + 1e-4f * fabsf(want[i]))
            fail_msg("%s[%lld]: got %.8g, PyTorch %.8g", what, (long long)i, (double)got[i],
                     (double)want[i]);
}

static float projection(int64_t i) { return (float)(0.5 + 0.5 * sin(0.91 * (double)i + 0.3)); }

/* Load PyTorch's weight and bias, run forward and backward of Σ y⊙R, compare. */
static void parity(const char *label, int rank, const int64_t *xshape, int64_t out,
                   const float *x, const float *w, const float *b, const float *y,
                   const float *dx, const float *dw, const float *db) {
    vikt_model *m = vt_model(1);
    int64_t in = xshape[rank - 1];
    vikt_tensor *pw = vikt_param(m, "fc.weight", 2, (int64_t[]){out, in}, VIKT_INIT_ZEROS);
    vikt_tensor *pb = vikt_param(m, "fc.bias", 1, &out, VIKT_INIT_ZEROS);
    vikt_tensor_copy_in(pw, w, out * in);
    vikt_tensor_copy_in(pb, b, out);
    vikt_tensor *xt;
    assert_int_equal(vikt_tensor_create(m, rank, xshape, x, 1, &xt), VIKT_OK);
    vikt_tensor *yt = vikt_dense(m, "fc", xt, out);
    assert_non_null(yt);
    int64_t n = vikt_tensor_numel(yt);
    float r[64];
    assert_true(n <= 64);
    for (int64_t i = 0; i < n; i++) r[i] = projection(i);
    int64_t shape[4];
    int yr = vikt_tensor_shape(yt, shape);
    assert_int_equal(yr, rank);
    assert_int_equal(shape[yr - 1], out);
    vikt_tensor *loss = vikt_sum(m, vikt_mul(m, yt, vikt_input(m, yr, shape, r)));
    assert_int_equal(vikt_backward(m, loss), VIKT_OK);
    char what[64];
    snprintf(what, sizeof what, "%s y", label);
    expect_close(what, vikt_tensor_data(yt), y, n);
    snprintf(what, sizeof what, "%s dx", label);
    expect_close(what, vikt_tensor_grad(xt), dx, vikt_tensor_numel(xt));
    snprintf(what, sizeof what, "%s dW", label);
    expect_close(what, vikt_tensor_grad(pw), dw, out * in);
    snprintf(what, sizeof what, "%s db", label);
    expect_close(what, vikt_tensor_grad(pb), db, out);
    vikt_model_destroy(m);
}

static void matches_pytorch(void **state) {
    (void)state;
    parity("rank2", 2, (int64_t[]){5, 7}, 3, dense_rank2_x, dense_rank2_w, dense_rank2_b,
           dense_rank2_y, dense_rank2_dx, dense_rank2_dw, dense_rank2_db);
    parity("rank3", 3, (int64_t[]){2, 3, 4}, 6, dense_rank3_x, dense_rank3_w, dense_rank3_b,
           dense_rank3_y, dense_rank3_dx, dense_rank3_dw, dense_rank3_db);
    parity("rank1", 1, (int64_t[]){9}, 2, dense_rank1_x, dense_rank1_w, dense_rank1_b,
           dense_rank1_y, dense_rank1_dx, dense_rank1_dw, dense_rank1_db);
}

static vikt_tensor *build_dense(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    (void)ctx;
    return vikt_dense(m, "fc", in[0], 4);
}

static void gradients_check(void **state) {
    (void)state;
    float x[15], w[12], b[4];
    vt_fill(x, 15, 1, -1, 1);
    vt_fill(w, 12, 2, -1, 1);
    vt_fill(b, 4, 3, -1, 1);
    vt_grad_input in[3] = {{2, {5, 3}, x, 1, NULL},
                           {2, {4, 3}, w, 1, "fc.weight"},
                           {1, {4}, b, 1, "fc.bias"}};
    vt_gradcheck("dense", 3, in, build_dense, NULL, 1e-4, 1e-2);
}

/* First call creates U(±1/√in) parameters; later calls reuse them. */
static void creates_then_reuses(void **state) {
    (void)state;
    vikt_model *m = vt_model(4);
    vikt_tensor *x = vikt_ones(m, 2, (int64_t[]){2, 100});
    vikt_tensor *y1 = vikt_dense(m, "fc", x, 50);
    assert_non_null(y1);
    vikt_tensor *w = vikt_param_find(m, "fc.weight"), *b = vikt_param_find(m, "fc.bias");
    assert_non_null(w);
    assert_non_null(b);
    assert_int_equal(vikt_tensor_dim(w, 0), 50);
    assert_int_equal(vikt_tensor_dim(w, 1), 100);
    float mx = 0;
    for (int i = 0; i < 5000; i++) mx = fmaxf(mx, fabsf(vikt_tensor_data(w)[i]));
    assert_true(mx <= 0.1f && mx > 0.09f);
    for (int i = 0; i < 50; i++) assert_true(fabsf(vikt_tensor_data(b)[i]) <= 0.1f);
    vikt_tensor *y2 = vikt_dense(m, "fc", x, 50);
    assert_memory_equal(vikt_tensor_data(y1), vikt_tensor_data(y2), 100 * sizeof(float));
    assert_int_equal(vikt_param_count(m), 2);
    /* A parameter made beforehand with another initializer is used as it is. */
    vikt_param(m, "pre.weight", 2, (int64_t[]){3, 100}, VIKT_INIT_ONES);
    vikt_tensor *y3 = vikt_dense(m, "pre", x, 3);
    assert_float_equal(vikt_tensor_data(y3)[0] - vikt_tensor_data(vikt_param_find(m, "pre.bias"))[0],
                       100.0f, 1e-4);
    vikt_model_destroy(m);
}

static void errors_name_layer_and_shapes(void **state) {
    (void)state;
    vikt_model *m = vt_model(4);
    vikt_tensor *x = vikt_ones(m, 2, (int64_t[]){2, 8});
    assert_non_null(vikt_dense(m, "fc", x, 4));
    vikt_tensor *x2 = vikt_ones(m, 2, (int64_t[]){2, 9});
    assert_null(vikt_dense(m, "fc", x2, 4));
    vt_expect_error(m, VIKT_ERR_SHAPE, "fc.weight", "4x8");
    assert_null(vikt_dense(m, "fc", x, 0));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_dense", "out_features");
    assert_null(vikt_dense(m, "", x, 4));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_dense", "name");
    assert_null(vikt_dense(m, "fc", NULL, 4));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_dense", NULL);
    assert_null(vikt_dense(m, "big", vikt_ones(m, 4, (int64_t[]){1, 1, 1, 2}), 4));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_dense", "1x1x1x2");
    assert_null(vikt_dense(NULL, "fc", x, 4));
    vikt_model_destroy(m);
}

/* After the first step, a dense forward+backward allocates nothing. */
static void steady_state_allocates_nothing(void **state) {
    (void)state;
    vikt_model *m = vt_model(4);
    float xs[32 * 20];
    vt_fill(xs, 32 * 20, 9, -1, 1);
    int64_t calls = 0;
    for (int step = 0; step < 5; step++) {
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *x = vikt_input(m, 2, (int64_t[]){32, 20}, xs);
        vikt_tensor *h = vikt_relu(m, vikt_dense(m, "fc1", x, 16));
        assert_int_equal(vikt_backward(m, vikt_mean(m, vikt_dense(m, "fc2", h, 3))), VIKT_OK);
        if (step == 1) calls = vt_stats.calls;
        if (step > 1) assert_int_equal(vt_stats.calls, calls);
    }
    vikt_model_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches_pytorch),
        cmocka_unit_test(gradients_check),
        cmocka_unit_test(creates_then_reuses),
        cmocka_unit_test(errors_name_layer_and_shapes),
        cmocka_unit_test(steady_state_allocates_nothing),
    };
    return cmocka_run_group_tests_name("layers_dense", tests, NULL, NULL);
}
