/* Softmax and log-softmax over the last axis. Both subtract the row maximum
 * first, so logits of any finite size give finite results. */
#include "../kernels/vec.h"
#include "../vikt_internal.h"

#include <math.h>

static int rows_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                      vikt__args *args, int64_t *shape, int *rank) {
    (void)n, (void)args;
    const vikt_tensor *a = in[0];
    if (a->rank < 1) {
        char s[VIKT__SHAPE_STR];
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: needs rank >= 1, got %s", op->name,
                          vikt__shape_str(a, s));
    }
    *rank = a->rank;
    for (int i = 0; i < a->rank; i++) shape[i] = a->shape[i];
    return VIKT_OK;
}

static void row_extent(const vikt_tensor *t, int64_t *rows, int64_t *cols) {
    *cols = t->shape[t->rank - 1];
    *rows = *cols ? t->numel / *cols : 0;
}

static int log_softmax_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                           vikt_tensor *out) {
    (void)m, (void)n, (void)args;
    const vikt__vec *v = vikt__vec_get();
    int64_t rows, cols;
    row_extent(in[0], &rows, &cols);
    for (int64_t r = 0; r < rows; r++)
        v->log_softmax_row(cols, in[0]->data + r * cols, out->data + r * cols);
    return VIKT_OK;
}

static int softmax_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                       vikt_tensor *out) {
    log_softmax_fwd(m, in, n, args, out);
    vikt__vec_get()->unary(VIKT__VEC_EXP, out->numel, out->data, 0.0f, out->data);
    return VIKT_OK;
}

/* dx = y ⊙ (g − Σ g⊙y) */
static int softmax_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                       vikt_tensor *out) {
    (void)n, (void)args;
    float *gx = vikt__grad(in[0]);
    if (!gx) return m->errcode;
    const vikt__vec *v = vikt__vec_get();
    int64_t rows, cols;
    row_extent(out, &rows, &cols);
    for (int64_t r = 0; r < rows; r++) {
        const float *y = out->data + r * cols, *g = out->grad + r * cols;
        v->softmax_grad_row(cols, y, g, (float)v->dot(cols, g, y), gx + r * cols);
    }
    return VIKT_OK;
}

/* dx = g − softmax ⊙ Σ g, with softmax = exp(y). */
static int log_softmax_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                           vikt_tensor *out) {
    (void)n, (void)args;
    float *gx = vikt__grad(in[0]);
    if (!gx) return m->errcode;
    const vikt__vec *v = vikt__vec_get();
    int64_t rows, cols;
    row_extent(out, &rows, &cols);
    for (int64_t r = 0; r < rows; r++) {
        const float *y = out->data + r * cols, *g = out->grad + r * cols;
        v->log_softmax_grad_row(cols, y, g, (float)v->sum(cols, g), gx + r * cols);
    }
    return VIKT_OK;
}

static const vikt__op softmax_op = {"vikt_softmax", rows_shape, softmax_fwd, softmax_bwd, 0};
static const vikt__op log_softmax_op = {"vikt_log_softmax", rows_shape, log_softmax_fwd,
                                        log_softmax_bwd, 0};

vikt_tensor *vikt_softmax(vikt_model *m, vikt_tensor *a) {
    return vikt__apply(m, &softmax_op, &a, 1, NULL);
}

vikt_tensor *vikt_log_softmax(vikt_model *m, vikt_tensor *a) {
    return vikt__apply(m, &log_softmax_op, &a, 1, NULL);
}
