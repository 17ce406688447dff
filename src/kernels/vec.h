/* Private to the library: the vector kernels behind the elementwise ops, the
 * activations, softmax and cross-entropy, the reductions and the optimizer
 * update loops.
 *
 * One table per instruction set: vec_scalar.c is the reference (plain C, the
 * loops the ops had before, libm's expf), vec_avx2.c, vec_avx512.c and
 * vec_neon.c instantiate vec_simd.h with their own intrinsics and flags. The
 * table in use is the one named like the GEMM kernel dispatch.c chose
 * (VIKT_ISA included), so `make check` runs every op on every ISA.
 *
 * What each ISA promises, checked by test/test_vec.c against the scalar table:
 *  - bitwise equal to scalar: binary arithmetic, the accumulations, relu,
 *    leaky ReLU, every backward that does not call exp, and the optimizer
 *    updates (same float operations in the same order, no FMA contraction;
 *    SIMD sqrt and division are correctly rounded like the scalar ones);
 *  - within a few ulp of scalar: exp and what is built on it (sigmoid, tanh,
 *    log-softmax, softmax, logsumexp), the vector files use vikt's own exp
 *    (see vec_simd.h), not libm's; GELU (own erf) within a few ulp of
 *    the result plus the scalar's own cancellation error in 1 + erff;
 *  - sums and dots accumulate in double in a fixed lane order, so a given
 *    ISA gives the same bits for the same input every time.
 * Kernels never read or write outside [0, n) of their arrays and take any
 * alignment. In-place use (y == x or y == a) is allowed wherever an output
 * has the length of its inputs. */
#ifndef VIKT_KERNELS_VEC_H
#define VIKT_KERNELS_VEC_H

#include "../vikt_internal.h"

#include <stdint.h>

/* Binary operators: y = a op b. */
enum { VIKT__VEC_ADD = 0, VIKT__VEC_SUB = 1, VIKT__VEC_MUL = 2, VIKT__VEC_DIV = 3 };

/* Unary functions of (x, s): y = f(x); s is leaky ReLU's slope and scale's factor. */
enum {
    VIKT__VEC_RELU = 0,
    VIKT__VEC_LEAKY_RELU = 1,
    VIKT__VEC_SIGMOID = 2,
    VIKT__VEC_TANH = 3,
    VIKT__VEC_EXP = 4,
    VIKT__VEC_SCALE = 5,
    VIKT__VEC_GELU = 6 /* x·Φ(x) with the exact (erf) normal CDF */
};

/* Hyperparameters of one optimizer update, already in float (the rules in
 * src/optim/optimizer.c compute them in double and cast, as torch does).
 * step is the negated step: −lr for SGD and RMSProp, −clr for AdaGrad,
 * −lr/(1−β₁ᵗ) for Adam. */
typedef struct vikt__optim_args {
    float step, wd, eps;
    float mu, keep;                           /* SGD, RMSProp: momentum; SGD: 1 − dampening */
    float beta1, one_minus_b1, beta2, one_minus_b2, bc2_sqrt, shrink; /* Adam(W) */
    float alpha, one_minus_alpha;             /* RMSProp */
    int decay;     /* coupled weight decay: d = g + wd·p */
    int decoupled; /* AdamW: p ← p·shrink first */
    int momentum, nesterov, fresh; /* SGD: fresh = the momentum buffer is not live yet */
    int centered, amsgrad;
} vikt__optim_args;

typedef struct vikt__vec {
    const char *name; /* the GEMM kernel's name: "scalar", "avx2", "avx512", "neon" */

    /* y[i] = a[i·sa] op b[i·sb]; sa and sb are 1 or 0 (0 broadcasts a[0] or b[0]). */
    void (*binary)(int op, int64_t n, const float *a, int64_t sa, const float *b, int64_t sb,
                   float *y);
    /* dst[i] += g[i]·s */
    void (*axpy)(int64_t n, float s, const float *g, float *dst);
    /* dst[i] += g[i]·b[i] */
    void (*acc_mul)(int64_t n, const float *g, const float *b, float *dst);

    /* y = f(x) for a VIKT__VEC_* function (s as above). */
    void (*unary)(int fn, int64_t n, const float *x, float s, float *y);
    /* gx += f'(x)·g for relu, leaky ReLU and GELU (from x), sigmoid and tanh
     * (from y). */
    void (*unary_grad)(int fn, int64_t n, const float *x, const float *y, const float *g,
                       float s, float *gx);

    /* log Σ exp(x − max) with *max = max x. Callers form (x − max) − result
     * rather than x − (max + result): for large logits the rounded sum
     * max + result would lose the result's low bits. When the max is not
     * finite the result is 0, so x − max gives what x − lse did. */
    float (*logsumexp)(const float *x, int64_t n, float *max);
    /* One row: y = (x − max) − logsumexp; y may be x. */
    void (*log_softmax_row)(int64_t n, const float *x, float *y);
    /* One row of softmax's backward: gx += y·(g − dot), dot = Σ g·y given. */
    void (*softmax_grad_row)(int64_t n, const float *y, const float *g, float dot, float *gx);
    /* One row of log-softmax's backward: gx += g − exp(y)·total, total = Σ g. */
    void (*log_softmax_grad_row)(int64_t n, const float *y, const float *g, float total,
                                 float *gx);

    /* Σ x and Σ a·b, accumulated in double. */
    double (*sum)(int64_t n, const float *x);
    double (*dot)(int64_t n, const float *a, const float *b);

    /* The optimizer rules over n elements of parameter p with gradient g. */
    void (*sgd)(int64_t n, float *p, const float *g, float *buf, const vikt__optim_args *a);
    void (*adagrad)(int64_t n, float *p, const float *g, float *sum, const vikt__optim_args *a);
    void (*rmsprop)(int64_t n, float *p, const float *g, float *sq, float *buf, float *gavg,
                    const vikt__optim_args *a);
    void (*adam)(int64_t n, float *p, const float *g, float *m1, float *m2, float *vmax,
                 const vikt__optim_args *a);
} vikt__vec;

extern const vikt__vec vikt__vec_scalar;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(VIKT_NO_SIMD)
#define VIKT__VEC_X86 1
extern const vikt__vec vikt__vec_avx2;
extern const vikt__vec vikt__vec_avx512;
#endif
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(VIKT_NO_SIMD)
#define VIKT__VEC_NEON 1
extern const vikt__vec vikt__vec_neon;
#endif

/* The table named like a usable GEMM kernel, or NULL. */
const vikt__vec *vikt__vec_find(const char *name);
/* The table for the GEMM kernel in use (chosen once per process). */
const vikt__vec *vikt__vec_get(void);

#endif
