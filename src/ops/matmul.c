/* Matrix products through the internal GEMM, and transpose. */
#include "../vikt_internal.h"

#include <string.h>

/* Geometry of a (possibly batched, possibly transposed) product. A 2-D
 * operand next to a 3-D one is shared by every batch (batch stride 0). */
typedef struct {
    int64_t batch, M, N, K;
    int64_t lda, ldb;             /* stored row lengths */
    int64_t stride_a, stride_b;   /* elements between batches */
    int ta, tb;
} mm_geom;

static void geometry(const vikt_tensor *a, const vikt_tensor *b, int ta, int tb, mm_geom *g) {
    int64_t ar = a->shape[a->rank - 2], ac = a->shape[a->rank - 1];
    int64_t br = b->shape[b->rank - 2], bc = b->shape[b->rank - 1];
    g->ta = ta;
    g->tb = tb;
    g->M = ta ? ac : ar;
    g->K = ta ? ar : ac;
    g->N = tb ? br : bc;
    g->lda = ac;
    g->ldb = bc;
    g->batch = a->rank == 3 ? a->shape[0] : b->rank == 3 ? b->shape[0] : 1;
    g->stride_a = a->rank == 3 ? ar * ac : 0;
    g->stride_b = b->rank == 3 ? br * bc : 0;
}

static int matmul_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                        vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *a = in[0], *b = in[1];
    char sa[VIKT__SHAPE_STR], sb[VIKT__SHAPE_STR];
    if (a->rank < 2 || a->rank > 3 || b->rank < 2 || b->rank > 3)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: operands must have rank 2 or 3 (%s · %s)",
                          op->name, vikt__shape_str(a, sa), vikt__shape_str(b, sb));
    mm_geom g;
    geometry(a, b, (int)args->i[0], (int)args->i[1], &g);
    int64_t kb = g.tb ? b->shape[b->rank - 1] : b->shape[b->rank - 2];
    if (g.K != kb)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: inner dimensions differ (%s%s · %s%s)",
                          op->name, vikt__shape_str(a, sa), g.ta ? "ᵀ" : "",
                          vikt__shape_str(b, sb), g.tb ? "ᵀ" : "");
    if (a->rank == 3 && b->rank == 3 && a->shape[0] != b->shape[0])
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: batch sizes differ (%s · %s)", op->name,
                          vikt__shape_str(a, sa), vikt__shape_str(b, sb));
    *rank = a->rank > b->rank ? a->rank : b->rank;
    int i = 0;
    if (*rank == 3) shape[i++] = g.batch;
    shape[i++] = g.M;
    shape[i] = g.N;
    return VIKT_OK;
}

/* Every product here is C (+)= op(A)·op(B); errors name vikt_matmul. */
static int gemm(vikt_model *m, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return vikt__gemm(m, "vikt_matmul", ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

static int matmul_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                      vikt_tensor *out) {
    (void)n;
    mm_geom g;
    geometry(in[0], in[1], (int)args->i[0], (int)args->i[1], &g);
    for (int64_t p = 0; p < g.batch; p++)
        if (gemm(m, g.ta, g.tb, g.M, g.N, g.K, in[0]->data + p * g.stride_a, g.lda,
                 in[1]->data + p * g.stride_b, g.ldb, 0.0f, out->data + p * g.M * g.N, g.N))
            return m->errcode;
    return VIKT_OK;
}

/* With C = op(A)·op(B): d op(A) = dC·op(B)ᵀ and d op(B) = op(A)ᵀ·dC; a
 * transposed operand takes the transpose of its gradient. Every product adds
 * into the gradient (beta = 1), which also sums a shared operand's batches. */
static int matmul_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                      vikt_tensor *out) {
    (void)n;
    mm_geom g;
    geometry(in[0], in[1], (int)args->i[0], (int)args->i[1], &g);
    float *ga = vikt__grad(in[0]), *gb = vikt__grad(in[1]);
    if (m->errcode) return m->errcode;
    const float *A = in[0]->data, *B = in[1]->data;
    for (int64_t p = 0; p < g.batch; p++) {
        const float *dC = out->grad + p * g.M * g.N;
        const float *Ap = A + p * g.stride_a, *Bp = B + p * g.stride_b;
        int rc = VIKT_OK;
        if (ga && !g.ta)
            rc = gemm(m, 0, !g.tb, g.M, g.K, g.N, dC, g.N, Bp, g.ldb, 1.0f, ga + p * g.stride_a,
                      g.lda);
        else if (ga)
            rc = gemm(m, g.tb, 1, g.K, g.M, g.N, Bp, g.ldb, dC, g.N, 1.0f, ga + p * g.stride_a,
                      g.lda);
        if (!rc && gb && !g.tb)
            rc = gemm(m, !g.ta, 0, g.K, g.N, g.M, Ap, g.lda, dC, g.N, 1.0f, gb + p * g.stride_b,
                      g.ldb);
        else if (!rc && gb)
            rc = gemm(m, 1, g.ta, g.N, g.K, g.M, dC, g.N, Ap, g.lda, 1.0f, gb + p * g.stride_b,
                      g.ldb);
        if (rc) return rc;
    }
    return VIKT_OK;
}

static const vikt__op matmul_op = {"vikt_matmul", matmul_shape, matmul_fwd, matmul_bwd, 0};

vikt_tensor *vikt_matmul_t(vikt_model *m, vikt_tensor *a, vikt_tensor *b, int transpose_a,
                           int transpose_b) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = transpose_a != 0;
    args.i[1] = transpose_b != 0;
    vikt_tensor *in[2] = {a, b};
    return vikt__apply(m, &matmul_op, in, 2, &args);
}

vikt_tensor *vikt_matmul(vikt_model *m, vikt_tensor *a, vikt_tensor *b) {
    return vikt_matmul_t(m, a, b, 0, 0);
}

/* ------------------------------------------------------------- transpose */

static int transpose_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                           vikt__args *args, int64_t *shape, int *rank) {
    (void)n, (void)args;
    const vikt_tensor *a = in[0];
    if (a->rank < 2) {
        char s[VIKT__SHAPE_STR];
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: needs rank >= 2, got %s", op->name,
                          vikt__shape_str(a, s));
    }
    *rank = a->rank;
    for (int i = 0; i < a->rank; i++) shape[i] = a->shape[i];
    shape[a->rank - 2] = a->shape[a->rank - 1];
    shape[a->rank - 1] = a->shape[a->rank - 2];
    return VIKT_OK;
}

/* dst[b][c][r] (+)= src[b][r][c] for each of the batches. */
static void transpose_into(const float *src, float *dst, int64_t batches, int64_t rows,
                           int64_t cols, int accumulate) {
    for (int64_t b = 0; b < batches; b++, src += rows * cols, dst += rows * cols)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                float v = src[r * cols + c];
                dst[c * rows + r] = accumulate ? dst[c * rows + r] + v : v;
            }
}

static void transpose_dims(const vikt_tensor *a, int64_t *batches, int64_t *rows, int64_t *cols) {
    *rows = a->shape[a->rank - 2];
    *cols = a->shape[a->rank - 1];
    *batches = (*rows > 0 && *cols > 0) ? a->numel / (*rows * *cols) : 0;
}

static int transpose_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                         vikt_tensor *out) {
    (void)m, (void)n, (void)args;
    int64_t b, r, c;
    transpose_dims(in[0], &b, &r, &c);
    transpose_into(in[0]->data, out->data, b, r, c, 0);
    return VIKT_OK;
}

static int transpose_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                         vikt_tensor *out) {
    (void)n, (void)args;
    float *ga = vikt__grad(in[0]);
    if (!ga) return m->errcode;
    int64_t b, r, c;
    transpose_dims(in[0], &b, &r, &c);
    transpose_into(out->grad, ga, b, c, r, 1);
    return VIKT_OK;
}

static const vikt__op transpose_op = {"vikt_transpose", transpose_shape, transpose_fwd,
                                      transpose_bwd, 0};

vikt_tensor *vikt_transpose(vikt_model *m, vikt_tensor *a) {
    return vikt__apply(m, &transpose_op, &a, 1, NULL);
}
