/* Elementwise ops: broadcasting binary arithmetic, scale, the unary maths and
 * activations, and dropout. Each op's forward and backward are one table
 * entry; the macros keep every loop a plain one the compiler can vectorize. */
#include "../vikt_internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------- broadcast */

/* Shapes padded on the left to rank 4, with strides that are 0 along a
 * broadcast dimension, so one 4-deep loop serves every case. */
typedef struct {
    int64_t dim[4];
    int64_t sa[4], sb[4];
} bcast;

static void padded(const vikt_tensor *t, int64_t *dims) {
    int off = 4 - t->rank;
    for (int i = 0; i < 4; i++) dims[i] = i < off ? 1 : t->shape[i - off];
}

static void strides_for(const int64_t *dims, const int64_t *out, int64_t *stride) {
    int64_t s = 1;
    for (int i = 3; i >= 0; i--) {
        stride[i] = dims[i] == 1 && out[i] != 1 ? 0 : s;
        s *= dims[i];
    }
}

static int bcast_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                       vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    (void)args;
    const vikt_tensor *a = in[0], *b = in[1];
    int64_t da[4], db[4];
    padded(a, da);
    padded(b, db);
    *rank = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 4 - *rank; i < 4; i++) {
        if (da[i] != db[i] && da[i] != 1 && db[i] != 1) {
            char sa[VIKT__SHAPE_STR], sb[VIKT__SHAPE_STR];
            return vikt__fail(m, VIKT_ERR_SHAPE, "%s: shapes %s and %s do not broadcast",
                              op->name, vikt__shape_str(a, sa), vikt__shape_str(b, sb));
        }
        shape[i - (4 - *rank)] = da[i] == 1 ? db[i] : da[i];
    }
    return VIKT_OK;
}

static void bcast_plan(const vikt_tensor *a, const vikt_tensor *b, const vikt_tensor *out,
                       bcast *p) {
    int64_t da[4], db[4];
    padded(a, da);
    padded(b, db);
    padded(out, p->dim);
    strides_for(da, p->dim, p->sa);
    strides_for(db, p->dim, p->sb);
}

/* BINARY(name, FWD, GA, GB): y = FWD(a, b); da += GA, db += GB with g the
 * output gradient. Same-shape operands take a flat loop. */
#define BINARY(NAME, FWD, GA, GB)                                                               \
    static int NAME##_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,    \
                          vikt_tensor *out) {                                                  \
        (void)m, (void)n, (void)args;                                                          \
        const float *A = in[0]->data, *B = in[1]->data;                                        \
        float *Y = out->data;                                                                  \
        if (vikt__same_shape(in[0], in[1])) {                                                  \
            for (int64_t i = 0; i < out->numel; i++) {                                         \
                float a = A[i], b = B[i];                                                      \
                Y[i] = (FWD);                                                                  \
            }                                                                                  \
            return VIKT_OK;                                                                    \
        }                                                                                      \
        bcast p;                                                                               \
        bcast_plan(in[0], in[1], out, &p);                                                     \
        int64_t k = 0;                                                                         \
        for (int64_t i0 = 0; i0 < p.dim[0]; i0++)                                              \
            for (int64_t i1 = 0; i1 < p.dim[1]; i1++)                                          \
                for (int64_t i2 = 0; i2 < p.dim[2]; i2++) {                                    \
                    const float *ra = A + i0 * p.sa[0] + i1 * p.sa[1] + i2 * p.sa[2];          \
                    const float *rb = B + i0 * p.sb[0] + i1 * p.sb[1] + i2 * p.sb[2];          \
                    for (int64_t i3 = 0; i3 < p.dim[3]; i3++, k++) {                           \
                        float a = ra[i3 * p.sa[3]], b = rb[i3 * p.sb[3]];                      \
                        Y[k] = (FWD);                                                          \
                    }                                                                          \
                }                                                                              \
        return VIKT_OK;                                                                        \
    }                                                                                          \
    static int NAME##_bwd(vikt_model *m, vikt_tensor *const *in, int n,                       \
                          const vikt__args *args, vikt_tensor *out) {                          \
        (void)m, (void)n, (void)args;                                                          \
        const float *A = in[0]->data, *B = in[1]->data, *G = out->grad;                        \
        float *ga = vikt__grad(in[0]), *gb = vikt__grad(in[1]);                                \
        if (vikt_model_errcode(m)) return vikt_model_errcode(m);                               \
        bcast p;                                                                               \
        bcast_plan(in[0], in[1], out, &p);                                                     \
        int64_t k = 0;                                                                         \
        for (int64_t i0 = 0; i0 < p.dim[0]; i0++)                                              \
            for (int64_t i1 = 0; i1 < p.dim[1]; i1++)                                          \
                for (int64_t i2 = 0; i2 < p.dim[2]; i2++) {                                    \
                    int64_t oa = i0 * p.sa[0] + i1 * p.sa[1] + i2 * p.sa[2];                   \
                    int64_t ob = i0 * p.sb[0] + i1 * p.sb[1] + i2 * p.sb[2];                   \
                    for (int64_t i3 = 0; i3 < p.dim[3]; i3++, k++) {                           \
                        int64_t ia = oa + i3 * p.sa[3], ib = ob + i3 * p.sb[3];                \
                        float a = A[ia], b = B[ib], g = G[k];                                  \
                        (void)a, (void)b;                                                      \
                        if (ga) ga[ia] += (GA);                                                \
                        if (gb) gb[ib] += (GB);                                                \
                    }                                                                          \
                }                                                                              \
        return VIKT_OK;                                                                        \
    }                                                                                          \
    static const vikt__op NAME##_op = {"vikt_" #NAME, bcast_shape, NAME##_fwd, NAME##_bwd};  \
    vikt_tensor *vikt_##NAME(vikt_model *m, vikt_tensor *a, vikt_tensor *b) {                 \
        vikt_tensor *in[2] = {a, b};                                                           \
        return vikt__apply(m, &NAME##_op, in, 2, NULL);                                        \
    }

BINARY(add, a + b, g, g)
BINARY(sub, a - b, g, -g)
BINARY(mul, a * b, g * b, g * a)
BINARY(div, a / b, g / b, -g * a / (b * b))

/* ----------------------------------------------------------------- unary */

static int same_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                      vikt__args *args, int64_t *shape, int *rank) {
    (void)m, (void)op, (void)n, (void)args;
    *rank = in[0]->rank;
    for (int i = 0; i < *rank; i++) shape[i] = in[0]->shape[i];
    return VIKT_OK;
}

/* UNARY(name, FWD, GX): y = FWD(x, s); dx += GX(x, y, g, s), where s is the
 * op's float argument (args->f[0]). */
#define UNARY(NAME, FWD, GX)                                                                    \
    static int NAME##_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,    \
                          vikt_tensor *out) {                                                  \
        (void)m, (void)n;                                                                      \
        const float *X = in[0]->data, s = args->f[0];                                          \
        float *Y = out->data;                                                                  \
        (void)s;                                                                               \
        for (int64_t i = 0; i < out->numel; i++) {                                             \
            float x = X[i];                                                                    \
            Y[i] = (FWD);                                                                      \
        }                                                                                      \
        return VIKT_OK;                                                                        \
    }                                                                                          \
    static int NAME##_bwd(vikt_model *m, vikt_tensor *const *in, int n,                       \
                          const vikt__args *args, vikt_tensor *out) {                          \
        (void)n;                                                                               \
        float *gx = vikt__grad(in[0]);                                                         \
        if (!gx) return vikt_model_errcode(m);                                                 \
        const float *X = in[0]->data, *Y = out->data, *G = out->grad, s = args->f[0];          \
        (void)s;                                                                               \
        for (int64_t i = 0; i < out->numel; i++) {                                             \
            float x = X[i], y = Y[i], g = G[i];                                                \
            (void)x, (void)y;                                                                  \
            gx[i] += (GX);                                                                     \
        }                                                                                      \
        return VIKT_OK;                                                                        \
    }                                                                                          \
    static const vikt__op NAME##_op = {"vikt_" #NAME, same_shape, NAME##_fwd, NAME##_bwd};

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

UNARY(scale, x * s, g * s)
UNARY(exp, expf(x), g * y)
UNARY(log, logf(x), g / x)
UNARY(sqrt, sqrtf(x), g * 0.5f / y)
UNARY(square, x * x, g * 2.0f * x)
UNARY(relu, x > 0 ? x : 0.0f, x > 0 ? g : 0.0f)
UNARY(leaky_relu, x > 0 ? x : s * x, x > 0 ? g : s * g)
UNARY(sigmoid, vikt__sigmoid(x), g * y * (1.0f - y))
UNARY(tanh, vikt__tanh(x), g * (1.0f - y * y))
UNARY(gelu, 0.5f * x * (1.0f + erff(x * INV_SQRT2)),
      g * (0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x)))

static vikt_tensor *unary(vikt_model *m, const vikt__op *op, vikt_tensor *a, float s) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.f[0] = s;
    return vikt__apply(m, op, &a, 1, &args);
}

vikt_tensor *vikt_scale(vikt_model *m, vikt_tensor *a, float s) { return unary(m, &scale_op, a, s); }
vikt_tensor *vikt_exp(vikt_model *m, vikt_tensor *a) { return unary(m, &exp_op, a, 0); }
vikt_tensor *vikt_log(vikt_model *m, vikt_tensor *a) { return unary(m, &log_op, a, 0); }
vikt_tensor *vikt_sqrt(vikt_model *m, vikt_tensor *a) { return unary(m, &sqrt_op, a, 0); }
vikt_tensor *vikt_square(vikt_model *m, vikt_tensor *a) { return unary(m, &square_op, a, 0); }
vikt_tensor *vikt_relu(vikt_model *m, vikt_tensor *a) { return unary(m, &relu_op, a, 0); }
vikt_tensor *vikt_leaky_relu(vikt_model *m, vikt_tensor *a, float slope) {
    return unary(m, &leaky_relu_op, a, slope);
}
vikt_tensor *vikt_sigmoid(vikt_model *m, vikt_tensor *a) { return unary(m, &sigmoid_op, a, 0); }
vikt_tensor *vikt_tanh(vikt_model *m, vikt_tensor *a) { return unary(m, &tanh_op, a, 0); }
vikt_tensor *vikt_gelu(vikt_model *m, vikt_tensor *a) { return unary(m, &gelu_op, a, 0); }

/* --------------------------------------------------------------- dropout */

/* The mask (0 or 1/(1-p) per element) is drawn in the forward pass and kept
 * in the arena for backward; evaluation mode keeps no mask and copies. */
static int dropout_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                         vikt__args *args, int64_t *shape, int *rank) {
    float p = args->f[0];
    if (!(p >= 0.0f && p < 1.0f)) {
        char s[VIKT__SHAPE_STR];
        return vikt__fail(m, VIKT_ERR_ARG, "%s: p must be in [0, 1), got %g (input %s)", op->name,
                          (double)p, vikt__shape_str(in[0], s));
    }
    return same_shape(m, op, in, n, args, shape, rank);
}

static int dropout_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                       vikt_tensor *out) {
    (void)n;
    const float *X = in[0]->data;
    float p = args->f[0];
    if (!m->training || p == 0.0f) {
        args->saved = NULL;
        memcpy(out->data, X, (size_t)out->numel * sizeof(float));
        return VIKT_OK;
    }
    float *mask = vikt__arena_alloc(m, (size_t)out->numel * sizeof(float));
    if (!mask) return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_dropout: out of memory for the mask");
    float keep = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < out->numel; i++) {
        mask[i] = vikt__rng_uniform(&m->rng) < p ? 0.0f : keep;
        out->data[i] = X[i] * mask[i];
    }
    args->saved = mask;
    return VIKT_OK;
}

static int dropout_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                       vikt_tensor *out) {
    (void)n;
    float *gx = vikt__grad(in[0]);
    if (!gx) return vikt_model_errcode(m);
    const float *mask = args->saved, *G = out->grad;
    for (int64_t i = 0; i < out->numel; i++) gx[i] += mask ? G[i] * mask[i] : G[i];
    return VIKT_OK;
}

static const vikt__op dropout_op = {"vikt_dropout", dropout_shape, dropout_fwd, dropout_bwd};

vikt_tensor *vikt_dropout(vikt_model *m, vikt_tensor *a, float p) {
    return unary(m, &dropout_op, a, p);
}
