/* Reductions: sum and mean, over everything or along one axis. Sums run in
 * double so long reductions keep float32 accuracy. */
#include "../kernels/vec.h"
#include "../vikt_internal.h"

#include <string.h>

/* args: i[0] = axis (-1 for all), i[1] = keepdim, f[0] = factor (1 or 1/n). */

static int reduce_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                        vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *a = in[0];
    char s[VIKT__SHAPE_STR];
    int is_mean = args->f[0] != 0.0f;
    if (args->i[2] == 0) { /* over everything */
        if (is_mean && a->numel == 0)
            return vikt__fail(m, VIKT_ERR_SHAPE, "%s: the mean of an empty %s is undefined",
                              op->name, vikt__shape_str(a, s));
        args->f[0] = is_mean ? 1.0f / (float)a->numel : 1.0f;
        *rank = 0;
        return VIKT_OK;
    }
    int axis = vikt__norm_axis((int)args->i[0], a->rank);
    if (axis < 0)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: axis %d is out of range for %s", op->name,
                          (int)args->i[0], vikt__shape_str(a, s));
    if (is_mean && a->shape[axis] == 0)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: axis %d of %s is empty", op->name, axis,
                          vikt__shape_str(a, s));
    args->i[0] = axis;
    args->f[0] = is_mean ? 1.0f / (float)a->shape[axis] : 1.0f;
    *rank = 0;
    for (int d = 0; d < a->rank; d++) {
        if (d != axis)
            shape[(*rank)++] = a->shape[d];
        else if (args->i[1])
            shape[(*rank)++] = 1;
    }
    return VIKT_OK;
}

/* The reduced axis as [outer, len, inner]; "everything" is [1, numel, 1]. */
static void extents(const vikt_tensor *a, const vikt__args *args, int64_t *outer, int64_t *len,
                    int64_t *inner) {
    if (args->i[2] == 0) {
        *outer = 1;
        *len = a->numel;
        *inner = 1;
        return;
    }
    int axis = (int)args->i[0];
    *outer = vikt__outer_size(a, axis);
    *len = a->shape[axis];
    *inner = vikt__inner_size(a, axis);
}

static int reduce_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                      vikt_tensor *out) {
    (void)m, (void)n;
    int64_t outer, len, inner;
    extents(in[0], args, &outer, &len, &inner);
    const float *X = in[0]->data;
    if (inner == 1) { /* contiguous runs: the vector kernel's double sum */
        const vikt__vec *v = vikt__vec_get();
        for (int64_t o = 0; o < outer; o++)
            out->data[o] = (float)(v->sum(len, X + o * len) * args->f[0]);
        return VIKT_OK;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            double acc = 0;
            for (int64_t k = 0; k < len; k++) acc += X[(o * len + k) * inner + j];
            out->data[o * inner + j] = (float)(acc * args->f[0]);
        }
    return VIKT_OK;
}

static int reduce_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                      vikt_tensor *out) {
    (void)n;
    float *gx = vikt__grad(in[0]);
    if (!gx) return m->errcode;
    int64_t outer, len, inner;
    extents(in[0], args, &outer, &len, &inner);
    if (inner == 1) {
        const vikt__vec *v = vikt__vec_get();
        for (int64_t o = 0; o < outer; o++) {
            float c = out->grad[o] * args->f[0];
            v->binary(VIKT__VEC_ADD, len, gx + o * len, 1, &c, 0, gx + o * len);
        }
        return VIKT_OK;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < len; k++)
            for (int64_t j = 0; j < inner; j++)
                gx[(o * len + k) * inner + j] += out->grad[o * inner + j] * args->f[0];
    return VIKT_OK;
}

static const vikt__op sum_op = {"vikt_sum", reduce_shape, reduce_fwd, reduce_bwd, 0};
static const vikt__op mean_op = {"vikt_mean", reduce_shape, reduce_fwd, reduce_bwd, 0};
static const vikt__op sum_axis_op = {"vikt_sum_axis", reduce_shape, reduce_fwd, reduce_bwd, 0};
static const vikt__op mean_axis_op = {"vikt_mean_axis", reduce_shape, reduce_fwd, reduce_bwd, 0};

static vikt_tensor *reduce(vikt_model *m, const vikt__op *op, vikt_tensor *a, int along_axis,
                           int axis, int keepdim, int mean) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = axis;
    args.i[1] = keepdim != 0;
    args.i[2] = along_axis;
    args.f[0] = mean ? 1.0f : 0.0f; /* shape check turns it into the factor */
    return vikt__apply(m, op, &a, 1, &args);
}

vikt_tensor *vikt_sum(vikt_model *m, vikt_tensor *a) { return reduce(m, &sum_op, a, 0, 0, 0, 0); }
vikt_tensor *vikt_mean(vikt_model *m, vikt_tensor *a) {
    return reduce(m, &mean_op, a, 0, 0, 0, 1);
}
vikt_tensor *vikt_sum_axis(vikt_model *m, vikt_tensor *a, int axis, int keepdim) {
    return reduce(m, &sum_axis_op, a, 1, axis, keepdim, 0);
}
vikt_tensor *vikt_mean_axis(vikt_model *m, vikt_tensor *a, int axis, int keepdim) {
    return reduce(m, &mean_axis_op, a, 1, axis, keepdim, 1);
}
