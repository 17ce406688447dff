/* Elementwise ops: broadcasting binary arithmetic, scale, the unary maths and
 * activations, and dropout. Each op's forward and backward are one table
 * entry. The hot loops run as whole rows through the vector kernels of the
 * ISA in use (src/kernels/vec.h); the rest stay plain loops. */
#include "../kernels/vec.h"
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
    /* Fold outer dimensions into the innermost while both operands step
     * through them as one run (contiguous, or both broadcast along them), so
     * a CNN bias [C,1,1] over [N,C,H,W] makes rows of H·W, not of W. The
     * elements are visited in the same order either way. */
    for (int i = 2; i >= 0; i--) {
        if (p->dim[i] == 1) continue;
        if (p->sa[i] != p->dim[3] * p->sa[3] || p->sb[i] != p->dim[3] * p->sb[3]) break;
        p->dim[3] *= p->dim[i];
        p->dim[i] = 1;
    }
}

/* The gradient of an operand broadcast along a row (a bias): the row's sum
 * of g (add, sub) or g·other (mul), in double through the vector kernel,
 * added once. 0 when left to the scalar loop. */
static int grad_sum_row(const vikt__vec *v, int op, int64_t n, const float *other,
                        int64_t so, const float *g, float *dst, float sign) {
    if (op == VIKT__VEC_DIV || (op == VIKT__VEC_MUL && !so)) return 0;
    double s = op == VIKT__VEC_MUL ? v->dot(n, g, other) : v->sum(n, g);
    *dst += sign * (float)s;
    return 1;
}

/* One output row of a's gradient through the vector kernels: ga[i] += GA for
 * add, sub (g) and mul (g·b). 0 when the row is left to the scalar loop
 * (div, or both operands broadcast along it). */
static int grad_a_row(const vikt__vec *v, int op, int64_t n, const float *b, int64_t sb,
                      const float *g, float *ga, int64_t sa) {
    if (sa == 0) return grad_sum_row(v, op, n, b, sb, g, ga, 1.0f);
    if (op == VIKT__VEC_DIV) return 0;
    if (op == VIKT__VEC_MUL && sb)
        v->acc_mul(n, g, b, ga);
    else
        v->axpy(n, op == VIKT__VEC_MUL ? b[0] : 1.0f, g, ga);
    return 1;
}

/* The same for b: gb[i] += g, −g or g·a (−g as g·(−1), which is exact). */
static int grad_b_row(const vikt__vec *v, int op, int64_t n, const float *a, int64_t sa,
                      const float *g, float *gb, int64_t sb) {
    if (sb == 0) return grad_sum_row(v, op, n, a, sa, g, gb, op == VIKT__VEC_SUB ? -1.0f : 1.0f);
    if (op == VIKT__VEC_DIV) return 0;
    if (op == VIKT__VEC_MUL && sa)
        v->acc_mul(n, g, a, gb);
    else
        v->axpy(n, op == VIKT__VEC_MUL ? a[0] : op == VIKT__VEC_SUB ? -1.0f : 1.0f, g, gb);
    return 1;
}

/* BINARY(name, OP, GA, GB): y = a OP b; da += GA, db += GB with g the output
 * gradient. Same-shape operands take one flat call, broadcasts one call per
 * innermost row; gradients go row by row, each input's row whole. */
#define BINARY(NAME, OP, GA, GB)                                                                \
    static int NAME##_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,    \
                          vikt_tensor *out) {                                                  \
        (void)m, (void)n, (void)args;                                                          \
        const vikt__vec *v = vikt__vec_get();                                                  \
        const float *A = in[0]->data, *B = in[1]->data;                                        \
        float *Y = out->data;                                                                  \
        if (vikt__same_shape(in[0], in[1])) {                                                  \
            v->binary(OP, out->numel, A, 1, B, 1, Y);                                          \
            return VIKT_OK;                                                                    \
        }                                                                                      \
        bcast p;                                                                               \
        bcast_plan(in[0], in[1], out, &p);                                                     \
        int64_t k = 0;                                                                         \
        for (int64_t i0 = 0; i0 < p.dim[0]; i0++)                                              \
            for (int64_t i1 = 0; i1 < p.dim[1]; i1++)                                          \
                for (int64_t i2 = 0; i2 < p.dim[2]; i2++, k += p.dim[3]) {                     \
                    const float *ra = A + i0 * p.sa[0] + i1 * p.sa[1] + i2 * p.sa[2];          \
                    const float *rb = B + i0 * p.sb[0] + i1 * p.sb[1] + i2 * p.sb[2];          \
                    v->binary(OP, p.dim[3], ra, p.sa[3], rb, p.sb[3], Y + k);                  \
                }                                                                              \
        return VIKT_OK;                                                                        \
    }                                                                                          \
    static int NAME##_bwd(vikt_model *m, vikt_tensor *const *in, int n,                       \
                          const vikt__args *args, vikt_tensor *out) {                          \
        (void)m, (void)n, (void)args;                                                          \
        const vikt__vec *v = vikt__vec_get();                                                  \
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
                    int da = !ga || grad_a_row(v, OP, p.dim[3], B + ob, p.sb[3], G + k,        \
                                               ga + oa, p.sa[3]);                              \
                    int db = !gb || grad_b_row(v, OP, p.dim[3], A + oa, p.sa[3], G + k,        \
                                               gb + ob, p.sb[3]);                              \
                    if (da && db) {                                                            \
                        k += p.dim[3];                                                         \
                        continue;                                                              \
                    }                                                                          \
                    for (int64_t i3 = 0; i3 < p.dim[3]; i3++, k++) {                           \
                        int64_t ia = oa + i3 * p.sa[3], ib = ob + i3 * p.sb[3];                \
                        float a = A[ia], b = B[ib], g = G[k];                                  \
                        (void)a, (void)b;                                                      \
                        if (!da) ga[ia] += (GA);                                               \
                        if (!db) gb[ib] += (GB);                                               \
                    }                                                                          \
                }                                                                              \
        return VIKT_OK;                                                                        \
    }                                                                                          \
    static const vikt__op NAME##_op = {"vikt_" #NAME, bcast_shape, NAME##_fwd, NAME##_bwd, 0};  \
    vikt_tensor *vikt_##NAME(vikt_model *m, vikt_tensor *a, vikt_tensor *b) {                 \
        vikt_tensor *in[2] = {a, b};                                                           \
        return vikt__apply(m, &NAME##_op, in, 2, NULL);                                        \
    }

BINARY(add, VIKT__VEC_ADD, g, g)
BINARY(sub, VIKT__VEC_SUB, g, -g)
BINARY(mul, VIKT__VEC_MUL, g * b, g * a)
BINARY(div, VIKT__VEC_DIV, g / b, -g * a / (b * b))

/* ----------------------------------------------------------------- unary */

static int same_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                      vikt__args *args, int64_t *shape, int *rank) {
    (void)m, (void)op, (void)n, (void)args;
    *rank = in[0]->rank;
    for (int i = 0; i < *rank; i++) shape[i] = in[0]->shape[i];
    return VIKT_OK;
}

/* A unary op runs either its own loops (UNARY_LOOP) or the vector table's
 * kernels (UNARY_VEC), whose scalar reference in src/kernels/vec_scalar.c
 * holds the formulas: the forward is unary(VK) and the gradient unary_grad
 * (GRAD_FN), acc_mul with y (GRAD_G_Y, exp: g·y) or axpy with s (GRAD_G_S,
 * scale: g·s). s is the op's float argument (args->f[0]). */
enum { GRAD_FN, GRAD_G_Y, GRAD_G_S };

/* UNARY_LOOP(name, FWD, GX): y = FWD(x); dx += GX(x, y, g). */
#define UNARY_LOOP(NAME, FWD, GX)                                                               \
    static int NAME##_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,       \
                          vikt_tensor *out) {                                                   \
        (void)m, (void)n, (void)args;                                                           \
        const float *X = in[0]->data;                                                           \
        float *Y = out->data;                                                                   \
        for (int64_t i = 0; i < out->numel; i++) {                                              \
            float x = X[i];                                                                     \
            Y[i] = (FWD);                                                                       \
        }                                                                                       \
        return VIKT_OK;                                                                         \
    }                                                                                           \
    static int NAME##_bwd(vikt_model *m, vikt_tensor *const *in, int n,                         \
                          const vikt__args *args, vikt_tensor *out) {                           \
        (void)n, (void)args;                                                                    \
        float *gx = vikt__grad(in[0]);                                                          \
        if (!gx) return vikt_model_errcode(m);                                                  \
        const float *X = in[0]->data, *Y = out->data, *G = out->grad;                           \
        for (int64_t i = 0; i < out->numel; i++) {                                              \
            float x = X[i], y = Y[i], g = G[i];                                                 \
            (void)x, (void)y;                                                                   \
            gx[i] += (GX);                                                                      \
        }                                                                                       \
        return VIKT_OK;                                                                         \
    }                                                                                           \
    static const vikt__op NAME##_op = {"vikt_" #NAME, same_shape, NAME##_fwd, NAME##_bwd, 0};

/* UNARY_VEC(name, VK, VG): the VIKT__VEC_* function VK, its gradient as VG. */
#define UNARY_VEC(NAME, VK, VG)                                                                 \
    static int NAME##_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,       \
                          vikt_tensor *out) {                                                   \
        (void)m, (void)n;                                                                       \
        vikt__vec_get()->unary(VK, out->numel, in[0]->data, args->f[0], out->data);             \
        return VIKT_OK;                                                                         \
    }                                                                                           \
    static int NAME##_bwd(vikt_model *m, vikt_tensor *const *in, int n,                         \
                          const vikt__args *args, vikt_tensor *out) {                           \
        (void)n;                                                                                \
        float *gx = vikt__grad(in[0]);                                                          \
        if (!gx) return vikt_model_errcode(m);                                                  \
        const float *X = in[0]->data, *Y = out->data, *G = out->grad, s = args->f[0];           \
        const vikt__vec *v = vikt__vec_get();                                                   \
        switch (VG) {                                                                           \
        case GRAD_FN: v->unary_grad(VK, out->numel, X, Y, G, s, gx); break;                     \
        case GRAD_G_Y: v->acc_mul(out->numel, G, Y, gx); break;                                 \
        default: v->axpy(out->numel, s, G, gx); break;                                          \
        }                                                                                       \
        return VIKT_OK;                                                                         \
    }                                                                                           \
    static const vikt__op NAME##_op = {"vikt_" #NAME, same_shape, NAME##_fwd, NAME##_bwd, 0};

UNARY_VEC(scale, VIKT__VEC_SCALE, GRAD_G_S)
UNARY_VEC(exp, VIKT__VEC_EXP, GRAD_G_Y)
UNARY_LOOP(log, logf(x), g / x)
UNARY_LOOP(sqrt, sqrtf(x), g * 0.5f / y)
UNARY_LOOP(square, x * x, g * 2.0f * x)
UNARY_VEC(relu, VIKT__VEC_RELU, GRAD_FN)
UNARY_VEC(leaky_relu, VIKT__VEC_LEAKY_RELU, GRAD_FN)
UNARY_VEC(sigmoid, VIKT__VEC_SIGMOID, GRAD_FN)
UNARY_VEC(tanh, VIKT__VEC_TANH, GRAD_FN)
UNARY_VEC(gelu, VIKT__VEC_GELU, GRAD_FN)

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

static const vikt__op dropout_op = {"vikt_dropout", dropout_shape, dropout_fwd, dropout_bwd, 0};

vikt_tensor *vikt_dropout(vikt_model *m, vikt_tensor *a, float p) {
    return unary(m, &dropout_op, a, p);
}
