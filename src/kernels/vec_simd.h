/* The vector kernels written once over a small set of lane operations; each
 * ISA file (vec_avx2.c, vec_avx512.c, vec_neon.c) defines them with its own
 * intrinsics and includes this file once, compiled with its own flags. An
 * ISA file provides:
 *
 *   VW                 lanes per vector; vf (floats), vm (lane masks)
 *   vf_load/vf_store   unaligned; vf_set(x) broadcasts
 *   vf_add sub mul div sqrt min max, vf_fma(a, b, c) = a·b + c (one rounding)
 *   vf_round (to nearest even), vf_trunc, vf_abs, vf_copysign(mag, sign)
 *   vm_gt vm_ge vm_lt (ordered: false on NaN), vm_nan(x), vm_or
 *   vf_sel(m, a, b)    m ? a : b per lane
 *   vf_pow2(k)         2^k for integral k in [-126, 127]
 *   isa_sum, isa_dot   Σ x and Σ a·b in double, fixed lane order
 *   VEC_TABLE, VEC_NAME the table's symbol and name
 *
 * Full vectors go straight through; the last n mod VW elements are copied
 * into lane buffers, run as one vector, and copied back, so nothing outside
 * [0, n) is touched and every element of a row goes through the same
 * instructions wherever it sits. */
#include <float.h>
#include <math.h>

/* ------------------------------------------------------------------- tails */

static inline void tail_in(float *lanes, const float *src, int64_t n, float pad) {
    int64_t i = 0;
    for (; i < n; i++) lanes[i] = src[i];
    for (; i < VW; i++) lanes[i] = pad;
}

static inline void tail_out(float *dst, const float *lanes, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = lanes[i];
}

/* ------------------------------------------------------------------- exp */

/* e^x in float, within 2 ulp of the correctly rounded value over the whole
 * range (test_vec.c sweeps it against expf).
 * Cody-Waite: x = n·ln2 + r with n = round(x·log2 e), |r| <= ln2/2, where
 * ln2 = LN2_HI + LN2_LO and LN2_HI has 9 significant bits so n·LN2_HI is
 * exact for every n reached; e^r = 1 + r + r²·P(r), P of degree 4 fitted here
 * (weighted least squares on Chebyshev nodes of [-ln2/2, ln2/2] for the
 * relative error of e^r, then rounded to float: 0.07 half-ulp before the
 * float evaluation). 2^n is applied as 2^n1·2^n2 with n1 = trunc(n/2), both
 * normal numbers, so results that are subnormal round once and results past
 * FLT_MAX overflow to +inf. x is clamped to [-104, 89] first (e^-104 rounds
 * to 0, e^89 overflows); NaN comes back as it went in. */
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO -2.12194440054690583e-4f
static inline vf v_exp(vf x) {
    vf xc = vf_min(vf_max(x, vf_set(-104.0f)), vf_set(89.0f));
    vf n = vf_round(vf_mul(xc, vf_set(1.44269504088896341f)));
    vf r = vf_fma(n, vf_set(-EXP_LN2_HI), xc);
    r = vf_fma(n, vf_set(-EXP_LN2_LO), r);
    vf p = vf_set(0.001381461275741458f);
    p = vf_fma(p, r, vf_set(0.008368710055947304f));
    p = vf_fma(p, r, vf_set(0.04166838899254799f));
    p = vf_fma(p, r, vf_set(0.1666652113199234f));
    p = vf_fma(p, r, vf_set(0.4999999403953552f));
    vf e = vf_add(vf_fma(vf_mul(r, r), p, r), vf_set(1.0f));
    vf n1 = vf_trunc(vf_mul(n, vf_set(0.5f)));
    vf y = vf_mul(vf_mul(e, vf_pow2(n1)), vf_pow2(vf_sub(n, n1)));
    return vf_sel(vm_nan(x), x, y);
}

/* vikt__sigmoid's formula: 1/(1 + e^-x) for x >= 0, e^x/(1 + e^x) below,
 * as one division of (x >= 0 ? 1 : e)/(1 + e) with e = e^-|x|. */
static inline vf v_sigmoid(vf x) {
    vf e = v_exp(vf_sub(vf_set(0.0f), vf_abs(x)));
    vf num = vf_sel(vm_ge(x, vf_set(0.0f)), vf_set(1.0f), e);
    return vf_div(num, vf_add(vf_set(1.0f), e));
}

/* vikt__tanh's formula: the odd polynomial below |x| = 0.25, (1 − t)/(1 + t)
 * with t = e^−2|x| above, the sign put back. */
static inline vf v_tanh(vf x) {
    vf a = vf_abs(x), s = vf_mul(a, a);
    vf q = vf_add(vf_set(-17.0f / 315), vf_mul(s, vf_set(62.0f / 2835)));
    q = vf_add(vf_set(2.0f / 15), vf_mul(s, q));
    q = vf_add(vf_set(-1.0f / 3), vf_mul(s, q));
    vf small = vf_add(a, vf_mul(vf_mul(a, s), q));
    vf t = v_exp(vf_mul(vf_set(-2.0f), a));
    vf big = vf_div(vf_sub(vf_set(1.0f), t), vf_add(vf_set(1.0f), t));
    return vf_copysign(vf_sel(vm_lt(a, vf_set(0.25f)), small, big), x);
}

/* Φ(x) = (1 + erf(x/√2))/2, the normal CDF, for GELU; *pdf_part receives
 * e^(−x²/2) for the gradient. x²/2 is carried as hi + lo (exact, by FMA), so
 * e^(−x²/2) = e^−hi·(1 − lo) keeps its relative accuracy far into the tail.
 * Below |x| = 2: erf(z) = z·P(z²), z = |x|/√2, P of degree 7; above:
 * erfc(z) = e^(−z²)·Q(1/z), Q of degree 9 (both fitted here by weighted
 * least squares for relative error, under 1 half-ulp before rounding), and
 * Φ = erfc/2 on the left, 1 − erfc/2 on the right. */
static inline vf v_phi(vf x, vf *gauss) {
    vf a = vf_min(vf_abs(x), vf_set(20.0f)); /* Φ is 0 or 1 in float beyond */
    vf h = vf_mul(vf_set(0.5f), a);
    vf hi = vf_mul(h, a), lo = vf_fma(h, a, vf_sub(vf_set(0.0f), hi));
    vf e = vf_mul(v_exp(vf_sub(vf_set(0.0f), hi)), vf_sub(vf_set(1.0f), lo));
    *gauss = e;
    vf z = vf_mul(a, vf_set(0.70710678118654752f)), s = vf_mul(z, z);
    vf p = vf_set(-6.3802258409850765e-06f);
    p = vf_fma(p, s, vf_set(9.706929267849773e-05f));
    p = vf_fma(p, s, vf_set(-0.0008184414473362267f));
    p = vf_fma(p, s, vf_set(0.00519169308245182f));
    p = vf_fma(p, s, vf_set(-0.026850366964936256f));
    p = vf_fma(p, s, vf_set(0.11283408850431442f));
    p = vf_fma(p, s, vf_set(-0.3761260211467743f));
    p = vf_fma(p, s, vf_set(1.1283791065216064f));
    vf half_erf = vf_mul(vf_set(0.5f), vf_mul(z, p));
    vf t = vf_div(vf_set(1.0f), vf_max(z, vf_set(1.0f))); /* z < 1 lanes are not used */
    vf q = vf_set(0.11708765476942062f);
    q = vf_fma(q, t, vf_set(-0.5899791121482849f));
    q = vf_fma(q, t, vf_set(1.285725474357605f));
    q = vf_fma(q, t, vf_set(-1.53605318069458f));
    q = vf_fma(q, t, vf_set(0.978919267654419f));
    q = vf_fma(q, t, vf_set(-0.127434641122818f));
    q = vf_fma(q, t, vf_set(-0.2631976902484894f));
    q = vf_fma(q, t, vf_set(-0.0017510508187115192f));
    q = vf_fma(q, t, vf_set(0.5642813444137573f));
    q = vf_fma(q, t, vf_set(-2.066235992970178e-06f));
    vf half_erfc = vf_mul(vf_set(0.5f), vf_mul(e, q));
    vm neg = vm_lt(x, vf_set(0.0f));
    vf tail = vf_sel(neg, half_erfc, vf_sub(vf_set(1.0f), half_erfc));
    vf mid = vf_sel(neg, vf_sub(vf_set(0.5f), half_erf), vf_add(vf_set(0.5f), half_erf));
    return vf_sel(vm_lt(a, vf_set(2.0f)), mid, tail);
}

/* GELU x·Φ(x); NaN stays NaN (the comparisons above are false for it). */
static inline vf v_gelu(vf x) {
    vf g;
    vf y = vf_mul(x, v_phi(x, &g));
    return vf_sel(vm_nan(x), x, y);
}

/* GELU's derivative Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π). */
static inline vf v_gelu_grad(vf x) {
    vf g, phi = v_phi(x, &g);
    vf d = vf_add(phi, vf_mul(vf_mul(x, vf_set(0.39894228040143268f)), g));
    return vf_sel(vm_nan(x), x, d);
}

/* ------------------------------------------------------------------ binary */

static inline vf bin_op(int op, vf a, vf b) {
    switch (op) {
    case VIKT__VEC_ADD: return vf_add(a, b);
    case VIKT__VEC_SUB: return vf_sub(a, b);
    case VIKT__VEC_MUL: return vf_mul(a, b);
    default: return vf_div(a, b);
    }
}

static inline vf load_or_set(const float *p, int64_t stride) {
    return stride ? vf_load(p) : vf_set(*p);
}

static void binary(int op, int64_t n, const float *a, int64_t sa, const float *b, int64_t sb,
                   float *y) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW)
        vf_store(y + i, bin_op(op, load_or_set(a + i * sa, sa), load_or_set(b + i * sb, sb)));
    if (i < n) {
        float la[VW], lb[VW];
        tail_in(la, sa ? a + i : a, sa ? n - i : 1, sa ? 1.0f : a[0]);
        tail_in(lb, sb ? b + i : b, sb ? n - i : 1, sb ? 1.0f : b[0]);
        vf_store(la, bin_op(op, vf_load(la), vf_load(lb)));
        tail_out(y + i, la, n - i);
    }
}

static void axpy(int64_t n, float s, const float *g, float *dst) {
    vf vs = vf_set(s);
    int64_t i = 0;
    for (; i + VW <= n; i += VW)
        vf_store(dst + i, vf_add(vf_load(dst + i), vf_mul(vf_load(g + i), vs)));
    if (i < n) {
        float lg[VW], ld[VW];
        tail_in(lg, g + i, n - i, 0.0f);
        tail_in(ld, dst + i, n - i, 0.0f);
        vf_store(ld, vf_add(vf_load(ld), vf_mul(vf_load(lg), vs)));
        tail_out(dst + i, ld, n - i);
    }
}

static void acc_mul(int64_t n, const float *g, const float *b, float *dst) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW)
        vf_store(dst + i, vf_add(vf_load(dst + i), vf_mul(vf_load(g + i), vf_load(b + i))));
    if (i < n) {
        float lg[VW], lb[VW], ld[VW];
        tail_in(lg, g + i, n - i, 0.0f);
        tail_in(lb, b + i, n - i, 0.0f);
        tail_in(ld, dst + i, n - i, 0.0f);
        vf_store(ld, vf_add(vf_load(ld), vf_mul(vf_load(lg), vf_load(lb))));
        tail_out(dst + i, ld, n - i);
    }
}

/* ------------------------------------------------------------------- unary */

static inline vf unary_op(int fn, vf x, vf s) {
    vf zero = vf_set(0.0f);
    switch (fn) {
    case VIKT__VEC_RELU: return vf_sel(vm_gt(x, zero), x, zero);
    case VIKT__VEC_LEAKY_RELU: return vf_sel(vm_gt(x, zero), x, vf_mul(s, x));
    case VIKT__VEC_SIGMOID: return v_sigmoid(x);
    case VIKT__VEC_TANH: return v_tanh(x);
    case VIKT__VEC_EXP: return v_exp(x);
    case VIKT__VEC_GELU: return v_gelu(x);
    default: return vf_mul(x, s);
    }
}

static void unary(int fn, int64_t n, const float *x, float s, float *y) {
    vf vs = vf_set(s);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) vf_store(y + i, unary_op(fn, vf_load(x + i), vs));
    if (i < n) {
        float lx[VW];
        tail_in(lx, x + i, n - i, 0.0f);
        vf_store(lx, unary_op(fn, vf_load(lx), vs));
        tail_out(y + i, lx, n - i);
    }
}

/* The gradient term f'(x)·g of relu, leaky ReLU, sigmoid and tanh. */
static inline vf unary_grad_op(int fn, vf x, vf y, vf g, vf s) {
    vf zero = vf_set(0.0f), one = vf_set(1.0f);
    switch (fn) {
    case VIKT__VEC_RELU: return vf_sel(vm_gt(x, zero), g, zero);
    case VIKT__VEC_LEAKY_RELU: return vf_sel(vm_gt(x, zero), g, vf_mul(s, g));
    case VIKT__VEC_SIGMOID: return vf_mul(vf_mul(g, y), vf_sub(one, y));
    case VIKT__VEC_GELU: return vf_mul(g, v_gelu_grad(x));
    default: return vf_mul(g, vf_sub(one, vf_mul(y, y)));
    }
}

static void unary_grad(int fn, int64_t n, const float *x, const float *y, const float *g,
                       float s, float *gx) {
    vf vs = vf_set(s);
    /* relu, leaky ReLU and GELU read x only, sigmoid and tanh y only */
    const float *in = fn == VIKT__VEC_SIGMOID || fn == VIKT__VEC_TANH ? y : x;
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf v = vf_load(in + i);
        vf_store(gx + i, vf_add(vf_load(gx + i), unary_grad_op(fn, v, v, vf_load(g + i), vs)));
    }
    if (i < n) {
        float lv[VW], lg[VW], ld[VW];
        tail_in(lv, in + i, n - i, 0.0f);
        tail_in(lg, g + i, n - i, 0.0f);
        tail_in(ld, gx + i, n - i, 0.0f);
        vf v = vf_load(lv);
        vf_store(ld, vf_add(vf_load(ld), unary_grad_op(fn, v, v, vf_load(lg), vs)));
        tail_out(gx + i, ld, n - i);
    }
}

/* ----------------------------------------------------------------- softmax */

/* Lanes added in index order, in double. */
static inline double lanes_sum(vf v) {
    float l[VW];
    vf_store(l, v);
    double s = 0;
    for (int i = 0; i < VW; i++) s += l[i];
    return s;
}

/* The running max ignores NaN, as the scalar x > mx ? x : mx does. */
static float row_max(const float *x, int64_t n) {
    vf m = vf_set(-INFINITY);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf v = vf_load(x + i);
        m = vf_sel(vm_gt(v, m), v, m);
    }
    float l[VW], mx = -INFINITY;
    vf_store(l, m);
    for (int k = 0; k < VW; k++) mx = l[k] > mx ? l[k] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

static float logsumexp(const float *x, int64_t n, float *max) {
    float mx = row_max(x, n);
    *max = mx;
    if (!isfinite(mx)) return 0.0f;
    vf vmax = vf_set(mx), acc = vf_set(0.0f);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) acc = vf_add(acc, v_exp(vf_sub(vf_load(x + i), vmax)));
    if (i < n) {
        float lx[VW];
        tail_in(lx, x + i, n - i, -INFINITY); /* e^-inf = 0 in the unused lanes */
        acc = vf_add(acc, v_exp(vf_sub(vf_load(lx), vmax)));
    }
    return (float)log(lanes_sum(acc));
}

static void log_softmax_row(int64_t n, const float *x, float *y) {
    float mx, ls = logsumexp(x, n, &mx);
    vf vmax = vf_set(mx), vl = vf_set(ls);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) vf_store(y + i, vf_sub(vf_sub(vf_load(x + i), vmax), vl));
    if (i < n) {
        float lx[VW];
        tail_in(lx, x + i, n - i, 0.0f);
        vf_store(lx, vf_sub(vf_sub(vf_load(lx), vmax), vl));
        tail_out(y + i, lx, n - i);
    }
}

static void softmax_grad_row(int64_t n, const float *y, const float *g, float dot, float *gx) {
    vf vd = vf_set(dot);
    int64_t i = 0;
    for (; i + VW <= n; i += VW)
        vf_store(gx + i, vf_add(vf_load(gx + i),
                                vf_mul(vf_load(y + i), vf_sub(vf_load(g + i), vd))));
    if (i < n) {
        float ly[VW], lg[VW], ld[VW];
        tail_in(ly, y + i, n - i, 0.0f);
        tail_in(lg, g + i, n - i, 0.0f);
        tail_in(ld, gx + i, n - i, 0.0f);
        vf_store(ld, vf_add(vf_load(ld), vf_mul(vf_load(ly), vf_sub(vf_load(lg), vd))));
        tail_out(gx + i, ld, n - i);
    }
}

static void log_softmax_grad_row(int64_t n, const float *y, const float *g, float total,
                                 float *gx) {
    vf vt = vf_set(total);
    int64_t i = 0;
    for (; i + VW <= n; i += VW)
        vf_store(gx + i, vf_add(vf_load(gx + i),
                                vf_sub(vf_load(g + i), vf_mul(v_exp(vf_load(y + i)), vt))));
    if (i < n) {
        float ly[VW], lg[VW], ld[VW];
        tail_in(ly, y + i, n - i, 0.0f);
        tail_in(lg, g + i, n - i, 0.0f);
        tail_in(ld, gx + i, n - i, 0.0f);
        vf_store(ld, vf_add(vf_load(ld), vf_sub(vf_load(lg), vf_mul(v_exp(vf_load(ly)), vt))));
        tail_out(gx + i, ld, n - i);
    }
}

/* --------------------------------------------------------------- optimizer */

/* Each update below is the scalar reference's expression tree, operation by
 * operation (mul then add, never a fused multiply-add), so parameters and
 * state come out bitwise equal to vec_scalar.c on every ISA: the optimizer
 * fixtures and a checkpoint taken on one machine resume the same on another. */

static inline vf v_coupled(vf g, vf p, const vikt__optim_args *a) {
    return a->decay ? vf_add(g, vf_mul(vf_set(a->wd), p)) : g;
}

/* Arrays of one update, NULL where the rule does not use one. */
#define OPT_ARRAYS 5
typedef struct {
    float *w[OPT_ARRAYS]; /* read and written */
    const float *g;
} opt_ptrs;

typedef void (*opt_block)(float *const *w, const float *g, const vikt__optim_args *a);

/* Run block over full vectors, then over the tail in lane buffers, inlined
 * with its block (no call through a pointer per vector: ~2 % on Adam, whose
 * two divisions and square root per value set its speed). */
#define OPT_INLINE static inline __attribute__((always_inline))
OPT_INLINE void opt_loop(int64_t n, opt_ptrs p, opt_block block, const vikt__optim_args *a) {
    int64_t i = 0;
    float *w[OPT_ARRAYS];
    for (; i + VW <= n; i += VW) {
        for (int k = 0; k < OPT_ARRAYS; k++) w[k] = p.w[k] ? p.w[k] + i : NULL;
        block(w, p.g + i, a);
    }
    if (i == n) return;
    float lanes[OPT_ARRAYS][VW], lg[VW];
    for (int k = 0; k < OPT_ARRAYS; k++) {
        w[k] = p.w[k] ? lanes[k] : NULL;
        if (p.w[k]) tail_in(lanes[k], p.w[k] + i, n - i, 1.0f);
    }
    tail_in(lg, p.g + i, n - i, 0.0f);
    block(w, lg, a);
    for (int k = 0; k < OPT_ARRAYS; k++)
        if (p.w[k]) tail_out(p.w[k] + i, lanes[k], n - i);
}

/* w: p, buf */
OPT_INLINE void sgd_block(float *const *w, const float *g, const vikt__optim_args *a) {
    vf p = vf_load(w[0]), d = v_coupled(vf_load(g), p, a);
    if (a->momentum) {
        vf mu = vf_set(a->mu);
        vf buf = a->fresh ? d : vf_add(vf_mul(vf_load(w[1]), mu), vf_mul(vf_set(a->keep), d));
        vf_store(w[1], buf);
        d = a->nesterov ? vf_add(d, vf_mul(mu, buf)) : buf;
    }
    vf_store(w[0], vf_add(p, vf_mul(vf_set(a->step), d)));
}

static void sgd(int64_t n, float *p, const float *g, float *buf, const vikt__optim_args *a) {
    opt_ptrs q = {{p, a->momentum ? buf : NULL, NULL, NULL, NULL}, g};
    opt_loop(n, q, sgd_block, a);
}

/* w: p, sum */
OPT_INLINE void adagrad_block(float *const *w, const float *g, const vikt__optim_args *a) {
    vf p = vf_load(w[0]), d = v_coupled(vf_load(g), p, a);
    vf sum = vf_add(vf_load(w[1]), vf_mul(d, d));
    vf_store(w[1], sum);
    vf std = vf_add(vf_sqrt(sum), vf_set(a->eps));
    vf_store(w[0], vf_add(p, vf_div(vf_mul(vf_set(a->step), d), std)));
}

static void adagrad(int64_t n, float *p, const float *g, float *sum, const vikt__optim_args *a) {
    opt_ptrs q = {{p, sum, NULL, NULL, NULL}, g};
    opt_loop(n, q, adagrad_block, a);
}

/* w: p, square_avg, momentum buffer, grad_avg */
OPT_INLINE void rmsprop_block(float *const *w, const float *g, const vikt__optim_args *a) {
    vf p = vf_load(w[0]), d = v_coupled(vf_load(g), p, a);
    vf alpha = vf_set(a->alpha), oma = vf_set(a->one_minus_alpha);
    vf sq = vf_add(vf_mul(vf_load(w[1]), alpha), vf_mul(vf_mul(oma, d), d));
    vf_store(w[1], sq);
    vf avg;
    if (a->centered) {
        vf gavg = vf_add(vf_mul(vf_load(w[3]), alpha), vf_mul(oma, d));
        vf_store(w[3], gavg);
        avg = vf_sqrt(vf_add(sq, vf_mul(vf_mul(vf_set(-1.0f), gavg), gavg)));
    } else {
        avg = vf_sqrt(sq);
    }
    avg = vf_add(avg, vf_set(a->eps));
    vf step = vf_set(a->step);
    if (a->momentum) {
        vf buf = vf_add(vf_mul(vf_load(w[2]), vf_set(a->mu)), vf_div(d, avg));
        vf_store(w[2], buf);
        vf_store(w[0], vf_add(p, vf_mul(step, buf)));
    } else {
        vf_store(w[0], vf_add(p, vf_div(vf_mul(step, d), avg)));
    }
}

static void rmsprop(int64_t n, float *p, const float *g, float *sq, float *buf, float *gavg,
                    const vikt__optim_args *a) {
    opt_ptrs q = {{p, sq, a->momentum ? buf : NULL, a->centered ? gavg : NULL, NULL}, g};
    opt_loop(n, q, rmsprop_block, a);
}

/* As vec_scalar.c's flush_subnormal (why there): |x| < FLT_MIN becomes ±0;
 * NaN compares false and stays. */
static inline vf v_flush_subnormal(vf x) {
    return vf_sel(vm_lt(vf_abs(x), vf_set(FLT_MIN)), vf_copysign(vf_set(0.0f), x), x);
}

/* w: p, exp_avg, exp_avg_sq, max_exp_avg_sq */
OPT_INLINE void adam_block(float *const *w, const float *g, const vikt__optim_args *a) {
    vf p = vf_load(w[0]);
    if (a->decoupled) p = vf_mul(p, vf_set(a->shrink));
    vf d = v_coupled(vf_load(g), p, a);
    vf m1 = v_flush_subnormal(
        vf_add(vf_mul(vf_load(w[1]), vf_set(a->beta1)), vf_mul(vf_set(a->one_minus_b1), d)));
    vf m2 = v_flush_subnormal(vf_add(vf_mul(vf_load(w[2]), vf_set(a->beta2)),
                                     vf_mul(vf_mul(vf_set(a->one_minus_b2), d), d)));
    vf_store(w[1], m1);
    vf_store(w[2], m2);
    vf v = m2;
    if (a->amsgrad) { /* torch.maximum: NaN in either operand gives NaN */
        vf old = vf_load(w[3]);
        v = vf_sel(vm_or(vm_gt(old, m2), vm_nan(old)), old, m2);
        vf_store(w[3], v);
    }
    vf denom = vf_add(vf_div(vf_sqrt(v), vf_set(a->bc2_sqrt)), vf_set(a->eps));
    vf_store(w[0], vf_add(p, vf_div(vf_mul(vf_set(a->step), m1), denom)));
}

static void adam(int64_t n, float *p, const float *g, float *m1, float *m2, float *vmax,
                 const vikt__optim_args *a) {
    opt_ptrs q = {{p, m1, m2, a->amsgrad ? vmax : NULL, NULL}, g};
    opt_loop(n, q, adam_block, a);
}

const vikt__vec VEC_TABLE = {
    VEC_NAME,         binary,           axpy,    acc_mul,  unary,   unary_grad,
    logsumexp,        log_softmax_row,  softmax_grad_row,  log_softmax_grad_row,
    isa_sum,          isa_dot,          sgd,     adagrad,  rmsprop, adam,
};
