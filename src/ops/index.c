/* Ops that move values by position: permute (reorder axes), gather_rows and
 * scatter_rows (rows by an index array). Attention reorders heads with
 * permute; mixture-of-experts routes token rows with gather and scatter. */
#include "../vikt_internal.h"

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- permute */

/* args: i[0..rank-1] = perm (rank <= 4 = VIKT_MAX_RANK, so it fits). */

static int permute_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                         vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *a = in[0];
    const int *perm = args->saved;
    char s[VIKT__SHAPE_STR];
    if (a->rank > 0 && !perm)
        return vikt__fail(m, VIKT_ERR_NULL, "%s: perm is NULL for %s", op->name,
                          vikt__shape_str(a, s));
    int seen[VIKT_MAX_RANK] = {0};
    for (int i = 0; i < a->rank; i++) {
        if (perm[i] < 0 || perm[i] >= a->rank)
            return vikt__fail(m, VIKT_ERR_ARG, "%s: perm[%d] = %d is not an axis of %s (0..%d)",
                              op->name, i, perm[i], vikt__shape_str(a, s), a->rank - 1);
        if (seen[perm[i]]++)
            return vikt__fail(m, VIKT_ERR_ARG, "%s: axis %d appears twice in perm for %s", op->name,
                              perm[i], vikt__shape_str(a, s));
    }
    *rank = a->rank;
    for (int i = 0; i < a->rank; i++) {
        args->i[i] = perm[i];
        shape[i] = a->shape[perm[i]];
    }
    args->saved = NULL; /* the caller's array is not kept */
    return VIKT_OK;
}

/* The output as a 4-deep loop: dims[k] output sizes and stride[k] the input
 * stride of the axis output axis k reads, padded on the left with size 1. */
static void permute_plan(const vikt_tensor *a, const vikt__args *args, int64_t *dims,
                         int64_t *stride) {
    int64_t in_stride[VIKT_MAX_RANK];
    int64_t s = 1;
    for (int d = a->rank - 1; d >= 0; d--) {
        in_stride[d] = s;
        s *= a->shape[d];
    }
    int off = 4 - a->rank;
    for (int k = 0; k < 4; k++) {
        int axis = k < off ? -1 : (int)args->i[k - off];
        dims[k] = axis < 0 ? 1 : a->shape[axis];
        stride[k] = axis < 0 ? 0 : in_stride[axis];
    }
}

/* Forward copies in → out in output order; backward adds out's gradient
 * back to the positions it came from (a permutation touches each once). */
static void permute_walk(const vikt_tensor *a, const vikt__args *args, const float *src, float *dst,
                         int backward) {
    int64_t d[4], st[4], k = 0;
    permute_plan(a, args, d, st);
    for (int64_t i0 = 0; i0 < d[0]; i0++)
        for (int64_t i1 = 0; i1 < d[1]; i1++)
            for (int64_t i2 = 0; i2 < d[2]; i2++)
                for (int64_t i3 = 0; i3 < d[3]; i3++, k++) {
                    int64_t at = i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3];
                    if (backward)
                        dst[at] += src[k];
                    else
                        dst[k] = src[at];
                }
}

static int permute_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                       vikt_tensor *out) {
    (void)m, (void)n;
    permute_walk(in[0], args, in[0]->data, out->data, 0);
    return VIKT_OK;
}

static int permute_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                       vikt_tensor *out) {
    (void)n;
    float *ga = vikt__grad(in[0]);
    if (!ga) return m->errcode;
    permute_walk(in[0], args, out->grad, ga, 1);
    return VIKT_OK;
}

static const vikt__op permute_op = {"vikt_permute", permute_shape, permute_fwd, permute_bwd, 0};

vikt_tensor *vikt_permute(vikt_model *m, vikt_tensor *a, const int *perm) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.saved = (void *)(uintptr_t)perm;
    return vikt__apply(m, &permute_op, &a, 1, &args);
}

/* ------------------------------------------------------ gather / scatter */

/* args: i[0] = number of indices, i[1] = the row count they index into (a's
 * rows for gather, the output rows for scatter). saved = the caller's index
 * array during the shape check, the arena copy from the forward pass on. */

/* Every index in 0..rows-1, or an error naming the first bad one. */
static int check_index(vikt_model *m, const vikt__op *op, const vikt_tensor *t,
                       const int32_t *index, int64_t n, int64_t rows) {
    char s[VIKT__SHAPE_STR];
    if (n > 0 && !index)
        return vikt__fail(m, VIKT_ERR_NULL, "%s: index is NULL (%lld rows of %s)", op->name,
                          (long long)n, vikt__shape_str(t, s));
    for (int64_t i = 0; i < n; i++)
        if (index[i] < 0 || index[i] >= rows)
            return vikt__fail(
                m, VIKT_ERR_ARG, "%s: index %ld at position %lld is outside 0..%lld (%s)", op->name,
                (long)index[i], (long long)i, (long long)rows - 1, vikt__shape_str(t, s));
    return VIKT_OK;
}

static int gather_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                        vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *a = in[0];
    char s[VIKT__SHAPE_STR];
    if (a->rank < 1)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: needs rank >= 1, got %s", op->name,
                          vikt__shape_str(a, s));
    if (args->i[0] < 0)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: n = %lld is negative (%s)", op->name,
                          (long long)args->i[0], vikt__shape_str(a, s));
    args->i[1] = a->shape[0];
    if (check_index(m, op, a, args->saved, args->i[0], a->shape[0])) return m->errcode;
    *rank = a->rank;
    shape[0] = args->i[0];
    for (int d = 1; d < a->rank; d++) shape[d] = a->shape[d];
    return VIKT_OK;
}

static int scatter_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                         vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *src = in[0];
    char s[VIKT__SHAPE_STR];
    if (src->rank < 1)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: needs rank >= 1, got %s", op->name,
                          vikt__shape_str(src, s));
    if (args->i[1] < 0)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: rows = %lld is negative (src %s)", op->name,
                          (long long)args->i[1], vikt__shape_str(src, s));
    args->i[0] = src->shape[0];
    if (check_index(m, op, src, args->saved, args->i[0], args->i[1])) return m->errcode;
    *rank = src->rank;
    shape[0] = args->i[1];
    for (int d = 1; d < src->rank; d++) shape[d] = src->shape[d];
    return VIKT_OK;
}

/* The caller's index array is only borrowed for the call; keep a copy for
 * backward. */
static int keep_index(vikt_model *m, const char *opname, vikt__args *args) {
    int64_t n = args->i[0];
    int32_t *copy = vikt__arena_alloc(m, (size_t)n * sizeof(int32_t));
    if (!copy) return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", opname);
    if (n > 0) memcpy(copy, args->saved, (size_t)n * sizeof(int32_t));
    args->saved = copy;
    return VIKT_OK;
}

/* Row i of the compact side (gather's output, scatter's source) pairs with
 * row index[i] of the wide side. `to_wide` adds compact rows into wide ones;
 * otherwise wide rows are added into compact ones. */
static void move_rows(const int32_t *index, int64_t n, int64_t width, float *compact, float *wide,
                      int to_wide) {
    for (int64_t i = 0; i < n; i++) {
        float *c = compact + i * width, *w = wide + (int64_t)index[i] * width;
        if (to_wide)
            for (int64_t j = 0; j < width; j++) w[j] += c[j];
        else
            for (int64_t j = 0; j < width; j++) c[j] += w[j];
    }
}

static int gather_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                      vikt_tensor *out) {
    (void)n;
    if (keep_index(m, "vikt_gather_rows", args)) return m->errcode;
    const int32_t *index = args->saved;
    int64_t width = vikt__inner_size(in[0], 0);
    for (int64_t i = 0; i < args->i[0]; i++)
        memcpy(out->data + i * width, in[0]->data + (int64_t)index[i] * width,
               (size_t)width * sizeof(float));
    return VIKT_OK;
}

static int gather_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                      vikt_tensor *out) {
    (void)n;
    float *ga = vikt__grad(in[0]);
    if (!ga) return m->errcode;
    move_rows(args->saved, args->i[0], vikt__inner_size(in[0], 0), out->grad, ga, 1);
    return VIKT_OK;
}

static int scatter_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                       vikt_tensor *out) {
    (void)n;
    if (keep_index(m, "vikt_scatter_rows", args)) return m->errcode;
    memset(out->data, 0, (size_t)out->numel * sizeof(float));
    move_rows(args->saved, args->i[0], vikt__inner_size(in[0], 0), in[0]->data, out->data, 1);
    return VIKT_OK;
}

static int scatter_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                       vikt_tensor *out) {
    (void)n;
    float *gs = vikt__grad(in[0]);
    if (!gs) return m->errcode;
    move_rows(args->saved, args->i[0], vikt__inner_size(in[0], 0), gs, out->grad, 0);
    return VIKT_OK;
}

static const vikt__op gather_op = {"vikt_gather_rows", gather_shape, gather_fwd, gather_bwd, 0};
static const vikt__op scatter_op = {"vikt_scatter_rows", scatter_shape, scatter_fwd, scatter_bwd, 0};

vikt_tensor *vikt_gather_rows(vikt_model *m, vikt_tensor *a, const int32_t *index, int64_t n) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = n;
    args.saved = (void *)(uintptr_t)index;
    return vikt__apply(m, &gather_op, &a, 1, &args);
}

vikt_tensor *vikt_scatter_rows(vikt_model *m, vikt_tensor *src, const int32_t *index,
                               int64_t rows) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[1] = rows;
    args.saved = (void *)(uintptr_t)index;
    return vikt__apply(m, &scatter_op, &src, 1, &args);
}
