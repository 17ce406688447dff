/* Losses, each reduced to a mean (a rank-0 tensor). */
#include "../kernels/vec.h"
#include "../vikt_internal.h"

#include <math.h>
#include <string.h>

static int pair_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                      vikt__args *args, int64_t *shape, int *rank) {
    (void)n, (void)args, (void)shape;
    char sa[VIKT__SHAPE_STR], sb[VIKT__SHAPE_STR];
    if (!vikt__same_shape(in[0], in[1]))
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: prediction %s and target %s differ", op->name,
                          vikt__shape_str(in[0], sa), vikt__shape_str(in[1], sb));
    if (in[0]->numel == 0)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: the mean over an empty %s is undefined",
                          op->name, vikt__shape_str(in[0], sa));
    *rank = 0;
    return VIKT_OK;
}

/* PAIR_LOSS(name, L, GX, GT): mean of L(x, t); dx += GX·g/N, dt += GT·g/N. */
#define PAIR_LOSS(NAME, L, GX, GT)                                                              \
    static int NAME##_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,    \
                          vikt_tensor *out) {                                                  \
        (void)m, (void)n, (void)args;                                                          \
        const float *X = in[0]->data, *T = in[1]->data;                                        \
        double acc = 0;                                                                        \
        for (int64_t i = 0; i < in[0]->numel; i++) {                                           \
            float x = X[i], t = T[i];                                                          \
            acc += (L);                                                                        \
        }                                                                                      \
        out->data[0] = (float)(acc / (double)in[0]->numel);                                    \
        return VIKT_OK;                                                                        \
    }                                                                                          \
    static int NAME##_bwd(vikt_model *m, vikt_tensor *const *in, int n,                       \
                          const vikt__args *args, vikt_tensor *out) {                          \
        (void)n, (void)args;                                                                   \
        float *gx = vikt__grad(in[0]), *gt = vikt__grad(in[1]);                                \
        if (m->errcode) return m->errcode;                                                     \
        const float *X = in[0]->data, *T = in[1]->data;                                        \
        float scale = out->grad[0] / (float)in[0]->numel;                                      \
        for (int64_t i = 0; i < in[0]->numel; i++) {                                           \
            float x = X[i], t = T[i];                                                          \
            if (gx) gx[i] += (GX)*scale;                                                       \
            if (gt) gt[i] += (GT)*scale;                                                       \
        }                                                                                      \
        return VIKT_OK;                                                                        \
    }                                                                                          \
    static const vikt__op NAME##_op = {"vikt_" #NAME, pair_shape, NAME##_fwd, NAME##_bwd, 0};   \
    vikt_tensor *vikt_##NAME(vikt_model *m, vikt_tensor *x, vikt_tensor *t) {                 \
        vikt_tensor *in[2] = {x, t};                                                           \
        return vikt__apply(m, &NAME##_op, in, 2, NULL);                                        \
    }

PAIR_LOSS(mse_loss, (double)(x - t) * (x - t), 2.0f * (x - t), -2.0f * (x - t))
PAIR_LOSS(bce_with_logits_loss, (x > 0 ? x : 0.0f) - x * t + log1pf(expf(-fabsf(x))),
          vikt__sigmoid(x) - t, -x)
PAIR_LOSS(hinge_loss, 1.0f - t * x > 0 ? 1.0f - t * x : 0.0f, 1.0f - t * x > 0 ? -t : 0.0f,
          1.0f - t * x > 0 ? -x : 0.0f)

/* ---------------------------------------------------- softmax cross-entropy */

/* args->saved holds the caller's labels during the shape check, then the
 * arena copy with the row probabilities after it: [N int32 labels][N*C probs]. */
static int ce_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                    vikt__args *args, int64_t *shape, int *rank) {
    (void)n, (void)shape;
    const vikt_tensor *x = in[0];
    char s[VIKT__SHAPE_STR];
    if (x->rank != 2 || x->shape[0] == 0 || x->shape[1] == 0)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: logits must be a non-empty [N, C], got %s",
                          op->name, vikt__shape_str(x, s));
    const int32_t *labels = args->saved;
    if (!labels) return vikt__fail(m, VIKT_ERR_NULL, "%s: labels is NULL", op->name);
    for (int64_t r = 0; r < x->shape[0]; r++)
        if (labels[r] < 0 || labels[r] >= x->shape[1])
            return vikt__fail(m, VIKT_ERR_ARG,
                              "%s: label %d at row %lld is outside 0..%lld for logits %s",
                              op->name, (int)labels[r], (long long)r, (long long)x->shape[1] - 1,
                              vikt__shape_str(x, s));
    *rank = 0;
    return VIKT_OK;
}

static int ce_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                  vikt_tensor *out) {
    (void)n;
    int64_t N = in[0]->shape[0], C = in[0]->shape[1];
    size_t label_bytes = ((size_t)N * sizeof(int32_t) + VIKT__ALIGN - 1) & ~(size_t)(VIKT__ALIGN - 1);
    unsigned char *keep = vikt__arena_alloc(m, label_bytes + (size_t)(N * C) * sizeof(float));
    if (!keep) return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_cross_entropy_loss: out of memory");
    int32_t *labels = (int32_t *)keep;
    float *probs = (float *)(keep + label_bytes);
    memcpy(labels, args->saved, (size_t)N * sizeof(int32_t));
    const vikt__vec *v = vikt__vec_get();
    double total = 0;
    for (int64_t r = 0; r < N; r++) {
        const float *x = in[0]->data + r * C;
        float *pr = probs + r * C, mx, ls = v->logsumexp(x, C, &mx);
        v->binary(VIKT__VEC_SUB, C, x, 1, &mx, 0, pr); /* (x − max) − lse */
        v->binary(VIKT__VEC_SUB, C, pr, 1, &ls, 0, pr);
        total += ((double)mx - x[labels[r]]) + ls;
    }
    v->unary(VIKT__VEC_EXP, N * C, probs, 0.0f, probs);
    out->data[0] = (float)(total / (double)N);
    args->saved = keep;
    return VIKT_OK;
}

/* dx = (softmax − onehot(label)) · g / N */
static int ce_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                  vikt_tensor *out) {
    (void)n;
    float *gx = vikt__grad(in[0]);
    if (!gx) return m->errcode;
    int64_t N = in[0]->shape[0], C = in[0]->shape[1];
    size_t label_bytes = ((size_t)N * sizeof(int32_t) + VIKT__ALIGN - 1) & ~(size_t)(VIKT__ALIGN - 1);
    const int32_t *labels = args->saved;
    const float *probs = (const float *)((const unsigned char *)args->saved + label_bytes);
    float scale = out->grad[0] / (float)N;
    const vikt__vec *v = vikt__vec_get();
    for (int64_t r = 0; r < N; r++) {
        v->axpy(C, scale, probs + r * C, gx + r * C);
        gx[r * C + labels[r]] -= scale;
    }
    return VIKT_OK;
}

static const vikt__op ce_op = {"vikt_cross_entropy_loss", ce_shape, ce_fwd, ce_bwd, 0};

vikt_tensor *vikt_cross_entropy_loss(vikt_model *m, vikt_tensor *logits, const int32_t *labels) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.saved = (void *)(uintptr_t)labels;
    return vikt__apply(m, &ce_op, &logits, 1, &args);
}
