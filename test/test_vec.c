/* The vector kernels (src/kernels/vec.h) against the scalar reference table.
 *
 * Every kernel runs on awkward lengths (around every vector width), from
 * unaligned pointers, with a sentinel after the end of every array it may
 * write, on inputs that include NaN, ±Inf, ±0 and subnormals. Kernels the
 * header promises bitwise must give the reference's bits (NaN for NaN);
 * exp-based ones stay within the ulp bounds below, and vikt's exp is swept
 * densely against libm's expf over the whole float range.
 *
 * With VIKT_ISA set (as `make check` does, once per ISA) the table for that
 * ISA is tested; without, every usable one. VIKT_TEST_QUICK=1 (qemu) sweeps
 * exp more coarsely. Links the objects: the tables are internal. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/kernels/vec.h"
#include "support.h"

static const char *const isa_names[] = {"scalar", "avx2", "avx512", "neon"};

static int tables_under_test(const vikt__vec **out) {
    if (getenv("VIKT_ISA")) {
        out[0] = vikt__vec_get();
        return 1;
    }
    int n = 0;
    for (size_t i = 0; i < sizeof isa_names / sizeof isa_names[0]; i++) {
        const vikt__vec *v = vikt__vec_find(isa_names[i]);
        if (v) out[n++] = v;
    }
    return n;
}

static int quick(void) { return getenv("VIKT_TEST_QUICK") && *getenv("VIKT_TEST_QUICK") == '1'; }

static const int64_t lengths[] = {0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 65, 127, 255, 257};
#define NLEN ((int)(sizeof lengths / sizeof lengths[0]))
#define MAXN 257
#define PAD 4          /* floats before (for misalignment) and after (sentinel) */
#define SENTINEL 12345.678f

/* ------------------------------------------------------------ comparison */

static int64_t ordered(float f) {
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i < 0 ? -(int64_t)(i & 0x7fffffff) : (int64_t)i;
}

/* Distance in units in the last place; NaN vs NaN is 0, NaN vs number huge. */
static int64_t ulps(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INT64_MAX;
    int64_t d = ordered(a) - ordered(b);
    return d < 0 ? -d : d;
}

static void expect_close(const char *what, const char *isa, int64_t n, const float *got,
                         const float *want, int64_t max_ulps) {
    for (int64_t i = 0; i < n; i++) {
        int64_t d = ulps(got[i], want[i]);
        if (d > max_ulps) {
            print_error("%s [%s] n=%lld i=%lld: got %.9g want %.9g (%lld ulp > %lld)\n", what,
                        isa, (long long)n, (long long)i, (double)got[i], (double)want[i],
                        (long long)(d == INT64_MAX ? -1 : d), (long long)max_ulps);
            fail();
        }
    }
}

static void expect_sentinel(const char *what, const char *isa, const float *after, int64_t n) {
    for (int k = 0; k < PAD; k++)
        if (after[k] != SENTINEL) {
            print_error("%s [%s] n=%lld wrote past the end\n", what, isa, (long long)n);
            fail();
        }
}

/* ------------------------------------------------------------ inputs */

/* An array with PAD floats either side; data() points at offset off. */
typedef struct {
    float buf[MAXN + 3 * PAD];
} arr;

static float *at(arr *a, int off) { return a->buf + PAD + off; }

static void arm(arr *a, int off, int64_t n) {
    for (int i = 0; i < MAXN + 3 * PAD; i++) a->buf[i] = SENTINEL;
    (void)off, (void)n;
}

/* Random values in [lo, hi], and with specials mixed in every few elements. */
static void fill(float *x, int64_t n, uint32_t seed, float lo, float hi, int specials) {
    vt_fill(x, n, seed, lo, hi);
    if (!specials) return;
    static const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -1e-40f, 88.0f};
    for (int64_t i = 3; i < n; i += 11) x[i] = sp[(i / 11) % 8];
}

/* ------------------------------------------------------------ binary */

static void binary_and_accumulate(void **state) {
    (void)state;
    const vikt__vec *tabs[4], *ref = &vikt__vec_scalar;
    int nt = tables_under_test(tabs);
    static arr a, b, y, want, g, d, dwant;
    for (int t = 0; t < nt; t++)
        for (int li = 0; li < NLEN; li++)
            for (int off = 0; off < 2; off++) {
                int64_t n = lengths[li];
                arm(&a, off, n), arm(&b, off, n);
                fill(at(&a, off), n, 1 + (uint32_t)n, -3, 3, 1);
                fill(at(&b, off), n, 2 + (uint32_t)n, -3, 3, 1);
                if (n == 0) at(&a, off)[0] = at(&b, off)[0] = 1.5f; /* read for stride 0 */
                for (int op = 0; op < 4; op++)
                    for (int st = 0; st < 3; st++) {
                        int64_t sa = st != 2, sb = st != 1;
                        arm(&y, off, n), arm(&want, off, n);
                        ref->binary(op, n, at(&a, off), sa, at(&b, off), sb, at(&want, off));
                        tabs[t]->binary(op, n, at(&a, off), sa, at(&b, off), sb, at(&y, off));
                        expect_close("binary", tabs[t]->name, n, at(&y, off), at(&want, off), 0);
                        expect_sentinel("binary", tabs[t]->name, at(&y, off) + n, n);
                    }
                /* in place: y = a + b into a's copy */
                arm(&y, off, n);
                memcpy(at(&y, off), at(&a, off), (size_t)n * sizeof(float));
                tabs[t]->binary(VIKT__VEC_MUL, n, at(&y, off), 1, at(&b, off), 1, at(&y, off));
                ref->binary(VIKT__VEC_MUL, n, at(&a, off), 1, at(&b, off), 1, at(&want, off));
                expect_close("binary in place", tabs[t]->name, n, at(&y, off), at(&want, off), 0);
                /* axpy and acc_mul */
                arm(&g, off, n), arm(&d, off, n), arm(&dwant, off, n);
                fill(at(&g, off), n, 3 + (uint32_t)n, -2, 2, 1);
                fill(at(&d, off), n, 4 + (uint32_t)n, -2, 2, 0);
                memcpy(at(&dwant, off), at(&d, off), (size_t)n * sizeof(float));
                tabs[t]->axpy(n, -0.37f, at(&g, off), at(&d, off));
                ref->axpy(n, -0.37f, at(&g, off), at(&dwant, off));
                expect_close("axpy", tabs[t]->name, n, at(&d, off), at(&dwant, off), 0);
                expect_sentinel("axpy", tabs[t]->name, at(&d, off) + n, n);
                tabs[t]->acc_mul(n, at(&g, off), at(&a, off), at(&d, off));
                ref->acc_mul(n, at(&g, off), at(&a, off), at(&dwant, off));
                expect_close("acc_mul", tabs[t]->name, n, at(&d, off), at(&dwant, off), 0);
                expect_sentinel("acc_mul", tabs[t]->name, at(&d, off) + n, n);
            }
}

/* ------------------------------------------------------------ unary */

/* Bound on the distance from the scalar reference, per function. */
static int64_t unary_ulps(int fn) {
    switch (fn) {
    case VIKT__VEC_EXP: return 2;
    case VIKT__VEC_SIGMOID: return 4;
    case VIKT__VEC_TANH: return 6;
    default: return 0;
    }
}

/* GELU: the scalar reference computes 1 + erff(x/√2), which cancels for
 * negative x (absolute error ~2^-24 in Φ, so ~|x|·2^-25 in x·Φ); allow that
 * plus a few ulp of the result. */
static void expect_gelu(const char *what, const char *isa, int64_t n, const float *x,
                        const float *g, const float *got, const float *want) {
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) {
            if (!(isnan(got[i]) && isnan(want[i]))) fail_msg("%s [%s] i=%lld NaN", what, isa, (long long)i);
            continue;
        }
        double scale = g ? fabs(g[i]) : 1.0;
        double tol = 8 * ldexp(fabs(want[i]), -24) + ldexp(1.0 + fabs(x[i]), -23) * scale;
        if (!(fabs((double)got[i] - want[i]) <= tol) && got[i] != want[i]) {
            print_error("%s [%s] n=%lld x=%.9g: got %.9g want %.9g\n", what, isa, (long long)n,
                        (double)x[i], (double)got[i], (double)want[i]);
            fail();
        }
    }
}

static void unary_and_gradients(void **state) {
    (void)state;
    const vikt__vec *tabs[4], *ref = &vikt__vec_scalar;
    int nt = tables_under_test(tabs);
    static arr x, y, want, g, d, dwant;
    static const char *const names[] = {"relu", "leaky_relu", "sigmoid", "tanh",
                                        "exp",  "scale",      "gelu"};
    for (int t = 0; t < nt; t++)
        for (int li = 0; li < NLEN; li++)
            for (int off = 0; off < 2; off++) {
                int64_t n = lengths[li];
                arm(&x, off, n);
                fill(at(&x, off), n, 7 + (uint32_t)n, -12, 12, 1);
                for (int fn = 0; fn <= VIKT__VEC_GELU; fn++) {
                    arm(&y, off, n), arm(&want, off, n);
                    ref->unary(fn, n, at(&x, off), 0.01f, at(&want, off));
                    tabs[t]->unary(fn, n, at(&x, off), 0.01f, at(&y, off));
                    if (fn == VIKT__VEC_GELU)
                        expect_gelu(names[fn], tabs[t]->name, n, at(&x, off), NULL, at(&y, off),
                                    at(&want, off));
                    else
                        expect_close(names[fn], tabs[t]->name, n, at(&y, off), at(&want, off),
                                     unary_ulps(fn));
                    expect_sentinel(names[fn], tabs[t]->name, at(&y, off) + n, n);
                    if (fn == VIKT__VEC_EXP || fn == VIKT__VEC_SCALE) continue;
                    /* the gradient from the reference's y, so only f' differs */
                    arm(&g, off, n), arm(&d, off, n), arm(&dwant, off, n);
                    fill(at(&g, off), n, 8 + (uint32_t)n, -1, 1, 0);
                    fill(at(&d, off), n, 9 + (uint32_t)n, -1, 1, 0);
                    memcpy(at(&dwant, off), at(&d, off), (size_t)n * sizeof(float));
                    ref->unary_grad(fn, n, at(&x, off), at(&want, off), at(&g, off), 0.01f,
                                    at(&dwant, off));
                    tabs[t]->unary_grad(fn, n, at(&x, off), at(&want, off), at(&g, off), 0.01f,
                                        at(&d, off));
                    if (fn == VIKT__VEC_GELU)
                        expect_gelu("gelu grad", tabs[t]->name, n, at(&x, off), at(&g, off),
                                    at(&d, off), at(&dwant, off));
                    else
                        expect_close(names[fn], tabs[t]->name, n, at(&d, off), at(&dwant, off), 0);
                    expect_sentinel(names[fn], tabs[t]->name, at(&d, off) + n, n);
                }
            }
}

/* ------------------------------------------------------------ exp sweep */

static float vec_exp1(const vikt__vec *v, float x) {
    float y;
    v->unary(VIKT__VEC_EXP, 1, &x, 0.0f, &y);
    return y;
}

/* Every step-th float from -104 to 89 (both signs of the bit pattern), plus
 * the edges, 256 at a time through the kernel; max distance to expf. */
static void exp_ulp_sweep(void **state) {
    (void)state;
    const vikt__vec *tabs[4];
    int nt = tables_under_test(tabs);
    const uint32_t step = quick() ? 40009u : 997u; /* primes: every mantissa pattern region */
    static float xs[256], ys[256];
    for (int t = 0; t < nt; t++) {
        if (tabs[t] == &vikt__vec_scalar) continue; /* scalar's exp is expf itself */
        int64_t worst = 0;
        float worst_x = 0;
        int k = 0;
        /* positive patterns up to 89, negative down to -104 */
        for (int sign = 0; sign < 2; sign++) {
            uint32_t hi = sign ? 0xC2D00000u : 0x42B20000u; /* -104, 89 */
            for (uint32_t b = sign ? 0x80000000u : 0; ; b += step) {
                if (b > hi) b = hi;
                float x;
                memcpy(&x, &b, sizeof x);
                xs[k++] = x;
                int last = b == hi;
                if (k == 256 || last) {
                    tabs[t]->unary(VIKT__VEC_EXP, k, xs, 0.0f, ys);
                    for (int i = 0; i < k; i++) {
                        int64_t d = ulps(ys[i], expf(xs[i]));
                        if (d > worst) worst = d, worst_x = xs[i];
                    }
                    k = 0;
                }
                if (last) break;
            }
        }
        print_message("exp [%s]: max %lld ulp from expf (at %.9g)\n", tabs[t]->name,
                      (long long)worst, (double)worst_x);
        assert_true(worst <= 2);
        /* edges: overflow, underflow into and out of the subnormals, specials */
        static const float edges[] = {88.7228317f, 88.7228394f, 88.72284f, 88.7229f, 89.0f,
                                      100.0f, FLT_MAX, -87.3365402f, -87.34f, -100.0f,
                                      -103.27893f, -103.972077f, -103.98f, -104.0f, -200.0f,
                                      -FLT_MAX, 1e-40f, -1e-40f, 1e-45f, 0.0f, -0.0f,
                                      1.0f, -1.0f, 0.5f, 0.34657359f, -0.34657359f};
        for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
            float got = vec_exp1(tabs[t], edges[i]), want = expf(edges[i]);
            if (ulps(got, want) > 2) {
                print_error("exp [%s] (%.9g): got %.9g want %.9g\n", tabs[t]->name,
                            (double)edges[i], (double)got, (double)want);
                fail();
            }
        }
        assert_true(vec_exp1(tabs[t], INFINITY) == INFINITY);
        assert_true(vec_exp1(tabs[t], -INFINITY) == 0.0f);
        assert_true(isnan(vec_exp1(tabs[t], NAN)));
        assert_true(vec_exp1(tabs[t], 0.0f) == 1.0f);
        assert_true(vec_exp1(tabs[t], 88.73f) == INFINITY);
        assert_true(vec_exp1(tabs[t], 1e-45f) == 1.0f);
    }
}

/* GELU and its derivative over [-16, 16] in steps of 2^-10, against the
 * scalar reference (tolerance as expect_gelu). */
static void gelu_sweep(void **state) {
    (void)state;
    const vikt__vec *tabs[4], *ref = &vikt__vec_scalar;
    int nt = tables_under_test(tabs);
    enum { CH = 1024 };
    static float x[CH], y[CH], want[CH], g[CH], d[CH], dwant[CH];
    for (int t = 0; t < nt; t++)
        for (int c = -16; c < 16; c++) {
            for (int i = 0; i < CH; i++) {
                x[i] = (float)c + (float)i / CH;
                g[i] = 1.0f;
                d[i] = dwant[i] = 0.0f;
            }
            tabs[t]->unary(VIKT__VEC_GELU, CH, x, 0.0f, y);
            ref->unary(VIKT__VEC_GELU, CH, x, 0.0f, want);
            expect_gelu("gelu sweep", tabs[t]->name, CH, x, NULL, y, want);
            tabs[t]->unary_grad(VIKT__VEC_GELU, CH, x, y, g, 0.0f, d);
            ref->unary_grad(VIKT__VEC_GELU, CH, x, want, g, 0.0f, dwant);
            expect_gelu("gelu grad sweep", tabs[t]->name, CH, x, g, d, dwant);
            if (tabs[t] == ref) continue;
            /* the vector GELU against the exact value (double erfc): relative
             * error within 20 ulp wherever the result is normal, unlike the
             * reference's 1 + erff, which is 0 below x = -5.9 */
            for (int i = 0; i < CH; i++) {
                double phi = 0.5 * erfc(-(double)x[i] / sqrt(2.0));
                double yt = x[i] * phi;
                double dt = phi + x[i] * exp(-0.5 * (double)x[i] * x[i]) / sqrt(2 * 3.14159265358979323846);
                if (fabs(yt) > 1e-37 && fabs(y[i] - yt) > 20 * ldexp(fabs(yt), -23))
                    fail_msg("gelu [%s] (%.9g) = %.9g, exact %.9g", tabs[t]->name, (double)x[i],
                             (double)y[i], yt);
                if (fabs(d[i] - dt) > 64 * ldexp(fmax(fabs(dt), 1e-2), -23))
                    fail_msg("gelu' [%s] (%.9g) = %.9g, exact %.9g", tabs[t]->name,
                             (double)x[i], (double)d[i], dt);
            }
        }
}

/* ------------------------------------------------------------ softmax rows */

static void expect_abs(const char *what, const char *isa, int64_t n, const float *got,
                       const float *want, float tol) {
    for (int64_t i = 0; i < n; i++) {
        int both_nan = isnan(got[i]) && isnan(want[i]);
        if (!both_nan && !(fabsf(got[i] - want[i]) <= tol * (1.0f + fabsf(want[i]))) &&
            got[i] != want[i]) {
            print_error("%s [%s] n=%lld i=%lld: got %.9g want %.9g\n", what, isa, (long long)n,
                        (long long)i, (double)got[i], (double)want[i]);
            fail();
        }
    }
}

static void softmax_rows_and_sums(void **state) {
    (void)state;
    const vikt__vec *tabs[4], *ref = &vikt__vec_scalar;
    int nt = tables_under_test(tabs);
    static arr x, y, want, g, d, dwant;
    for (int t = 0; t < nt; t++)
        for (int li = 0; li < NLEN; li++)
            for (int off = 0; off < 2; off++)
                for (int special = 0; special < 3; special++) {
                    int64_t n = lengths[li];
                    const char *isa = tabs[t]->name;
                    arm(&x, off, n);
                    fill(at(&x, off), n, 11 + (uint32_t)n, -30, 30, 0);
                    if (special && n > 2) at(&x, off)[n / 2] = special == 1 ? NAN : INFINITY;
                    float mx, mw, lg = tabs[t]->logsumexp(at(&x, off), n, &mx);
                    float lw = ref->logsumexp(at(&x, off), n, &mw);
                    assert_true(mx == mw || (isnan(mx) && isnan(mw)));
                    expect_abs("logsumexp", isa, 1, &lg, &lw, 4e-6f);
                    arm(&y, off, n), arm(&want, off, n);
                    tabs[t]->log_softmax_row(n, at(&x, off), at(&y, off));
                    ref->log_softmax_row(n, at(&x, off), at(&want, off));
                    expect_abs("log_softmax_row", isa, n, at(&y, off), at(&want, off), 4e-6f);
                    expect_sentinel("log_softmax_row", isa, at(&y, off) + n, n);
                    /* backward rows from the reference's y */
                    arm(&g, off, n), arm(&d, off, n), arm(&dwant, off, n);
                    fill(at(&g, off), n, 12 + (uint32_t)n, -1, 1, 0);
                    fill(at(&d, off), n, 13 + (uint32_t)n, -1, 1, 0);
                    memcpy(at(&dwant, off), at(&d, off), (size_t)n * sizeof(float));
                    tabs[t]->log_softmax_grad_row(n, at(&want, off), at(&g, off), 0.7f, at(&d, off));
                    ref->log_softmax_grad_row(n, at(&want, off), at(&g, off), 0.7f, at(&dwant, off));
                    expect_abs("log_softmax_grad_row", isa, n, at(&d, off), at(&dwant, off), 1e-6f);
                    expect_sentinel("log_softmax_grad_row", isa, at(&d, off) + n, n);
                    tabs[t]->softmax_grad_row(n, at(&want, off), at(&g, off), 0.3f, at(&d, off));
                    ref->softmax_grad_row(n, at(&want, off), at(&g, off), 0.3f, at(&dwant, off));
                    expect_abs("softmax_grad_row", isa, n, at(&d, off), at(&dwant, off), 1e-6f);
                    /* sums in double: any order is within a few double ulps */
                    double s = tabs[t]->sum(n, at(&x, off)), sw = ref->sum(n, at(&x, off));
                    double p = tabs[t]->dot(n, at(&x, off), at(&g, off));
                    double pw = ref->dot(n, at(&x, off), at(&g, off));
                    if (special) {
                        assert_true(isnan(s) == isnan(sw) && isnan(p) == isnan(pw));
                        if (!isnan(sw)) assert_true(s == sw);
                    } else {
                        assert_true(fabs(s - sw) <= 1e-12 * (1 + fabs(sw)) * (double)n);
                        assert_true(fabs(p - pw) <= 1e-12 * (1 + fabs(pw)) * (double)n);
                    }
                    /* same bits on a second call: fixed order */
                    assert_true(tabs[t]->sum(n, at(&x, off)) == s || isnan(s));
                }
}

/* ------------------------------------------------------------ optimizers */

enum { P, M1, M2, VMAX, NARR };

typedef struct {
    arr a[NARR];
    arr g;
} opt_state;

static void opt_fill(opt_state *s, int off, int64_t n, uint32_t seed) {
    for (int k = 0; k < NARR; k++) {
        arm(&s->a[k], off, n);
        fill(at(&s->a[k], off), n, seed + (uint32_t)k, k == P ? -1.0f : 0.0f, 1.0f, 0);
    }
    arm(&s->g, off, n);
    fill(at(&s->g, off), n, seed + 17, -1, 1, 0);
    /* a NaN and an Inf gradient (when there is room) must propagate the same way */
    if (n > 5) at(&s->g, off)[n - 2] = NAN, at(&s->g, off)[1] = INFINITY;
}

static void opt_compare(const char *what, const char *isa, opt_state *got, opt_state *want,
                        int off, int64_t n) {
    for (int k = 0; k < NARR; k++) {
        expect_close(what, isa, n, at(&got->a[k], off), at(&want->a[k], off), 0);
        expect_sentinel(what, isa, at(&got->a[k], off) + n, n);
    }
}

typedef void (*opt_run)(const vikt__vec *v, int64_t n, opt_state *s, int off,
                        const vikt__optim_args *a);

static void run_sgd(const vikt__vec *v, int64_t n, opt_state *s, int off,
                    const vikt__optim_args *a) {
    v->sgd(n, at(&s->a[P], off), at(&s->g, off), at(&s->a[M1], off), a);
}
static void run_adagrad(const vikt__vec *v, int64_t n, opt_state *s, int off,
                        const vikt__optim_args *a) {
    v->adagrad(n, at(&s->a[P], off), at(&s->g, off), at(&s->a[M1], off), a);
}
static void run_rmsprop(const vikt__vec *v, int64_t n, opt_state *s, int off,
                        const vikt__optim_args *a) {
    v->rmsprop(n, at(&s->a[P], off), at(&s->g, off), at(&s->a[M1], off), at(&s->a[M2], off),
               at(&s->a[VMAX], off), a);
}
static void run_adam(const vikt__vec *v, int64_t n, opt_state *s, int off,
                     const vikt__optim_args *a) {
    v->adam(n, at(&s->a[P], off), at(&s->g, off), at(&s->a[M1], off), at(&s->a[M2], off),
            at(&s->a[VMAX], off), a);
}

static void optimizer_updates(void **state) {
    (void)state;
    const vikt__vec *tabs[4], *ref = &vikt__vec_scalar;
    int nt = tables_under_test(tabs);
    static opt_state got, want;
    static const opt_run runs[] = {run_sgd, run_adagrad, run_rmsprop, run_adam};
    static const char *const names[] = {"sgd", "adagrad", "rmsprop", "adam"};
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < 4; r++)
            for (int flags = 0; flags < 32; flags++)
                for (int li = 0; li < NLEN; li++) {
                    int64_t n = lengths[li];
                    int off = (flags + li) & 1;
                    vikt__optim_args a;
                    memset(&a, 0, sizeof a);
                    a.step = -1e-2f, a.wd = 0.05f, a.eps = 1e-8f, a.mu = 0.9f, a.keep = 0.75f;
                    a.beta1 = 0.9f, a.one_minus_b1 = 0.1f, a.beta2 = 0.999f;
                    a.one_minus_b2 = 0.001f, a.bc2_sqrt = 0.0447f, a.shrink = 0.9995f;
                    a.alpha = 0.99f, a.one_minus_alpha = 0.01f;
                    a.decay = flags & 1, a.momentum = (flags >> 1) & 1;
                    a.nesterov = a.momentum && ((flags >> 2) & 1), a.fresh = (flags >> 3) & 1;
                    a.centered = (flags >> 2) & 1, a.amsgrad = (flags >> 3) & 1;
                    a.decoupled = (flags >> 4) & 1;
                    if (a.decoupled) a.decay = 0;
                    opt_fill(&got, off, n, 100 + (uint32_t)(li + 16 * flags));
                    opt_fill(&want, off, n, 100 + (uint32_t)(li + 16 * flags));
                    runs[r](ref, n, &want, off, &a);
                    runs[r](tabs[t], n, &got, off, &a);
                    opt_compare(names[r], tabs[t]->name, &got, &want, off, n);
                }
}

/* A moment that decays into the subnormal range is stored as a zero of its
 * sign (subnormal arithmetic is ~100x slower on x86); normal values, NaN and
 * the parameter's update are untouched, the same on every table. */
static void adam_flushes_subnormal_moments(void **state) {
    (void)state;
    const vikt__vec *tabs[5];
    int nt = tables_under_test(tabs);
    tabs[nt++] = &vikt__vec_scalar;
    enum { N = 37 };
    for (int t = 0; t < nt; t++) {
        float p[N], g[N], m1[N], m2[N];
        for (int i = 0; i < N; i++) {
            float sign = (i & 1) ? -1.0f : 1.0f;
            p[i] = 0.5f + (float)i, g[i] = 0.0f;
            m1[i] = sign * FLT_MIN * (i % 3 == 0 ? 1.05f : 4.0f); /* ·0.9: subnormal or not */
            m2[i] = FLT_MIN * (i % 4 == 0 ? 1.0005f : 2.0f);     /* ·0.999 likewise */
        }
        m1[N - 1] = NAN;
        vikt__optim_args a;
        memset(&a, 0, sizeof a);
        a.step = -1e-3f, a.eps = 1e-8f, a.beta1 = 0.9f, a.one_minus_b1 = 0.1f;
        a.beta2 = 0.999f, a.one_minus_b2 = 0.001f, a.bc2_sqrt = 1.0f;
        tabs[t]->adam(N, p, g, m1, m2, NULL, &a);
        for (int i = 0; i < N - 1; i++) {
            if (i % 3 == 0) {
                assert_true(m1[i] == 0.0f);
                assert_int_equal(!!signbit(m1[i]), i & 1);
            } else {
                assert_true(fabsf(m1[i]) >= FLT_MIN);
            }
            if (i % 4 == 0) assert_true(m2[i] == 0.0f && !signbit(m2[i]));
            else assert_true(m2[i] >= FLT_MIN);
            assert_true(p[i] == 0.5f + (float)i); /* updates below 1e-30 round away */
        }
        assert_true(isnan(m1[N - 1]) && isnan(p[N - 1]));
    }
}

/* ------------------------------------------------------------ selection */

static void table_follows_gemm_kernel(void **state) {
    (void)state;
    assert_string_equal(vikt__vec_get()->name, vikt_gemm_isa());
    assert_ptr_equal(vikt__vec_find("scalar"), &vikt__vec_scalar);
    assert_null(vikt__vec_find("no-such-isa"));
    assert_null(vikt__vec_find(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(binary_and_accumulate),  cmocka_unit_test(unary_and_gradients),
        cmocka_unit_test(exp_ulp_sweep),          cmocka_unit_test(gelu_sweep),
        cmocka_unit_test(softmax_rows_and_sums),
        cmocka_unit_test(optimizer_updates),      cmocka_unit_test(adam_flushes_subnormal_moments),
             cmocka_unit_test(table_follows_gemm_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
