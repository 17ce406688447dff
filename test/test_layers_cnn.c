/* The CNN family: conv2d, max/avg pooling, flatten, embedding, layer norm and
 * batch norm. PyTorch parity (fixtures from tools/gen_layer_fixtures_cnn.py,
 * references computed in float64 on the float32 inputs), finite-difference
 * gradient checks w.r.t. inputs and parameters, parameter and buffer
 * creation, running statistics, errors, and no allocation in a steady step. */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/layers_cnn.h"

#define RTOL 1e-4f
#define ATOL 1e-5f

static void expect_close(const char *label, const char *what, const float *got,
                         const float *want, int64_t n) {
    assert_non_null(got);
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= ATOL + RTOL * fabsf(want[i])))
            fail_msg("%s %s[%lld]: got %.9g, PyTorch %.9g", label, what, (long long)i,
                     (double)got[i], (double)want[i]);
}

static int64_t count_of(int rank, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= shape[i];
    return n;
}

/* The parameter (or, for buffer != 0, the buffer) called name, holding data. */
static vikt_tensor *load(vikt_model *m, const char *name, int rank, const int64_t *shape,
                         const float *data, int buffer) {
    vikt_tensor *t = buffer ? vikt_buffer(m, name, rank, shape, 0.0f)
                            : vikt_param(m, name, rank, shape, VIKT_INIT_ZEROS);
    assert_non_null(t);
    assert_int_equal(vikt_tensor_copy_in(t, data, count_of(rank, shape)), VIKT_OK);
    return t;
}

/* A step input holding data that requires a gradient. */
static vikt_tensor *grad_input(vikt_model *m, int rank, const int64_t *shape, const float *data) {
    vikt_tensor *x = vikt_input(m, rank, shape, data);
    assert_non_null(x);
    assert_int_equal(vikt_tensor_set_requires_grad(x, 1), VIKT_OK);
    return x;
}

/* Backward of L = Σ y⊙R with the fixtures' R. */
static void backward_projection(vikt_model *m, vikt_tensor *y) {
    if (!y) fail_msg("layer failed: %s", vikt_model_errmsg(m));
    int64_t n = vikt_tensor_numel(y), shape[4];
    int rank = vikt_tensor_shape(y, shape);
    float *r = malloc((size_t)n * sizeof(float));
    assert_non_null(r);
    for (int64_t i = 0; i < n; i++) r[i] = (float)(0.5 + 0.5 * sin(0.91 * (double)i + 0.3));
    vikt_tensor *loss = vikt_sum(m, vikt_mul(m, y, vikt_input(m, rank, shape, r)));
    free(r);
    if (vikt_backward(m, loss) != VIKT_OK) fail_msg("backward: %s", vikt_model_errmsg(m));
}

static void expect_shape(const char *label, vikt_tensor *y, int rank, const int64_t *shape) {
    int64_t got[4];
    assert_int_equal(vikt_tensor_shape(y, got), rank);
    for (int i = 0; i < rank; i++)
        if (got[i] != shape[i])
            fail_msg("%s: output dimension %d is %lld, PyTorch %lld", label, i, (long long)got[i],
                     (long long)shape[i]);
}

/* ================================================================ parity */

static void conv_matches_pytorch(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof conv_fixtures / sizeof *conv_fixtures; c++) {
        const conv_fixture *f = &conv_fixtures[c];
        vikt_model *m = vt_model(1);
        int64_t C = f->x_shape[1], O = f->out_channels, k = f->kernel;
        int64_t wshape[4] = {O, C, k, k};
        vikt_tensor *w = load(m, "conv.weight", 4, wshape, f->weight, 0);
        vikt_tensor *b = load(m, "conv.bias", 1, &O, f->bias, 0);
        vikt_tensor *x = grad_input(m, 4, f->x_shape, f->x);
        vikt_tensor *y = vikt_conv2d(m, "conv", x, O, k, f->stride, f->padding, f->dilation);
        backward_projection(m, y);
        expect_shape(f->name, y, 4, f->y_shape);
        expect_close(f->name, "y", vikt_tensor_data(y), f->y, count_of(4, f->y_shape));
        expect_close(f->name, "dx", vikt_tensor_grad(x), f->dx, count_of(4, f->x_shape));
        expect_close(f->name, "dweight", vikt_tensor_grad(w), f->dweight, count_of(4, wshape));
        expect_close(f->name, "dbias", vikt_tensor_grad(b), f->dbias, O);
        vikt_model_destroy(m);
    }
}

static void pools_match_pytorch(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof pool_fixtures / sizeof *pool_fixtures; c++) {
        const pool_fixture *f = &pool_fixtures[c];
        vikt_model *m = vt_model(1);
        vikt_tensor *x = grad_input(m, 4, f->x_shape, f->x);
        vikt_tensor *y = f->is_max ? vikt_max_pool2d(m, x, f->kernel, f->stride)
                                   : vikt_avg_pool2d(m, x, f->kernel, f->stride);
        backward_projection(m, y);
        expect_shape(f->name, y, 4, f->y_shape);
        expect_close(f->name, "y", vikt_tensor_data(y), f->y, count_of(4, f->y_shape));
        expect_close(f->name, "dx", vikt_tensor_grad(x), f->dx, count_of(4, f->x_shape));
        vikt_model_destroy(m);
    }
}

static void embedding_matches_pytorch(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof embedding_fixtures / sizeof *embedding_fixtures; c++) {
        const embedding_fixture *f = &embedding_fixtures[c];
        vikt_model *m = vt_model(1);
        int64_t wshape[2] = {f->num_embeddings, f->dim};
        vikt_tensor *w = load(m, "emb.weight", 2, wshape, f->weight, 0);
        /* The ids are copied: scribbling on them after the call changes nothing. */
        int32_t ids[16];
        int64_t n = count_of(f->rank, f->shape);
        memcpy(ids, f->ids, (size_t)n * sizeof(int32_t));
        vikt_tensor *y = vikt_embedding(m, "emb", ids, f->rank, f->shape, f->num_embeddings,
                                        f->dim);
        for (int64_t i = 0; i < n; i++) ids[i] = -7;
        backward_projection(m, y);
        int64_t yshape[4] = {f->shape[0], f->shape[1], f->shape[2], 0};
        yshape[f->rank] = f->dim;
        expect_shape(f->name, y, f->rank + 1, yshape);
        expect_close(f->name, "y", vikt_tensor_data(y), f->y, n * f->dim);
        expect_close(f->name, "dweight", vikt_tensor_grad(w), f->dweight, count_of(2, wshape));
        vikt_model_destroy(m);
    }
}

static void layer_norm_matches_pytorch(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof layer_norm_fixtures / sizeof *layer_norm_fixtures; c++) {
        const layer_norm_fixture *f = &layer_norm_fixtures[c];
        vikt_model *m = vt_model(1);
        int64_t D = f->shape[f->rank - 1];
        vikt_tensor *w = load(m, "ln.weight", 1, &D, f->weight, 0);
        vikt_tensor *b = load(m, "ln.bias", 1, &D, f->bias, 0);
        vikt_tensor *x = grad_input(m, f->rank, f->shape, f->x);
        vikt_tensor *y = vikt_layer_norm(m, "ln", x, f->eps);
        backward_projection(m, y);
        int64_t n = count_of(f->rank, f->shape);
        expect_shape(f->name, y, f->rank, f->shape);
        expect_close(f->name, "y", vikt_tensor_data(y), f->y, n);
        expect_close(f->name, "dx", vikt_tensor_grad(x), f->dx, n);
        expect_close(f->name, "dweight", vikt_tensor_grad(w), f->dweight, D);
        expect_close(f->name, "dbias", vikt_tensor_grad(b), f->dbias, D);
        vikt_model_destroy(m);
    }
}

/* Training cases run two steps on two batches: outputs, gradients and the
 * running statistics after each step match torch's. Evaluation cases use
 * the running statistics given and leave them unchanged. */
static void batch_norm_matches_pytorch(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof batch_norm_fixtures / sizeof *batch_norm_fixtures; c++) {
        const batch_norm_fixture *f = &batch_norm_fixtures[c];
        vikt_model *m = vt_model(1);
        int64_t C = f->shape[1], n = count_of(f->rank, f->shape);
        vikt_tensor *w = load(m, "bn.weight", 1, &C, f->weight, 0);
        vikt_tensor *b = load(m, "bn.bias", 1, &C, f->bias, 0);
        vikt_tensor *rm = load(m, "bn.running_mean", 1, &C, f->rm0, 1);
        vikt_tensor *rv = load(m, "bn.running_var", 1, &C, f->rv0, 1);
        vikt_set_training(m, f->training);
        for (int s = 0; s < f->steps; s++) {
            const batch_norm_step *st = &f->step[s];
            char label[64];
            snprintf(label, sizeof label, "%s step %d", f->name, s);
            vikt_step_begin(m);
            vikt_zero_grad(m);
            vikt_tensor *x = grad_input(m, f->rank, f->shape, st->x);
            vikt_tensor *y = vikt_batch_norm(m, "bn", x, f->momentum, f->eps);
            backward_projection(m, y);
            expect_close(label, "y", vikt_tensor_data(y), st->y, n);
            expect_close(label, "dx", vikt_tensor_grad(x), st->dx, n);
            expect_close(label, "dweight", vikt_tensor_grad(w), st->dweight, C);
            expect_close(label, "dbias", vikt_tensor_grad(b), st->dbias, C);
            expect_close(label, "running_mean", vikt_tensor_data(rm), st->rm, C);
            expect_close(label, "running_var", vikt_tensor_data(rv), st->rv, C);
        }
        assert_int_equal(vikt_buffer_count(m), 2);
        vikt_model_destroy(m);
    }
}

/* ======================================================= gradient checks */

/* The brief's bound is atol 1e-4, rtol 1e-2; every check here passes rtol
 * 1e-3. What is left is the float32 rounding of the forward passes that the
 * differences divide by h (a few 1e-5). */
#define GATOL 1e-4
#define GRTOL 1e-3

typedef struct conv_ctx {
    int64_t out, kernel, stride, padding, dilation;
} conv_ctx;

static vikt_tensor *build_conv(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    const conv_ctx *c = ctx;
    return vikt_conv2d(m, "conv", in[0], c->out, c->kernel, c->stride, c->padding, c->dilation);
}

/* x, weight and bias of one conv configuration; the flags say which of them
 * require a gradient (a frozen weight, or an input that needs none, takes
 * the other paths through backward). */
static void check_conv(const char *what, int64_t N, int64_t C, int64_t H, int64_t W,
                       conv_ctx ctx, int x_grad, int w_grad) {
    int64_t k = ctx.kernel, nx = N * C * H * W, nw = ctx.out * C * k * k;
    float *x = malloc((size_t)nx * sizeof(float)), *w = malloc((size_t)nw * sizeof(float));
    float b[16];
    assert_true(ctx.out <= 16);
    vt_fill(x, nx, 11, -1, 1);
    vt_fill(w, nw, 12, -0.5f, 0.5f);
    vt_fill(b, ctx.out, 13, -0.5f, 0.5f);
    vt_grad_input in[3] = {{4, {N, C, H, W}, x, x_grad, NULL},
                           {4, {ctx.out, C, k, k}, w, w_grad, "conv.weight"},
                           {1, {ctx.out}, b, 1, "conv.bias"}};
    vt_gradcheck(what, 3, in, build_conv, &ctx, GATOL, GRTOL);
    free(x);
    free(w);
}

static void conv_gradients(void **state) {
    (void)state;
    check_conv("conv k3 [2,3,6,5]", 2, 3, 6, 5, (conv_ctx){4, 3, 1, 0, 1}, 1, 1);
    check_conv("conv k3 stride2 pad1 [2,2,7,6]", 2, 2, 7, 6, (conv_ctx){3, 3, 2, 1, 1}, 1, 1);
    check_conv("conv k3 dilation2 pad2 [1,2,7,8]", 1, 2, 7, 8, (conv_ctx){2, 3, 1, 2, 2}, 1, 1);
    check_conv("conv k2 stride3 pad1 dilation2 [2,2,9,5]", 2, 2, 9, 5, (conv_ctx){3, 2, 3, 1, 2},
               1, 1);
    check_conv("conv pointwise [2,3,4,3]", 2, 3, 4, 3, (conv_ctx){2, 1, 1, 0, 1}, 1, 1);
    check_conv("conv k1 stride2 pad1 [1,2,5,4]", 1, 2, 5, 4, (conv_ctx){2, 1, 2, 1, 1}, 1, 1);
    check_conv("conv k3 frozen weight [1,2,5,6]", 1, 2, 5, 6, (conv_ctx){3, 3, 1, 1, 1}, 1, 0);
    check_conv("conv k3 input without grad [2,2,5,4]", 2, 2, 5, 4, (conv_ctx){3, 3, 1, 0, 1}, 0,
               1);
    check_conv("conv pointwise frozen weight [2,3,3,2]", 2, 3, 3, 2, (conv_ctx){2, 1, 1, 0, 1}, 1,
               0);
    check_conv("conv kernel = input, pad1 [1,2,3,3]", 1, 2, 3, 3, (conv_ctx){2, 3, 2, 1, 1}, 1, 1);
}

typedef struct pool_ctx {
    int is_max;
    int64_t kernel, stride;
} pool_ctx;

static vikt_tensor *build_pool(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    const pool_ctx *c = ctx;
    return c->is_max ? vikt_max_pool2d(m, in[0], c->kernel, c->stride)
                     : vikt_avg_pool2d(m, in[0], c->kernel, c->stride);
}

/* Distinct values 0.1 apart in a scrambled order: the difference step
 * (at most 1e-2·|x|) cannot change which element of a window is largest. */
static void check_pool(const char *what, int is_max, int64_t N, int64_t C, int64_t H, int64_t W,
                       int64_t kernel, int64_t stride) {
    int64_t n = N * C * H * W;
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = 0.1f * (float)((i * 37) % n) - 0.05f * (float)n;
    vt_grad_input in[1] = {{4, {N, C, H, W}, x, 1, NULL}};
    pool_ctx ctx = {is_max, kernel, stride};
    vt_gradcheck(what, 1, in, build_pool, &ctx, GATOL, GRTOL);
    free(x);
}

static void pool_gradients(void **state) {
    (void)state;
    check_pool("max_pool2d k2 [2,2,5,7]", 1, 2, 2, 5, 7, 2, 0);
    check_pool("max_pool2d k3 s2 overlapping [1,2,7,6]", 1, 1, 2, 7, 6, 3, 2);
    check_pool("max_pool2d k2 s3 gaps [2,1,7,8]", 1, 2, 1, 7, 8, 2, 3);
    check_pool("avg_pool2d k2 [2,2,5,7]", 0, 2, 2, 5, 7, 2, 0);
    check_pool("avg_pool2d k3 s2 overlapping [1,2,7,6]", 0, 1, 2, 7, 6, 3, 2);
    check_pool("avg_pool2d k2 s3 gaps [2,1,7,8]", 0, 2, 1, 7, 8, 2, 3);
}

static vikt_tensor *build_flatten(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    (void)ctx;
    return vikt_flatten(m, in[0]);
}

static void flatten_gradients(void **state) {
    (void)state;
    float x[2 * 3 * 2 * 5];
    vt_fill(x, 60, 5, -1, 1);
    vt_grad_input in4[1] = {{4, {2, 3, 2, 5}, x, 1, NULL}};
    vt_gradcheck("flatten [2,3,2,5]", 1, in4, build_flatten, NULL, GATOL, GRTOL);
    vt_grad_input in1[1] = {{1, {7}, x, 1, NULL}};
    vt_gradcheck("flatten [7]", 1, in1, build_flatten, NULL, GATOL, GRTOL);
}

typedef struct emb_ctx {
    const int32_t *ids;
    int rank;
    int64_t shape[3];
    int64_t num, dim;
} emb_ctx;

static vikt_tensor *build_embedding(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    (void)in;
    const emb_ctx *c = ctx;
    return vikt_embedding(m, "emb", c->ids, c->rank, c->shape, c->num, c->dim);
}

static void embedding_gradients(void **state) {
    (void)state;
    float w[6 * 4];
    vt_fill(w, 24, 7, -2, 2);
    static const int32_t ids[] = {5, 0, 5, 2, 2, 5, 1, 0};
    emb_ctx ctx = {ids, 2, {2, 4, 0}, 6, 4};
    vt_grad_input in[1] = {{2, {6, 4}, w, 1, "emb.weight"}};
    vt_gradcheck("embedding [2,4] ids, repeats, [6,4] table", 1, in, build_embedding, &ctx, GATOL,
                 GRTOL);
}

static vikt_tensor *build_layer_norm(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    return vikt_layer_norm(m, "ln", in[0], *(const float *)ctx);
}

static void check_layer_norm(const char *what, int rank, const int64_t *shape, float eps,
                             float offset) {
    int64_t n = count_of(rank, shape), D = shape[rank - 1];
    float x[64], w[16], b[16];
    assert_true(n <= 64 && D <= 16);
    vt_fill(x, n, 21, -2, 2);
    for (int64_t i = 0; i < n; i++) x[i] += offset;
    vt_fill(w, D, 22, 0.5f, 1.5f);
    vt_fill(b, D, 23, -0.5f, 0.5f);
    vt_grad_input in[3] = {{rank, {0}, x, 1, NULL}, {1, {D}, w, 1, "ln.weight"},
                           {1, {D}, b, 1, "ln.bias"}};
    memcpy(in[0].shape, shape, (size_t)rank * sizeof(int64_t));
    vt_gradcheck(what, 3, in, build_layer_norm, &eps, GATOL, GRTOL);
}

static void layer_norm_gradients(void **state) {
    (void)state;
    check_layer_norm("layer_norm [3,7]", 2, (int64_t[]){3, 7}, 1e-5f, 0.0f);
    check_layer_norm("layer_norm [2,3,5]", 3, (int64_t[]){2, 3, 5}, 1e-5f, 0.0f);
    check_layer_norm("layer_norm [2,1,2,4] eps 0.1", 4, (int64_t[]){2, 1, 2, 4}, 0.1f, 0.0f);
    check_layer_norm("layer_norm [5] offset 3", 1, (int64_t[]){5}, 1e-5f, 3.0f);
}

typedef struct bn_ctx {
    int training;
    int64_t C;
    const float *rm, *rv; /* evaluation: the running statistics to install */
} bn_ctx;

static vikt_tensor *build_batch_norm(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    const bn_ctx *c = ctx;
    if (!c->training && !vikt_buffer_find(m, "bn.running_mean")) {
        load(m, "bn.running_mean", 1, &c->C, c->rm, 1);
        load(m, "bn.running_var", 1, &c->C, c->rv, 1);
    }
    vikt_set_training(m, c->training);
    return vikt_batch_norm(m, "bn", in[0], 0.1f, 1e-5f);
}

static void check_batch_norm(const char *what, int rank, const int64_t *shape, int training) {
    int64_t n = count_of(rank, shape), C = shape[1];
    float x[128], w[8], b[8], rm[8], rv[8];
    assert_true(n <= 128 && C <= 8);
    vt_fill(x, n, 31, -2, 2);
    vt_fill(w, C, 32, 0.5f, 1.5f);
    vt_fill(b, C, 33, -0.5f, 0.5f);
    vt_fill(rm, C, 34, -0.5f, 0.5f);
    vt_fill(rv, C, 35, 0.5f, 2.0f);
    vt_grad_input in[3] = {{rank, {0}, x, 1, NULL}, {1, {C}, w, 1, "bn.weight"},
                           {1, {C}, b, 1, "bn.bias"}};
    memcpy(in[0].shape, shape, (size_t)rank * sizeof(int64_t));
    bn_ctx ctx = {training, C, rm, rv};
    vt_gradcheck(what, 3, in, build_batch_norm, &ctx, GATOL, GRTOL);
}

static void batch_norm_gradients(void **state) {
    (void)state;
    check_batch_norm("batch_norm training [5,3]", 2, (int64_t[]){5, 3}, 1);
    check_batch_norm("batch_norm training [3,2,3,4]", 4, (int64_t[]){3, 2, 3, 4}, 1);
    check_batch_norm("batch_norm training N=1 [1,3,2,3]", 4, (int64_t[]){1, 3, 2, 3}, 1);
    check_batch_norm("batch_norm training two rows [2,4]", 2, (int64_t[]){2, 4}, 1);
    check_batch_norm("batch_norm eval [4,3]", 2, (int64_t[]){4, 3}, 0);
    check_batch_norm("batch_norm eval [2,3,2,3]", 4, (int64_t[]){2, 3, 2, 3}, 0);
}

/* ====================================================== parameters, state */

static void parameters_follow_pytorch_defaults(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    vikt_tensor *x = vikt_ones(m, 4, (int64_t[]){2, 6, 9, 9});
    assert_non_null(vikt_conv2d(m, "c1", x, 40, 3, 1, 1, 1));
    vikt_tensor *w = vikt_param_find(m, "c1.weight"), *b = vikt_param_find(m, "c1.bias");
    assert_non_null(w);
    assert_non_null(b);
    int64_t shape[4];
    assert_int_equal(vikt_tensor_shape(w, shape), 4);
    assert_true(shape[0] == 40 && shape[1] == 6 && shape[2] == 3 && shape[3] == 3);
    float bound = 1.0f / sqrtf(54.0f), mx = 0;
    for (int64_t i = 0; i < vikt_tensor_numel(w); i++)
        mx = fmaxf(mx, fabsf(vikt_tensor_data(w)[i]));
    assert_true(mx <= bound && mx > 0.9f * bound);
    for (int64_t i = 0; i < 40; i++) assert_true(fabsf(vikt_tensor_data(b)[i]) <= bound);

    /* Embedding: N(0, 1). */
    int32_t id = 0;
    assert_non_null(vikt_embedding(m, "emb", &id, 0, NULL, 500, 20));
    const float *e = vikt_tensor_data(vikt_param_find(m, "emb.weight"));
    double sum = 0, sq = 0;
    for (int i = 0; i < 10000; i++) sum += e[i], sq += (double)e[i] * e[i];
    assert_true(fabs(sum / 10000) < 0.05 && fabs(sqrt(sq / 10000) - 1.0) < 0.05);

    /* Norms: weight ones, bias zeros; batch norm's buffers zeros and ones,
     * not parameters. */
    vikt_tensor *h = vikt_ones(m, 2, (int64_t[]){3, 5});
    assert_non_null(vikt_layer_norm(m, "ln", h, 1e-5f));
    assert_non_null(vikt_batch_norm(m, "bn", h, 0.1f, 1e-5f));
    const char *ones[] = {"ln.weight", "bn.weight"}, *zeros[] = {"ln.bias", "bn.bias"};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 5; i++) {
            assert_float_equal(vikt_tensor_data(vikt_param_find(m, ones[k]))[i], 1.0f, 0);
            assert_float_equal(vikt_tensor_data(vikt_param_find(m, zeros[k]))[i], 0.0f, 0);
        }
    assert_int_equal(vikt_param_count(m), 7);
    assert_int_equal(vikt_buffer_count(m), 2);
    vikt_tensor *rm = vikt_buffer_find(m, "bn.running_mean"), *rv = vikt_buffer_find(m, "bn.running_var");
    assert_non_null(rm);
    assert_non_null(rv);
    assert_false(vikt_tensor_requires_grad(rm));
    /* One training step on a constant batch: mean 1, variance 0. */
    for (int i = 0; i < 5; i++) {
        assert_float_equal(vikt_tensor_data(rm)[i], 0.1f, 1e-7);
        assert_float_equal(vikt_tensor_data(rv)[i], 0.9f, 1e-7);
    }
    /* The second call finds everything; evaluation mode leaves the buffers. */
    vikt_set_training(m, 0);
    assert_non_null(vikt_batch_norm(m, "bn", h, 0.1f, 1e-5f));
    assert_float_equal(vikt_tensor_data(rm)[0], 0.1f, 1e-7);
    assert_int_equal(vikt_param_count(m), 7);
    assert_int_equal(vikt_buffer_count(m), 2);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* Evaluation mode is differentiable: loss.backward works with gradients
 * enabled, and with them disabled nothing is recorded. */
static void batch_norm_eval_no_grad(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    vikt_set_training(m, 0);
    vikt_set_grad_enabled(m, 0);
    vikt_tensor *x = vikt_ones(m, 4, (int64_t[]){2, 3, 2, 2});
    vikt_tensor *y = vikt_batch_norm(m, "bn", x, 0.1f, 1e-5f);
    assert_non_null(y);
    /* (1 − 0)/√(1 + 1e-5) */
    assert_float_equal(vikt_tensor_data(y)[0], 1.0f / sqrtf(1.00001f), 1e-6);
    assert_false(vikt_tensor_requires_grad(y));
    /* Training with gradients disabled still updates the statistics. */
    vikt_set_training(m, 1);
    assert_non_null(vikt_batch_norm(m, "bn", x, 0.5f, 1e-5f));
    assert_float_equal(vikt_tensor_data(vikt_buffer_find(m, "bn.running_mean"))[2], 0.5f, 0);
    vikt_model_destroy(m);
}

/* Ties send the gradient to the first maximum (row-major in the window), as
 * PyTorch does; a NaN in a window makes the output NaN. */
static void max_pool_ties_and_nan(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    float xs[8] = {1, 3, 3, 2, /* window 0 */ 0, NAN, 5, 1 /* window 1 */};
    vikt_tensor *x = grad_input(m, 4, (int64_t[]){1, 2, 2, 2}, xs);
    vikt_tensor *y = vikt_max_pool2d(m, x, 2, 0);
    assert_non_null(y);
    assert_float_equal(vikt_tensor_data(y)[0], 3.0f, 0);
    assert_true(isnan(vikt_tensor_data(y)[1]));
    assert_int_equal(vikt_backward(m, vikt_sum(m, vikt_slice(m, y, 1, 0, 1))), VIKT_OK);
    const float want[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(vikt_tensor_grad(x), want, sizeof want);
    vikt_model_destroy(m);
}

/* ================================================================ errors */

static void conv_and_pool_errors(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    vikt_tensor *x = vikt_ones(m, 4, (int64_t[]){2, 3, 6, 5});
    assert_null(vikt_conv2d(m, "c", NULL, 4, 3, 1, 0, 1));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_conv2d", NULL);
    assert_null(vikt_conv2d(m, "", x, 4, 3, 1, 0, 1));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_conv2d", "name");
    assert_null(vikt_conv2d(m, "c", vikt_ones(m, 3, (int64_t[]){3, 6, 5}), 4, 3, 1, 0, 1));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_conv2d", "3x6x5");
    assert_null(vikt_conv2d(m, "c", x, 0, 3, 1, 0, 1));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_conv2d", "2x3x6x5");
    assert_null(vikt_conv2d(m, "c", x, 4, 0, 1, 0, 1));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_conv2d", "kernel");
    assert_null(vikt_conv2d(m, "c", x, 4, 3, 0, 0, 1));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_conv2d", "stride");
    assert_null(vikt_conv2d(m, "c", x, 4, 3, 1, -1, 1));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_conv2d", "padding");
    assert_null(vikt_conv2d(m, "c", x, 4, 3, 1, 0, 0));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_conv2d", "dilation");
    assert_int_equal(vikt_param_count(m), 0); /* bad calls made no parameters */
    /* The dilated kernel (1 + 2·3 = 7) does not fit 5 + 2·0 columns. */
    assert_null(vikt_conv2d(m, "c", x, 4, 4, 1, 0, 2));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_conv2d", "2x3x6x5");
    /* An existing weight with other input channels. */
    assert_non_null(vikt_conv2d(m, "c2", x, 4, 3, 1, 0, 1));
    assert_null(vikt_conv2d(m, "c2", vikt_ones(m, 4, (int64_t[]){2, 2, 6, 5}), 4, 3, 1, 0, 1));
    vt_expect_error(m, VIKT_ERR_SHAPE, "c2.weight", "4x3x3x3");

    assert_null(vikt_max_pool2d(m, NULL, 2, 2));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_max_pool2d", NULL);
    assert_null(vikt_max_pool2d(m, x, 0, 2));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_max_pool2d", "2x3x6x5");
    assert_null(vikt_avg_pool2d(m, x, 2, -1));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_avg_pool2d", "stride");
    assert_null(vikt_avg_pool2d(m, x, 6, 1));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_avg_pool2d", "2x3x6x5");
    assert_null(vikt_max_pool2d(m, vikt_ones(m, 2, (int64_t[]){6, 5}), 2, 2));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_max_pool2d", "6x5");
    assert_null(vikt_max_pool2d(NULL, x, 2, 2));

    assert_null(vikt_flatten(m, NULL));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_flatten", NULL);
    assert_null(vikt_flatten(m, vikt_ones(m, 0, NULL)));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_flatten", "rank");
    vikt_tensor *f = vikt_flatten(m, vikt_ones(m, 4, (int64_t[]){0, 3, 2, 2}));
    assert_non_null(f);
    assert_int_equal(vikt_tensor_dim(f, 0), 0);
    assert_int_equal(vikt_tensor_dim(f, 1), 12);
    vikt_model_destroy(m);
}

static void embedding_and_norm_errors(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    int32_t ids[4] = {0, 1, 5, 2};
    assert_null(vikt_embedding(m, "e", ids, 1, (int64_t[]){4}, 5, 3));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_embedding", "id 5 at position 2");
    ids[2] = -1;
    assert_null(vikt_embedding(m, "e", ids, 1, (int64_t[]){4}, 5, 3));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_embedding", "id -1");
    assert_null(vikt_embedding(m, "e", NULL, 1, (int64_t[]){4}, 5, 3));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_embedding", "ids");
    assert_null(vikt_embedding(m, "e", ids, 4, (int64_t[]){1, 1, 1, 4}, 5, 3));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_embedding", "rank 4");
    assert_null(vikt_embedding(m, "e", ids, 1, (int64_t[]){-4}, 5, 3));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_embedding", "negative");
    assert_null(vikt_embedding(m, "f", ids, 1, (int64_t[]){2}, 0, 3));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_embedding", "num_embeddings");
    assert_null(vikt_embedding(m, NULL, ids, 1, (int64_t[]){2}, 5, 3));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_embedding", "name");
    assert_null(vikt_embedding(m, "", ids, 1, (int64_t[]){2}, 5, 3));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_embedding", "name");
    /* No ids at all is an empty lookup, and NULL ids are then fine. */
    vikt_tensor *none = vikt_embedding(m, "e", NULL, 1, (int64_t[]){0}, 5, 3);
    assert_non_null(none);
    assert_int_equal(vikt_tensor_numel(none), 0);

    vikt_tensor *x = vikt_ones(m, 2, (int64_t[]){4, 6});
    assert_null(vikt_layer_norm(m, "ln", NULL, 1e-5f));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_layer_norm", NULL);
    assert_null(vikt_layer_norm(m, "ln", x, 0.0f));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_layer_norm", "eps");
    assert_null(vikt_layer_norm(m, "ln", x, NAN));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_layer_norm", "4x6");
    assert_null(vikt_layer_norm(m, "ln", vikt_ones(m, 0, NULL), 1e-5f));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_layer_norm", "D >= 1");
    assert_non_null(vikt_layer_norm(m, "ln", x, 1e-5f));
    assert_null(vikt_layer_norm(m, "ln", vikt_ones(m, 2, (int64_t[]){4, 5}), 1e-5f));
    vt_expect_error(m, VIKT_ERR_SHAPE, "ln.weight", NULL);

    assert_null(vikt_batch_norm(m, "bn", NULL, 0.1f, 1e-5f));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_batch_norm", NULL);
    assert_null(vikt_batch_norm(m, "bn", vikt_ones(m, 3, (int64_t[]){4, 6, 2}), 0.1f, 1e-5f));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_batch_norm", "4x6x2");
    assert_null(vikt_batch_norm(m, "bn", x, 1.5f, 1e-5f));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_batch_norm", "momentum");
    assert_null(vikt_batch_norm(m, "bn", x, -0.1f, 1e-5f));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_batch_norm", "momentum");
    assert_null(vikt_batch_norm(m, "bn", x, 0.1f, -1.0f));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_batch_norm", "eps");
    /* One value per channel cannot be normalized in training (PyTorch too)… */
    assert_null(vikt_batch_norm(m, "bn1", vikt_ones(m, 2, (int64_t[]){1, 6}), 0.1f, 1e-5f));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_batch_norm", "1x6");
    assert_null(vikt_batch_norm(m, "bn1", vikt_ones(m, 4, (int64_t[]){1, 6, 1, 1}), 0.1f, 1e-5f));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_batch_norm", "more than one value");
    /* …but can in evaluation. */
    vikt_set_training(m, 0);
    assert_non_null(vikt_batch_norm(m, "bn1", vikt_ones(m, 2, (int64_t[]){1, 6}), 0.1f, 1e-5f));
    vikt_set_training(m, 1);
    /* A name taken by a parameter cannot be a buffer. */
    vikt_param(m, "bn2.running_mean", 1, (int64_t[]){6}, VIKT_INIT_ZEROS);
    assert_null(vikt_batch_norm(m, "bn2", x, 0.1f, 1e-5f));
    vt_expect_error(m, VIKT_ERR_ARG, "bn2.running_mean", NULL);
    assert_null(vikt_batch_norm(NULL, "bn", x, 0.1f, 1e-5f));
    vikt_model_destroy(m);
}

/* ===================================================== memory behaviour */

/* A small CNN step, the shapes with a smaller batch: conv, batch
 * norm, relu, pool, conv, pool, flatten, layer norm, dense, plus an
 * embedding. After the first step nothing is allocated. */
static void cnn_step(vikt_model *m, const float *images, const int32_t *labels,
                     const int32_t *ids) {
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *x = vikt_input(m, 4, (int64_t[]){4, 1, 28, 28}, images);
    vikt_tensor *h = vikt_conv2d(m, "conv1", x, 8, 3, 1, 0, 1);
    h = vikt_max_pool2d(m, vikt_relu(m, vikt_batch_norm(m, "bn1", h, 0.1f, 1e-5f)), 2, 0);
    h = vikt_avg_pool2d(m, vikt_relu(m, vikt_conv2d(m, "conv2", h, 16, 3, 1, 1, 1)), 2, 0);
    h = vikt_layer_norm(m, "ln", vikt_flatten(m, h), 1e-5f);
    vikt_tensor *e = vikt_flatten(m, vikt_embedding(m, "emb", ids, 2, (int64_t[]){4, 3}, 10, 4));
    vikt_tensor *logits = vikt_add(m, vikt_dense(m, "fc", h, 10), vikt_dense(m, "fe", e, 10));
    assert_int_equal(vikt_backward(m, vikt_cross_entropy_loss(m, logits, labels)), VIKT_OK);
}

static void steady_state_allocates_nothing(void **state) {
    (void)state;
    vikt_model *m = vt_model(9);
    float *images = malloc(4 * 28 * 28 * sizeof(float));
    vt_fill(images, 4 * 28 * 28, 3, 0, 1);
    int32_t labels[4] = {3, 1, 4, 1}, ids[12] = {5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3};
    int64_t calls = 0;
    for (int step = 0; step < 5; step++) {
        cnn_step(m, images, labels, ids);
        if (step == 1) calls = vt_stats.calls;
        if (step > 1) assert_int_equal(vt_stats.calls, calls);
    }
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    free(images);
    vikt_model_destroy(m);
}

/* The GEMM splits its output among threads, never a sum, so a conv step
 * gives the same bytes with 1 and with 3 threads. */
static void conv_step_bytes(int threads, float *out, float *grads) {
    vikt_model *m = vt_model(2);
    if (vikt_set_num_threads(m, threads) != VIKT_OK) { /* a build without threads */
        vikt_model_clear_error(m);
        assert_int_equal(vikt_set_num_threads(m, 1), VIKT_OK);
    }
    static float xs[8 * 16 * 20 * 20];
    vt_fill(xs, 8 * 16 * 20 * 20, 4, -1, 1);
    vikt_tensor *x = grad_input(m, 4, (int64_t[]){8, 16, 20, 20}, xs);
    vikt_tensor *y = vikt_conv2d(m, "c", x, 32, 3, 1, 1, 1);
    backward_projection(m, y);
    memcpy(out, vikt_tensor_data(y), 8 * 32 * 20 * 20 * sizeof(float));
    memcpy(grads, vikt_tensor_grad(x), 8 * 16 * 20 * 20 * sizeof(float));
    memcpy(grads + 8 * 16 * 20 * 20, vikt_tensor_grad(vikt_param_find(m, "c.weight")),
           32 * 16 * 9 * sizeof(float));
    vikt_model_destroy(m);
}

static void conv_same_bytes_any_thread_count(void **state) {
    (void)state;
    size_t ny = 8 * 32 * 20 * 20, ng = 8 * 16 * 20 * 20 + 32 * 16 * 9;
    float *y1 = malloc(ny * sizeof(float)), *y3 = malloc(ny * sizeof(float));
    float *g1 = malloc(ng * sizeof(float)), *g3 = malloc(ng * sizeof(float));
    conv_step_bytes(1, y1, g1);
    conv_step_bytes(3, y3, g3);
    assert_memory_equal(y1, y3, ny * sizeof(float));
    assert_memory_equal(g1, g3, ng * sizeof(float));
    free(y1), free(y3), free(g1), free(g3);
}

/* With the allocator failing, a conv that needs a fresh arena chunk fails
 * cleanly with VIKT_ERR_NOMEM (and leaks nothing: cmocka checks). */
static void conv_out_of_memory(void **state) {
    (void)state;
    vikt_model *m = vt_model(9);
    vikt_tensor *x = vikt_zeros(m, 4, (int64_t[]){8, 4, 64, 64});
    assert_non_null(vikt_param(m, "c.weight", 4, (int64_t[]){8, 4, 3, 3}, VIKT_INIT_ZEROS));
    assert_non_null(vikt_param(m, "c.bias", 1, (int64_t[]){8}, VIKT_INIT_ZEROS));
    vt_stats.fail_from = vt_stats.calls + 1;
    assert_null(vikt_conv2d(m, "c", x, 8, 3, 1, 1, 1));
    vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_conv2d", NULL);
    vt_stats.fail_from = 0;
    vikt_model_destroy(m);
}

/* Max pooling keeps its argmax indices in the arena for backward: each
 * allocation of the call fails in turn (one of them the indices'), with an
 * error and no crash, until the call succeeds. */
static void max_pool_out_of_memory(void **state) {
    (void)state;
    vikt_model *m = vt_model(9);
    vikt_tensor *x = vikt_zeros(m, 4, (int64_t[]){4, 16, 256, 256});
    assert_int_equal(vikt_tensor_set_requires_grad(x, 1), VIKT_OK);
    int saw_indices = 0;
    vikt_tensor *y = NULL;
    for (int64_t n = 1; !y; n++) {
        assert_true(n < 20);
        vt_stats.fail_at = vt_stats.calls + n;
        y = vikt_max_pool2d(m, x, 2, 2);
        vt_stats.fail_at = 0;
        if (y) break;
        saw_indices |= strstr(vikt_model_errmsg(m), "indices") != NULL;
        vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_max_pool2d", NULL);
    }
    assert_true(saw_indices);
    assert_int_equal(vikt_tensor_dim(y, 2), 128);
    vikt_model_destroy(m);
}

/* Max pooling cuts large inputs into ranges of planes, one per thread: the
 * output and the input gradient are the same bytes with 1 and 3 threads,
 * for the unrolled 2x2 window and the general one. */
static void pool_bytes(int threads, int64_t kernel, int64_t stride, float *out, float *grad) {
    enum { N = 8, C = 16, H = 33, W = 32 };
    static float xs[N * C * H * W];
    vt_fill(xs, N * C * H * W, 9, -1, 1);
    vikt_model *m = vt_model(2);
    if (vikt_set_num_threads(m, threads) != VIKT_OK) { /* a build without threads */
        vikt_model_clear_error(m);
        assert_int_equal(vikt_set_num_threads(m, 1), VIKT_OK);
    }
    vikt_tensor *x = grad_input(m, 4, (int64_t[]){N, C, H, W}, xs);
    vikt_tensor *y = vikt_max_pool2d(m, x, kernel, stride);
    backward_projection(m, y);
    memcpy(out, vikt_tensor_data(y), (size_t)vikt_tensor_numel(y) * sizeof(float));
    memcpy(grad, vikt_tensor_grad(x), sizeof(float) * N * C * H * W);
    vikt_model_destroy(m);
}

static void max_pool_same_bytes_any_thread_count(void **state) {
    (void)state;
    size_t n = 8 * 16 * 33 * 32;
    float *y1 = calloc(n, sizeof(float)), *y3 = calloc(n, sizeof(float));
    float *g1 = malloc(n * sizeof(float)), *g3 = malloc(n * sizeof(float));
    assert_true(y1 && y3 && g1 && g3);
    static const int64_t windows[2][2] = {{2, 2}, {3, 2}};
    for (int w = 0; w < 2; w++) {
        pool_bytes(1, windows[w][0], windows[w][1], y1, g1);
        pool_bytes(3, windows[w][0], windows[w][1], y3, g3);
        assert_memory_equal(y1, y3, n * sizeof(float));
        assert_memory_equal(g1, g3, n * sizeof(float));
    }
    free(y1), free(y3), free(g1), free(g3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv_matches_pytorch),
        cmocka_unit_test(pools_match_pytorch),
        cmocka_unit_test(embedding_matches_pytorch),
        cmocka_unit_test(layer_norm_matches_pytorch),
        cmocka_unit_test(batch_norm_matches_pytorch),
        cmocka_unit_test(conv_gradients),
        cmocka_unit_test(pool_gradients),
        cmocka_unit_test(flatten_gradients),
        cmocka_unit_test(embedding_gradients),
        cmocka_unit_test(layer_norm_gradients),
        cmocka_unit_test(batch_norm_gradients),
        cmocka_unit_test(parameters_follow_pytorch_defaults),
        cmocka_unit_test(batch_norm_eval_no_grad),
        cmocka_unit_test(max_pool_ties_and_nan),
        cmocka_unit_test(conv_and_pool_errors),
        cmocka_unit_test(embedding_and_norm_errors),
        cmocka_unit_test(steady_state_allocates_nothing),
        cmocka_unit_test(conv_same_bytes_any_thread_count),
        cmocka_unit_test(conv_out_of_memory),
        cmocka_unit_test(max_pool_out_of_memory),
        cmocka_unit_test(max_pool_same_bytes_any_thread_count),
    };
    return cmocka_run_group_tests_name("layers_cnn", tests, NULL, NULL);
}
