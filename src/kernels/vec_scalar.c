/* The reference vector kernels: plain loops over one element at a time, the
 * expressions the ops and optimizer rules were written with (libm's expf,
 * vikt__sigmoid, vikt__tanh). Every SIMD table is tested against this one. */
#include "vec.h"

#include <float.h>
#include <math.h>

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

static void binary(int op, int64_t n, const float *a, int64_t sa, const float *b, int64_t sb,
                   float *y) {
    switch (op) {
    case VIKT__VEC_ADD: for (int64_t i = 0; i < n; i++) y[i] = a[i * sa] + b[i * sb]; break;
    case VIKT__VEC_SUB: for (int64_t i = 0; i < n; i++) y[i] = a[i * sa] - b[i * sb]; break;
    case VIKT__VEC_MUL: for (int64_t i = 0; i < n; i++) y[i] = a[i * sa] * b[i * sb]; break;
    default: for (int64_t i = 0; i < n; i++) y[i] = a[i * sa] / b[i * sb]; break;
    }
}

static void axpy(int64_t n, float s, const float *g, float *dst) {
    for (int64_t i = 0; i < n; i++) dst[i] += g[i] * s;
}

static void acc_mul(int64_t n, const float *g, const float *b, float *dst) {
    for (int64_t i = 0; i < n; i++) dst[i] += g[i] * b[i];
}

static void unary(int fn, int64_t n, const float *x, float s, float *y) {
    switch (fn) {
    case VIKT__VEC_RELU: for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f; break;
    case VIKT__VEC_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : s * x[i];
        break;
    case VIKT__VEC_SIGMOID: for (int64_t i = 0; i < n; i++) y[i] = vikt__sigmoid(x[i]); break;
    case VIKT__VEC_TANH: for (int64_t i = 0; i < n; i++) y[i] = vikt__tanh(x[i]); break;
    case VIKT__VEC_EXP: for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]); break;
    case VIKT__VEC_GELU:
        for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * INV_SQRT2));
        break;
    default: for (int64_t i = 0; i < n; i++) y[i] = x[i] * s; break;
    }
}

static void unary_grad(int fn, int64_t n, const float *x, const float *y, const float *g,
                       float s, float *gx) {
    switch (fn) {
    /* g is loaded before the choice, so the compiler can select instead of
     * branching on the sign (a branch mispredicts on every other element) */
    case VIKT__VEC_RELU:
        for (int64_t i = 0; i < n; i++) {
            float xi = x[i], gi = g[i];
            gx[i] += xi > 0 ? gi : 0.0f;
        }
        break;
    case VIKT__VEC_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) {
            float xi = x[i], gi = g[i];
            gx[i] += xi > 0 ? gi : s * gi;
        }
        break;
    case VIKT__VEC_SIGMOID:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] * y[i] * (1.0f - y[i]);
        break;
    case VIKT__VEC_GELU:
        for (int64_t i = 0; i < n; i++)
            gx[i] += g[i] * (0.5f * (1.0f + erff(x[i] * INV_SQRT2)) +
                             x[i] * INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]));
        break;
    default: /* tanh */
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] * (1.0f - y[i] * y[i]);
        break;
    }
}

static float logsumexp(const float *x, int64_t n, float *max) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    *max = mx;
    if (!isfinite(mx)) return 0.0f;
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += exp((double)(x[j] - mx));
    return (float)log(s);
}

static void log_softmax_row(int64_t n, const float *x, float *y) {
    float mx, ls = logsumexp(x, n, &mx);
    for (int64_t j = 0; j < n; j++) y[j] = (x[j] - mx) - ls;
}

static void softmax_grad_row(int64_t n, const float *y, const float *g, float dot, float *gx) {
    for (int64_t j = 0; j < n; j++) gx[j] += y[j] * (g[j] - dot);
}

static void log_softmax_grad_row(int64_t n, const float *y, const float *g, float total,
                                 float *gx) {
    for (int64_t j = 0; j < n; j++) gx[j] += g[j] - expf(y[j]) * total;
}

static double sum(int64_t n, const float *x) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

static double dot(int64_t n, const float *a, const float *b) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* torch: grad.add(param, alpha=weight_decay) when weight_decay != 0. */
static inline float coupled(float g, float p, int decay, float wd) {
    return decay ? g + wd * p : g;
}

/* torch.maximum: NaN in either operand gives NaN. */
static inline float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

static void sgd(int64_t n, float *p, const float *g, float *buf, const vikt__optim_args *a) {
    for (int64_t i = 0; i < n; i++) {
        float d = coupled(g[i], p[i], a->decay, a->wd);
        if (a->momentum) {
            buf[i] = a->fresh ? d : buf[i] * a->mu + a->keep * d;
            d = a->nesterov ? d + a->mu * buf[i] : buf[i];
        }
        p[i] = p[i] + a->step * d;
    }
}

static void adagrad(int64_t n, float *p, const float *g, float *sum_, const vikt__optim_args *a) {
    for (int64_t i = 0; i < n; i++) {
        float d = coupled(g[i], p[i], a->decay, a->wd);
        sum_[i] = sum_[i] + d * d;
        float std = sqrtf(sum_[i]) + a->eps;
        p[i] = p[i] + a->step * d / std;
    }
}

static void rmsprop(int64_t n, float *p, const float *g, float *sq, float *buf, float *gavg,
                    const vikt__optim_args *a) {
    for (int64_t i = 0; i < n; i++) {
        float d = coupled(g[i], p[i], a->decay, a->wd);
        sq[i] = sq[i] * a->alpha + a->one_minus_alpha * d * d;
        float avg;
        if (a->centered) {
            gavg[i] = gavg[i] * a->alpha + a->one_minus_alpha * d;
            avg = sqrtf(sq[i] + -1.0f * gavg[i] * gavg[i]);
        } else {
            avg = sqrtf(sq[i]);
        }
        avg = avg + a->eps;
        if (a->momentum) {
            buf[i] = buf[i] * a->mu + d / avg;
            p[i] = p[i] + a->step * buf[i];
        } else {
            p[i] = p[i] + a->step * d / avg;
        }
    }
}

/* Adam's moments as stored: subnormal values (|x| < FLT_MIN) become a zero of
 * the same sign. A moment whose gradient stays zero decays by β each step and
 * crosses into the subnormal range after a few hundred steps (m1, β1 = 0.9,
 * from 1e-3: ~800); arithmetic on subnormals takes a microcode assist of
 * ~100 cycles on x86, which made Adam 3x slower on a batch-1 MNIST step
 * (zero input pixels give zero weight gradients). The update of a parameter
 * is unchanged: step·m1/denom with |m1| < FLT_MIN and denom ≥ eps is below
 * 1e-30, rounded away next to any parameter above ~1e-22. */
static inline float flush_subnormal(float x) {
    return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x;
}

static void adam(int64_t n, float *p, const float *g, float *m1, float *m2, float *vmax,
                 const vikt__optim_args *a) {
    for (int64_t i = 0; i < n; i++) {
        if (a->decoupled) p[i] = p[i] * a->shrink;
        float d = coupled(g[i], p[i], a->decay, a->wd);
        m1[i] = flush_subnormal(m1[i] * a->beta1 + a->one_minus_b1 * d);
        m2[i] = flush_subnormal(m2[i] * a->beta2 + a->one_minus_b2 * d * d);
        float v = m2[i];
        if (a->amsgrad) v = vmax[i] = nan_max(vmax[i], m2[i]);
        float denom = sqrtf(v) / a->bc2_sqrt + a->eps;
        p[i] = p[i] + a->step * m1[i] / denom;
    }
}

const vikt__vec vikt__vec_scalar = {
    "scalar",         binary,           axpy,    acc_mul,  unary,   unary_grad,
    logsumexp,        log_softmax_row,  softmax_grad_row,  log_softmax_grad_row,
    sum,              dot,              sgd,     adagrad,  rmsprop, adam,
};
