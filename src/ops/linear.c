/* The dense layer's op: y = x·Wᵀ + b for x [..., in] (rank 1 to 3), W
 * [out, in], b [out], every leading dimension folded into the rows of one
 * product. As matmul_t + add it made two passes over y, one more tensor and
 * gradient, a broadcast add whose backward walked y element by element, and
 * for 3-D x one small product per sample; here the bias is the product's
 * starting value (beta = 1) and its gradient the column sums of dy:
 *
 *     y = b + x·Wᵀ        dx += dy·W      dW += dyᵀ·x      db += Σ_rows dy */
#include "../vikt_internal.h"

#include <string.h>

static int linear_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                        vikt__args *args, int64_t *shape, int *rank) {
    (void)n, (void)args;
    const vikt_tensor *x = in[0], *w = in[1], *b = in[2];
    char sx[VIKT__SHAPE_STR], sw[VIKT__SHAPE_STR], sb[VIKT__SHAPE_STR];
    if (x->rank < 1 || x->rank > 3 || w->rank != 2 || b->rank != 1 ||
        x->shape[x->rank - 1] != w->shape[1] || b->shape[0] != w->shape[0])
        return vikt__fail(m, VIKT_ERR_SHAPE,
                          "%s: needs x [..., in] of rank 1 to 3, weight [out, in], bias [out]; "
                          "got %s, %s, %s",
                          op->name, vikt__shape_str(x, sx), vikt__shape_str(w, sw),
                          vikt__shape_str(b, sb));
    *rank = x->rank;
    for (int i = 0; i < x->rank; i++) shape[i] = x->shape[i];
    shape[x->rank - 1] = w->shape[0];
    return VIKT_OK;
}

static int gemm(vikt_model *m, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return vikt__gemm(m, "vikt_dense", ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

static int linear_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                      vikt_tensor *out) {
    (void)n, (void)args;
    const vikt_tensor *x = in[0], *w = in[1];
    int64_t fan_in = w->shape[1], fan_out = w->shape[0];
    int64_t rows = out->numel / fan_out;
    const float *b = in[2]->data;
    for (int64_t r = 0; r < rows; r++) memcpy(out->data + r * fan_out, b, (size_t)fan_out * sizeof(float));
    return gemm(m, 0, 1, rows, fan_out, fan_in, x->data, fan_in, w->data, fan_in, 1.0f, out->data,
                fan_out)
               ? m->errcode
               : VIKT_OK;
}

/* db += Σ_r dy[r], row by row. */
static void add_rows(float *restrict db, const float *restrict dy, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) vikt__add_into(db, dy + r * cols, cols);
}

static int linear_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                      vikt_tensor *out) {
    (void)n, (void)args;
    const vikt_tensor *x = in[0], *w = in[1];
    float *gx = vikt__grad(in[0]), *gw = vikt__grad(in[1]), *gb = vikt__grad(in[2]);
    if (m->errcode) return m->errcode;
    int64_t fan_in = w->shape[1], fan_out = w->shape[0], rows = out->numel / fan_out;
    const float *dy = out->grad;
    if (gx && gemm(m, 0, 0, rows, fan_in, fan_out, dy, fan_out, w->data, fan_in, 1.0f, gx, fan_in))
        return m->errcode;
    if (gw && gemm(m, 1, 0, fan_out, fan_in, rows, dy, fan_out, x->data, fan_in, 1.0f, gw, fan_in))
        return m->errcode;
    if (gb) add_rows(gb, dy, rows, fan_out);
    return VIKT_OK;
}

static const vikt__op linear_op = {"vikt_dense", linear_shape, linear_fwd, linear_bwd, 0};

vikt_tensor *vikt__linear(vikt_model *m, vikt_tensor *x, vikt_tensor *w, vikt_tensor *b) {
    vikt_tensor *in[3] = {x, w, b};
    return vikt__apply(m, &linear_op, in, 3, NULL);
}
