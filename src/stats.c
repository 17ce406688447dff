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
#include <stdio.h>

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

/* ------------------------------------------------------------- histogram */

/* Edge i of bins equal bins over [lo, hi], as numpy.linspace computes it:
 * lo + i·step, with the last edge exactly hi. */
static double edge(double lo, double hi, double step, int64_t bins, int64_t i) {
    return i == bins ? hi : lo + (double)i * step;
}

/* The bin of lo <= v <= hi: a first guess from the division, then moved
 * until edge(i) <= v < edge(i + 1), so the bins follow the edges exactly
 * even where the division rounded the other way. */
static int64_t bin_of(double v, double lo, double hi, double step, int64_t bins) {
    double f = (v - lo) / step;
    int64_t i = f < 0 ? 0 : f >= (double)bins ? bins - 1 : (int64_t)f;
    while (i > 0 && v < edge(lo, hi, step, bins, i)) i--;
    while (i < bins - 1 && v >= edge(lo, hi, step, bins, i + 1)) i++;
    return i;
}

static int edges_increase(double lo, double hi, double step, int64_t bins) {
    if (!(step > 0) || !isfinite(step)) return 0;
    for (int64_t i = 0; i < bins; i++)
        if (!(edge(lo, hi, step, bins, i) < edge(lo, hi, step, bins, i + 1))) return 0;
    return 1;
}

int vikt_histogram(const float *x, int64_t n, double lo, double hi, int64_t bins,
                   int64_t *counts, int64_t *below, int64_t *above, int64_t *nonfinite) {
    if (!counts || (!x && n > 0)) return VIKT_ERR_NULL;
    if (n < 0 || bins < 1 || !isfinite(lo) || !isfinite(hi) || !(hi > lo)) return VIKT_ERR_ARG;
    double step = (hi - lo) / (double)bins;
    if (!edges_increase(lo, hi, step, bins)) return VIKT_ERR_ARG;
    int64_t lower = 0, upper = 0, bad = 0;
    for (int64_t b = 0; b < bins; b++) counts[b] = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v))
            bad++;
        else if (v < lo)
            lower++;
        else if (v > hi)
            upper++;
        else
            counts[bin_of(v, lo, hi, step, bins)]++;
    }
    if (below) *below = lower;
    if (above) *above = upper;
    if (nonfinite) *nonfinite = bad;
    return VIKT_OK;
}

/* ----------------------------------------------------------------- top-k */

/* Whether x[a] ranks before x[b]: NaN first, then larger magnitude, then the
 * lower index. */
static int ranks_before(const float *x, int64_t a, int64_t b) {
    int na = isnan(x[a]) != 0, nb = isnan(x[b]) != 0;
    if (na != nb) return na;
    if (!na) {
        float ma = fabsf(x[a]), mb = fabsf(x[b]);
        if (ma != mb) return ma > mb;
    }
    return a < b;
}

/* Restore the heap below position i: every parent ranks after its
 * children, so the root is the one to drop first. */
static void sift_down(const float *x, int64_t *heap, int64_t size, int64_t i) {
    for (;;) {
        int64_t worst = i, l = 2 * i + 1, r = l + 1;
        if (l < size && ranks_before(x, heap[worst], heap[l])) worst = l;
        if (r < size && ranks_before(x, heap[worst], heap[r])) worst = r;
        if (worst == i) return;
        int64_t t = heap[i];
        heap[i] = heap[worst], heap[worst] = t;
        i = worst;
    }
}

static void sift_up(const float *x, int64_t *heap, int64_t i) {
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!ranks_before(x, heap[parent], heap[i])) return;
        int64_t t = heap[i];
        heap[i] = heap[parent], heap[parent] = t;
        i = parent;
    }
}

int64_t vikt_topk_abs(const float *x, int64_t n, int64_t k, int64_t *indices, float *values) {
    if (n < 0 || k < 0) return VIKT_ERR_ARG;
    if ((!x && n > 0) || (!indices && k > 0)) return VIKT_ERR_NULL;
    int64_t size = 0, want = k < n ? k : n;
    if (want == 0) return 0;
    /* A heap of the best `want` so far in indices, the worst at the root. */
    for (int64_t i = 0; i < n; i++) {
        if (size < want) {
            indices[size] = i;
            sift_up(x, indices, size++);
        } else if (ranks_before(x, i, indices[0])) {
            indices[0] = i;
            sift_down(x, indices, size, 0);
        }
    }
    /* Heap sort: moving the root to the end leaves the best first. */
    for (int64_t end = size - 1; end > 0; end--) {
        int64_t t = indices[0];
        indices[0] = indices[end], indices[end] = t;
        sift_down(x, indices, end, 0);
    }
    if (values)
        for (int64_t i = 0; i < size; i++) values[i] = x[indices[i]];
    return size;
}

int vikt_unravel_index(int64_t index, int rank, const int64_t *shape, int64_t *coords) {
    if (rank < 0 || rank > VIKT_MAX_RANK) return VIKT_ERR_ARG;
    if (rank > 0 && (!shape || !coords)) return VIKT_ERR_NULL;
    int64_t numel = 1;
    for (int d = 0; d < rank; d++) {
        if (shape[d] < 1) return VIKT_ERR_ARG;
        if (numel > INT64_MAX / shape[d]) return VIKT_ERR_ARG;
        numel *= shape[d];
    }
    if (index < 0 || index >= numel) return VIKT_ERR_ARG;
    for (int d = rank - 1; d >= 0; d--) {
        coords[d] = index % shape[d];
        index /= shape[d];
    }
    return VIKT_OK;
}

/* ---------------------------------------------------- non-finite values */

int64_t vikt__first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

const char *vikt__value_str(float v, char *buf) {
    if (isnan(v))
        snprintf(buf, VIKT__VALUE_STR, "NaN"); /* the sign of a NaN means nothing */
    else
        snprintf(buf, VIKT__VALUE_STR, "%g", (double)v);
    return buf;
}

/* "flat index 5 [1, 2]": a position in t for messages. Coordinates are
 * short (at most 4 numbers), so VIKT__WHERE_STR bytes always hold them. */
const char *vikt__where_str(const vikt_tensor *t, int64_t index, char *buf) {
    int64_t c[VIKT_MAX_RANK];
    int used = snprintf(buf, VIKT__WHERE_STR, "flat index %lld", (long long)index);
    if (t->rank > 0 && vikt_unravel_index(index, t->rank, t->shape, c) == VIKT_OK)
        for (int d = 0; d < t->rank; d++)
            used += snprintf(buf + used, (size_t)(VIKT__WHERE_STR - used), "%s%lld%s",
                             d ? ", " : " [", (long long)c[d], d == t->rank - 1 ? "]" : "");
    return buf;
}
