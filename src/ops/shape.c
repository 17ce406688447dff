/* Ops that move values without arithmetic: reshape, concat, slice. */
#include "../vikt_internal.h"

#include <string.h>

/* ---------------------------------------------------------------- reshape */

static int reshape_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                         vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *a = in[0];
    const int64_t *want = args->saved;
    *rank = (int)args->i[0];
    char sa[VIKT__SHAPE_STR], sw[VIKT__SHAPE_STR];
    if (*rank < 0 || *rank > VIKT_MAX_RANK)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: rank %d is outside 0..%d", op->name, *rank,
                          VIKT_MAX_RANK);
    if (*rank > 0 && !want) return vikt__fail(m, VIKT_ERR_NULL, "%s: shape is NULL", op->name);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < *rank; i++) {
        shape[i] = want[i];
        if (want[i] == -1 && infer < 0)
            infer = i;
        else if (want[i] < 0)
            return vikt__fail(m, VIKT_ERR_SHAPE, "%s: bad target shape %s for %s", op->name,
                              vikt__dims_str(*rank, want, sw), vikt__shape_str(a, sa));
        else
            known *= want[i];
    }
    if (infer >= 0 && known > 0 && a->numel % known == 0) shape[infer] = a->numel / known;
    int64_t total = 1;
    for (int i = 0; i < *rank; i++) total *= shape[i];
    if ((infer >= 0 && shape[infer] < 0) || total != a->numel)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: cannot reshape %s (%lld elements) to %s",
                          op->name, vikt__shape_str(a, sa), (long long)a->numel,
                          vikt__dims_str(*rank, want, sw));
    args->saved = NULL; /* the caller's array is not kept */
    return VIKT_OK;
}

static int copy_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                    vikt_tensor *out) {
    (void)m, (void)n, (void)args;
    memcpy(out->data, in[0]->data, (size_t)out->numel * sizeof(float));
    return VIKT_OK;
}

static int copy_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                    vikt_tensor *out) {
    (void)n, (void)args;
    float *ga = vikt__grad(in[0]);
    if (!ga) return m->errcode;
    for (int64_t i = 0; i < out->numel; i++) ga[i] += out->grad[i];
    return VIKT_OK;
}

static const vikt__op reshape_op = {"vikt_reshape", reshape_shape, copy_fwd, copy_bwd, 0};

vikt_tensor *vikt_reshape(vikt_model *m, vikt_tensor *a, int rank, const int64_t *shape) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = rank;
    args.saved = (void *)(uintptr_t)shape;
    return vikt__apply(m, &reshape_op, &a, 1, &args);
}

/* ----------------------------------------------------------------- concat */

static int concat_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                        vikt__args *args, int64_t *shape, int *rank) {
    const vikt_tensor *first = in[0];
    char s0[VIKT__SHAPE_STR], si[VIKT__SHAPE_STR];
    int axis = vikt__norm_axis((int)args->i[0], first->rank);
    if (first->rank < 1 || axis < 0)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: axis %d is out of range for %s", op->name,
                          (int)args->i[0], vikt__shape_str(first, s0));
    args->i[0] = axis;
    *rank = first->rank;
    for (int d = 0; d < *rank; d++) shape[d] = first->shape[d];
    for (int k = 1; k < n; k++) {
        int fits = in[k]->rank == first->rank;
        for (int d = 0; fits && d < *rank; d++) fits = d == axis || in[k]->shape[d] == shape[d];
        if (!fits)
            return vikt__fail(m, VIKT_ERR_SHAPE,
                              "%s: input %d (%s) does not match input 0 (%s) off axis %d",
                              op->name, k, vikt__shape_str(in[k], si), vikt__shape_str(first, s0),
                              axis);
        shape[axis] += in[k]->shape[axis];
    }
    return VIKT_OK;
}

/* Copy each input's [outer, dim_k*inner] block into its place in the output
 * rows, or (backward) add the output gradient's blocks into the inputs'. */
static int concat_blocks(vikt_model *m, vikt_tensor *const *in, int n, int axis, float *whole,
                         int backward) {
    int64_t outer = vikt__outer_size(in[0], axis), inner = vikt__inner_size(in[0], axis);
    int64_t row = 0;
    for (int k = 0; k < n; k++) row += in[k]->shape[axis] * inner;
    int64_t offset = 0;
    for (int k = 0; k < n; k++) {
        int64_t width = in[k]->shape[axis] * inner;
        float *part = backward ? vikt__grad(in[k]) : in[k]->data;
        if (m->errcode) return m->errcode;
        for (int64_t o = 0; part && o < outer; o++) {
            float *w = whole + o * row + offset, *p = part + o * width;
            if (backward)
                for (int64_t j = 0; j < width; j++) p[j] += w[j];
            else
                memcpy(w, p, (size_t)width * sizeof(float));
        }
        offset += width;
    }
    return VIKT_OK;
}

static int concat_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                      vikt_tensor *out) {
    return concat_blocks(m, in, n, (int)args->i[0], out->data, 0);
}

static int concat_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                      vikt_tensor *out) {
    return concat_blocks(m, in, n, (int)args->i[0], out->grad, 1);
}

static const vikt__op concat_op = {"vikt_concat", concat_shape, concat_fwd, concat_bwd, 0};

vikt_tensor *vikt_concat(vikt_model *m, int n, vikt_tensor *const *inputs, int axis) {
    if (!m) return NULL;
    if (!inputs || n < 1) {
        vikt__fail(m, inputs ? VIKT_ERR_ARG : VIKT_ERR_NULL,
                   "vikt_concat: needs at least 1 input, got %d%s", n,
                   inputs ? "" : " (inputs is NULL)");
        return NULL;
    }
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = axis;
    return vikt__apply(m, &concat_op, inputs, n, &args);
}

/* ------------------------------------------------------------------ slice */

static int slice_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                       vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *a = in[0];
    char s[VIKT__SHAPE_STR];
    int axis = vikt__norm_axis((int)args->i[0], a->rank);
    if (axis < 0)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: axis %d is out of range for %s", op->name,
                          (int)args->i[0], vikt__shape_str(a, s));
    int64_t start = args->i[1], len = args->i[2];
    if (start < 0 || len < 0 || start > a->shape[axis] || len > a->shape[axis] - start)
        return vikt__fail(m, VIKT_ERR_ARG,
                          "%s: range [%lld, %lld) is outside axis %d of %s", op->name,
                          (long long)start, (long long)start + (long long)len, axis,
                          vikt__shape_str(a, s));
    args->i[0] = axis;
    *rank = a->rank;
    for (int d = 0; d < *rank; d++) shape[d] = a->shape[d];
    shape[axis] = len;
    return VIKT_OK;
}

static int slice_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                     vikt_tensor *out) {
    (void)m, (void)n;
    int axis = (int)args->i[0];
    int64_t outer = vikt__outer_size(in[0], axis), inner = vikt__inner_size(in[0], axis);
    int64_t src_row = in[0]->shape[axis] * inner, dst_row = args->i[2] * inner;
    for (int64_t o = 0; o < outer; o++)
        memcpy(out->data + o * dst_row, in[0]->data + o * src_row + args->i[1] * inner,
               (size_t)dst_row * sizeof(float));
    return VIKT_OK;
}

static int slice_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                     vikt_tensor *out) {
    (void)n;
    float *ga = vikt__grad(in[0]);
    if (!ga) return m->errcode;
    int axis = (int)args->i[0];
    int64_t outer = vikt__outer_size(in[0], axis), inner = vikt__inner_size(in[0], axis);
    int64_t src_row = in[0]->shape[axis] * inner, dst_row = args->i[2] * inner;
    for (int64_t o = 0; o < outer; o++) {
        float *g = ga + o * src_row + args->i[1] * inner;
        const float *d = out->grad + o * dst_row;
        for (int64_t j = 0; j < dst_row; j++) g[j] += d[j];
    }
    return VIKT_OK;
}

static const vikt__op slice_op = {"vikt_slice", slice_shape, slice_fwd, slice_bwd, 0};

vikt_tensor *vikt_slice(vikt_model *m, vikt_tensor *a, int axis, int64_t start, int64_t length) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = axis;
    args.i[1] = start;
    args.i[2] = length;
    return vikt__apply(m, &slice_op, &a, 1, &args);
}
