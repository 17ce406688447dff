/* Summary statistics of a float array (vikt_stats_compute), in double.
 *
 * Two passes: counts, extremes, the sum and the sum of squares; then the
 * squared deviations from the mean. The second pass uses the corrected
 * two-pass formula (Chan, Golub and LeVeque 1983): M2 = Σd² − (Σd)²/n with
 * d = x − mean, where the second term cancels the error the rounded mean
 * leaves in the first. Sums go through blocks of BLOCK values, so a float's
 * contribution meets rounding error from about BLOCK + n/BLOCK additions, not
 * n: for a billion values that is 1e5 × 2^-53 relative, far below float32's
 * own resolution. */
#include "vikt_internal.h"

#include <math.h>

#define BLOCK 1024

typedef struct totals {
    int64_t finite, nan, inf, zero;
    double sum, sumsq, min, max;
} totals;

static void first_pass(const float *x, int64_t n, totals *t) {
    t->min = INFINITY, t->max = -INFINITY;
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t end = n - start < BLOCK ? n : start + BLOCK;
        double sum = 0, sumsq = 0;
        for (int64_t i = start; i < end; i++) {
            double v = x[i];
            if (isnan(v)) {
                t->nan++;
                continue;
            }
            if (isinf(v)) {
                t->inf++;
                continue;
            }
            t->finite++;
            t->zero += v == 0;
            sum += v, sumsq += v * v;
            if (v < t->min) t->min = v;
            if (v > t->max) t->max = v;
        }
        t->sum += sum, t->sumsq += sumsq;
    }
}

/* Σ(x − mean)² over the finite values, corrected by the first-order error
 * term (Σ(x − mean))²/count; never negative. */
static double squared_deviations(const float *x, int64_t n, double mean, int64_t count) {
    double dev = 0, dev2 = 0;
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t end = n - start < BLOCK ? n : start + BLOCK;
        double d1 = 0, d2 = 0;
        for (int64_t i = start; i < end; i++) {
            if (!isfinite(x[i])) continue;
            double d = (double)x[i] - mean;
            d1 += d, d2 += d * d;
        }
        dev += d1, dev2 += d2;
    }
    double m2 = dev2 - dev * dev / (double)count;
    return m2 > 0 ? m2 : 0;
}

int vikt_stats_compute(const float *x, int64_t n, vikt_stats *out) {
    if (!out || (!x && n > 0)) return VIKT_ERR_NULL;
    if (n < 0) return VIKT_ERR_ARG;
    totals t = {0, 0, 0, 0, 0, 0, 0, 0};
    first_pass(x, n, &t);
    vikt_stats s;
    s.count = n;
    s.finite_count = t.finite;
    s.nan_count = t.nan;
    s.inf_count = t.inf;
    s.zero_count = t.zero;
    s.zero_fraction = n ? (double)t.zero / (double)n : 0;
    s.l2_norm = sqrt(t.sumsq);
    s.mean = s.std = s.std_unbiased = s.min = s.max = NAN;
    if (t.finite > 0) {
        /* Constant values: the mean is exact and the spread exactly 0. */
        int constant = t.min == t.max;
        s.mean = constant ? t.min : t.sum / (double)t.finite;
        s.min = t.min, s.max = t.max;
        double m2 = constant ? 0 : squared_deviations(x, n, s.mean, t.finite);
        s.std = sqrt(m2 / (double)t.finite);
        if (t.finite > 1) s.std_unbiased = sqrt(m2 / (double)(t.finite - 1));
    }
    *out = s;
    return VIKT_OK;
}
