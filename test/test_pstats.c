/* Statistics for interpretability and for catching trouble (issue 7, item 4):
 * histogram, top-k by magnitude, coordinates, per-parameter statistics,
 * gradient norms, update-to-weight ratios, the NaN/Inf check, anomaly mode
 * and the train/validation gap tracker. Every number is checked against a
 * reference computed here independently, in double or long double, by the
 * plainest method (linear search over the edges, a full sort, loops). */
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- histogram */

/* The reference: edges as the header defines them, and a linear search for
 * the bin of each value. */
static void reference_histogram(const float *x, int64_t n, double lo, double hi, int64_t bins,
                                int64_t *counts, int64_t *below, int64_t *above, int64_t *bad) {
    double step = (hi - lo) / (double)bins;
    *below = *above = *bad = 0;
    for (int64_t b = 0; b < bins; b++) counts[b] = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v)) {
            ++*bad;
            continue;
        }
        if (v < lo) {
            ++*below;
            continue;
        }
        if (v > hi) {
            ++*above;
            continue;
        }
        for (int64_t b = 0; b < bins; b++) {
            double left = lo + (double)b * step;
            double right = b + 1 == bins ? hi : lo + (double)(b + 1) * step;
            if (v >= left && (v < right || b + 1 == bins)) {
                counts[b]++;
                break;
            }
        }
    }
}

static void expect_histogram(const float *x, int64_t n, double lo, double hi, int64_t bins) {
    int64_t got[64], want[64], gb, ga, gn, wb, wa, wn;
    assert_true(bins <= 64);
    assert_int_equal(vikt_histogram(x, n, lo, hi, bins, got, &gb, &ga, &gn), VIKT_OK);
    reference_histogram(x, n, lo, hi, bins, want, &wb, &wa, &wn);
    assert_memory_equal(got, want, (size_t)bins * sizeof *got);
    assert_int_equal(gb, wb);
    assert_int_equal(ga, wa);
    assert_int_equal(gn, wn);
    int64_t total = gb + ga + gn;
    for (int64_t b = 0; b < bins; b++) total += got[b];
    assert_int_equal(total, n);
}

static void histogram_numpy_cases(void **state) {
    (void)state;
    int64_t c[4], below, above, bad;
    /* numpy.histogram([0, 1, 2, 3], bins=3, range=(0, 3)) -> [1, 1, 2]:
     * the last bin is closed. */
    const float a[4] = {0, 1, 2, 3};
    assert_int_equal(vikt_histogram(a, 4, 0, 3, 3, c, &below, &above, &bad), VIKT_OK);
    assert_true(c[0] == 1 && c[1] == 1 && c[2] == 2 && below == 0 && above == 0 && bad == 0);
    /* numpy.histogram([1, 2, 1], bins=3, range=(0, 3)) -> [0, 2, 1]. */
    const float b[3] = {1, 2, 1};
    assert_int_equal(vikt_histogram(b, 3, 0, 3, 3, c, NULL, NULL, NULL), VIKT_OK);
    assert_true(c[0] == 0 && c[1] == 2 && c[2] == 1);
    /* Out of range and non-finite values are counted apart, in no bin. */
    const float d[7] = {-0.5f, 3.5f, NAN, INFINITY, -INFINITY, 0.5f, 2.999f};
    assert_int_equal(vikt_histogram(d, 7, 0, 3, 3, c, &below, &above, &bad), VIKT_OK);
    assert_true(c[0] == 1 && c[1] == 0 && c[2] == 1);
    assert_true(below == 1 && above == 1 && bad == 3);
    /* One bin: everything in [lo, hi]. */
    assert_int_equal(vikt_histogram(a, 4, 0, 3, 1, c, &below, &above, &bad), VIKT_OK);
    assert_true(c[0] == 4 && below == 0 && above == 0);
    /* Counts are overwritten, not added to; n = 0 gives zeros. */
    c[0] = c[1] = 99;
    assert_int_equal(vikt_histogram(NULL, 0, -1, 1, 2, c, &below, &above, &bad), VIKT_OK);
    assert_true(c[0] == 0 && c[1] == 0 && below == 0 && above == 0 && bad == 0);
}

static void histogram_against_reference(void **state) {
    (void)state;
    float x[3000];
    vt_fill(x, 3000, 7, -2.5f, 2.5f);
    expect_histogram(x, 3000, -2, 2, 10);
    expect_histogram(x, 3000, -2.5, 2.5, 64);
    expect_histogram(x, 3000, 0.1, 0.7, 7); /* edges not representable */
    /* Values exactly on the edges, and edges like 0.3 that double rounds:
     * the bins must follow the edges bit for bit. */
    for (int i = 0; i < 3000; i++) x[i] = (float)(i % 101) / 100.0f;
    expect_histogram(x, 3000, 0, 1, 10);
    expect_histogram(x, 3000, 0, 1, 3);
    expect_histogram(x, 3000, 0.3, 0.9, 6);
    for (int i = 0; i < 3000; i++) x[i] = (float)(i % 64) * 0.125f - 4.0f;
    expect_histogram(x, 3000, -4, 3.875, 63);
}

static void histogram_bad_arguments(void **state) {
    (void)state;
    const float x[2] = {1, 2};
    int64_t c[4] = {5, 5, 5, 5};
    assert_int_equal(vikt_histogram(x, 2, 0, 1, 4, NULL, NULL, NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_histogram(NULL, 2, 0, 1, 4, c, NULL, NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_histogram(x, -1, 0, 1, 4, c, NULL, NULL, NULL), VIKT_ERR_ARG);
    assert_int_equal(vikt_histogram(x, 2, 0, 1, 0, c, NULL, NULL, NULL), VIKT_ERR_ARG);
    assert_int_equal(vikt_histogram(x, 2, 1, 1, 4, c, NULL, NULL, NULL), VIKT_ERR_ARG);
    assert_int_equal(vikt_histogram(x, 2, 2, 1, 4, c, NULL, NULL, NULL), VIKT_ERR_ARG);
    assert_int_equal(vikt_histogram(x, 2, NAN, 1, 4, c, NULL, NULL, NULL), VIKT_ERR_ARG);
    assert_int_equal(vikt_histogram(x, 2, 0, INFINITY, 4, c, NULL, NULL, NULL), VIKT_ERR_ARG);
    /* hi − lo overflows double. */
    assert_int_equal(vikt_histogram(x, 2, -1e308, 1e308, 4, c, NULL, NULL, NULL), VIKT_ERR_ARG);
    /* Edges that collapse: the step is below lo's resolution. */
    assert_int_equal(vikt_histogram(x, 2, 1e20, nextafter(1e20, 2e20), 4, c, NULL, NULL, NULL),
                     VIKT_ERR_ARG);
    for (int i = 0; i < 4; i++) assert_int_equal(c[i], 5); /* nothing written */
}

/* ----------------------------------------------------------------- top-k */

static const float *sort_base;

/* The order the header promises: NaN first, larger magnitude, lower index. */
static int by_rank(const void *pa, const void *pb) {
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    double xa = sort_base[a], xb = sort_base[b];
    int na = isnan(xa) != 0, nb = isnan(xb) != 0;
    if (na != nb) return nb - na;
    if (!na && fabs(xa) != fabs(xb)) return fabs(xa) > fabs(xb) ? -1 : 1;
    return a < b ? -1 : a > b;
}

static void expect_topk(const float *x, int64_t n, int64_t k) {
    int64_t *all = malloc((size_t)(n ? n : 1) * sizeof *all);
    int64_t *got = malloc((size_t)(k ? k : 1) * sizeof *got);
    float *vals = malloc((size_t)(k ? k : 1) * sizeof *vals);
    assert_non_null(all);
    assert_non_null(got);
    assert_non_null(vals);
    for (int64_t i = 0; i < n; i++) all[i] = i;
    sort_base = x;
    qsort(all, (size_t)n, sizeof *all, by_rank);
    int64_t want = k < n ? k : n;
    assert_int_equal(vikt_topk_abs(x, n, k, got, vals), want);
    for (int64_t i = 0; i < want; i++) {
        if (got[i] != all[i]) fail_msg("n=%lld k=%lld: rank %lld is index %lld, expected %lld",
                                       (long long)n, (long long)k, (long long)i,
                                       (long long)got[i], (long long)all[i]);
        assert_memory_equal(&vals[i], &x[all[i]], sizeof(float));
    }
    free(all);
    free(got);
    free(vals);
}

static void topk_against_sort(void **state) {
    (void)state;
    float x[2000];
    vt_fill(x, 2000, 3, -1, 1);
    for (int64_t k = 0; k <= 40; k += 7) expect_topk(x, 2000, k);
    expect_topk(x, 2000, 2000);
    expect_topk(x, 2000, 5000); /* k > n */
    /* Many ties in magnitude, of both signs: lower index first. */
    for (int i = 0; i < 2000; i++) x[i] = (float)((i * 7919) % 9 - 4);
    for (int64_t k = 1; k <= 600; k += 97) expect_topk(x, 2000, k);
    /* Non-finite values: NaN ranks first, then the infinities. */
    x[100] = NAN, x[5] = -INFINITY, x[1500] = INFINITY, x[7] = NAN;
    expect_topk(x, 2000, 6);
    expect_topk(x, 2000, 2000);
    expect_topk(x, 1, 3);
    expect_topk(x, 0, 3);
}

static void topk_known_and_bad(void **state) {
    (void)state;
    /* The weights of a linear model: input 2 matters most, then 0 and 3
     * (tied at 0.5, lower index first). */
    const float w[5] = {0.5f, -0.1f, -2.0f, -0.5f, 0.0f};
    int64_t idx[3];
    float v[3];
    assert_int_equal(vikt_topk_abs(w, 5, 3, idx, v), 3);
    assert_true(idx[0] == 2 && idx[1] == 0 && idx[2] == 3);
    assert_true(v[0] == -2.0f && v[1] == 0.5f && v[2] == -0.5f);
    assert_int_equal(vikt_topk_abs(w, 5, 2, idx, NULL), 2); /* values optional */
    assert_int_equal(vikt_topk_abs(w, 5, 0, NULL, NULL), 0);
    assert_int_equal(vikt_topk_abs(w, -1, 2, idx, v), VIKT_ERR_ARG);
    assert_int_equal(vikt_topk_abs(w, 5, -1, idx, v), VIKT_ERR_ARG);
    assert_int_equal(vikt_topk_abs(NULL, 5, 2, idx, v), VIKT_ERR_NULL);
    assert_int_equal(vikt_topk_abs(w, 5, 2, NULL, v), VIKT_ERR_NULL);
}

static void unravel(void **state) {
    (void)state;
    int64_t c[4];
    const int64_t shape[4] = {2, 3, 4, 5};
    assert_int_equal(vikt_unravel_index(0, 4, shape, c), VIKT_OK);
    assert_true(c[0] == 0 && c[1] == 0 && c[2] == 0 && c[3] == 0);
    /* 119 = ((1·3 + 2)·4 + 3)·5 + 4, the last element. */
    assert_int_equal(vikt_unravel_index(119, 4, shape, c), VIKT_OK);
    assert_true(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4);
    for (int64_t i = 0; i < 120; i++) {
        assert_int_equal(vikt_unravel_index(i, 4, shape, c), VIKT_OK);
        assert_int_equal(((c[0] * 3 + c[1]) * 4 + c[2]) * 5 + c[3], i);
    }
    assert_int_equal(vikt_unravel_index(0, 0, NULL, NULL), VIKT_OK); /* a scalar */
    assert_int_equal(vikt_unravel_index(1, 0, NULL, NULL), VIKT_ERR_ARG);
    assert_int_equal(vikt_unravel_index(120, 4, shape, c), VIKT_ERR_ARG);
    assert_int_equal(vikt_unravel_index(-1, 4, shape, c), VIKT_ERR_ARG);
    assert_int_equal(vikt_unravel_index(0, 5, shape, c), VIKT_ERR_ARG);
    assert_int_equal(vikt_unravel_index(0, -1, shape, c), VIKT_ERR_ARG);
    assert_int_equal(vikt_unravel_index(0, 2, NULL, c), VIKT_ERR_NULL);
    assert_int_equal(vikt_unravel_index(0, 2, shape, NULL), VIKT_ERR_NULL);
    const int64_t empty[2] = {3, 0};
    assert_int_equal(vikt_unravel_index(0, 2, empty, c), VIKT_ERR_ARG);
    const int64_t huge[3] = {INT64_MAX / 2, 4, 4};
    assert_int_equal(vikt_unravel_index(0, 3, huge, c), VIKT_ERR_ARG);
}

/* ------------------------------------------------------ model statistics */

/* Two parameters and a buffer with known values and gradients. */
static vikt_model *small_model(void) {
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "fc.weight", 2, (int64_t[]){3, 4}, VIKT_INIT_ZEROS);
    vikt_tensor *b = vikt_param(m, "fc.bias", 1, (int64_t[]){3}, VIKT_INIT_ZEROS);
    vikt_tensor *r = vikt_buffer(m, "bn.running_mean", 1, (int64_t[]){3}, 0.0f);
    assert_non_null(w);
    assert_non_null(b);
    assert_non_null(r);
    vt_fill(vikt_tensor_data(w), 12, 11, -1, 1);
    vt_fill(vikt_tensor_grad(w), 12, 12, -0.1f, 0.1f);
    vt_fill(vikt_tensor_data(b), 3, 13, -1, 1);
    vt_fill(vikt_tensor_grad(b), 3, 14, -0.1f, 0.1f);
    return m;
}

static long double sumsq_ld(const float *x, int64_t n) {
    long double s = 0;
    for (int64_t i = 0; i < n; i++) s += (long double)x[i] * x[i];
    return s;
}

static void param_stats(void **state) {
    (void)state;
    vikt_model *m = small_model();
    vikt_tensor *w = vikt_param_find(m, "fc.weight");
    vikt_stats s, r;
    assert_int_equal(vikt_param_stats(m, "fc.weight", VIKT_STATS_VALUE, &s), VIKT_OK);
    assert_int_equal(vikt_stats_compute(vikt_tensor_data(w), 12, &r), VIKT_OK);
    assert_memory_equal(&s, &r, sizeof s);
    assert_int_equal(vikt_param_stats(m, "fc.weight", VIKT_STATS_GRAD, &s), VIKT_OK);
    assert_int_equal(s.count, 12);
    assert_true(fabs(s.l2_norm - (double)sqrtl(sumsq_ld(vikt_tensor_grad(w), 12))) < 1e-15);
    /* Errors name the parameter and leave out unchanged. */
    memset(&r, 0x5A, sizeof r);
    s = r;
    assert_int_equal(vikt_param_stats(m, "nope", VIKT_STATS_VALUE, &s), VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_param_stats", "'nope'");
    assert_int_equal(vikt_param_stats(m, "fc.bias", 3, &s), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_param_stats", "VIKT_STATS_GRAD");
    assert_int_equal(vikt_param_stats(m, "fc.bias", 0, &s), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_param_stats", NULL);
    assert_memory_equal(&s, &r, sizeof s);
    assert_int_equal(vikt_param_stats(m, NULL, VIKT_STATS_VALUE, &s), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_param_stats", "name");
    assert_int_equal(vikt_param_stats(m, "fc.bias", VIKT_STATS_VALUE, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_param_stats", "out");
    assert_int_equal(vikt_param_stats(NULL, "fc.bias", VIKT_STATS_VALUE, &s), VIKT_ERR_NULL);
    vikt_model_destroy(m);
}

static void grad_norms(void **state) {
    (void)state;
    vikt_model *m = small_model();
    vikt_tensor *w = vikt_param_find(m, "fc.weight"), *b = vikt_param_find(m, "fc.bias");
    double norms[2], global;
    long double sw = sumsq_ld(vikt_tensor_grad(w), 12), sb = sumsq_ld(vikt_tensor_grad(b), 3);
    assert_int_equal(vikt_grad_norms(m, norms, 2, &global), VIKT_OK);
    assert_true(fabs(norms[0] - (double)sqrtl(sw)) <= 1e-15 * norms[0]);
    assert_true(fabs(norms[1] - (double)sqrtl(sb)) <= 1e-15 * norms[1]);
    assert_true(fabs(global - (double)sqrtl(sw + sb)) <= 1e-15 * global);
    assert_int_equal(vikt_grad_norms(m, NULL, 0, &global), VIKT_OK); /* global only */
    assert_int_equal(vikt_grad_norms(m, norms, 2, NULL), VIKT_OK);
    /* A NaN gradient is not hidden: it makes its norm and the global NaN. */
    vikt_tensor_grad(b)[1] = NAN;
    assert_int_equal(vikt_grad_norms(m, norms, 2, &global), VIKT_OK);
    assert_true(!isnan(norms[0]) && isnan(norms[1]) && isnan(global));
    vikt_tensor_grad(b)[1] = INFINITY;
    assert_int_equal(vikt_grad_norms(m, norms, 2, &global), VIKT_OK);
    assert_true(isinf(norms[1]) && isinf(global));
    assert_int_equal(vikt_grad_norms(m, norms, 1, &global), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_grad_norms", "room for 1");
    assert_int_equal(vikt_grad_norms(NULL, norms, 2, &global), VIKT_ERR_NULL);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------- update tracker */

static double reference_ratio(const float *before, const float *now, int64_t n) {
    long double d = 0, w = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((long double)now[i] - before[i]) * ((long double)now[i] - before[i]);
        w += (long double)before[i] * before[i];
    }
    return (double)(sqrtl(d) / sqrtl(w));
}

static void update_ratios(void **state) {
    (void)state;
    vikt_model *m = small_model();
    vikt_tensor *w = vikt_param_find(m, "fc.weight"), *b = vikt_param_find(m, "fc.bias");
    vikt_update_tracker *t;
    vikt_optimizer *opt;
    assert_int_equal(vikt_update_tracker_create(m, &t), VIKT_OK);
    assert_int_equal(vikt_sgd_create(m, 0.1f, &opt), VIKT_OK);
    double ratios[2];
    assert_int_equal(vikt_update_tracker_ratios(t, ratios, 2), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_update_tracker_ratios", "no snapshot");
    float w0[12], b0[3];
    for (int step = 0; step < 3; step++) {
        memcpy(w0, vikt_tensor_data(w), sizeof w0);
        memcpy(b0, vikt_tensor_data(b), sizeof b0);
        assert_int_equal(vikt_update_tracker_snapshot(t), VIKT_OK);
        int64_t calls = vt_stats.calls;
        assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
        assert_int_equal(vikt_update_tracker_ratios(t, ratios, 2), VIKT_OK);
        if (step > 0) assert_int_equal(vt_stats.calls, calls); /* steady state: no allocation */
        double rw = reference_ratio(w0, vikt_tensor_data(w), 12);
        double rb = reference_ratio(b0, vikt_tensor_data(b), 3);
        assert_true(rw > 0 && fabs(ratios[0] - rw) <= 1e-12 * rw);
        assert_true(rb > 0 && fabs(ratios[1] - rb) <= 1e-12 * rb);
    }
    /* No change: 0. A zero tensor that moved: +Inf; that did not: 0. */
    assert_int_equal(vikt_update_tracker_snapshot(t), VIKT_OK);
    assert_int_equal(vikt_update_tracker_ratios(t, ratios, 2), VIKT_OK);
    assert_true(ratios[0] == 0 && ratios[1] == 0);
    vikt_tensor_fill(b, 0);
    assert_int_equal(vikt_update_tracker_snapshot(t), VIKT_OK);
    vikt_tensor_data(b)[2] = 1e-3f;
    assert_int_equal(vikt_update_tracker_ratios(t, ratios, 2), VIKT_OK);
    assert_true(isinf(ratios[1]) && ratios[0] == 0);
    /* Bad arguments. */
    assert_int_equal(vikt_update_tracker_ratios(t, ratios, 1), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_update_tracker_ratios", "room for 1");
    assert_int_equal(vikt_update_tracker_ratios(t, NULL, 2), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_update_tracker_ratios", NULL);
    assert_int_equal(vikt_update_tracker_ratios(NULL, ratios, 2), VIKT_ERR_NULL);
    assert_int_equal(vikt_update_tracker_snapshot(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_update_tracker_create(m, NULL), VIKT_ERR_NULL);
    vikt_update_tracker *none = t;
    assert_int_equal(vikt_update_tracker_create(NULL, &none), VIKT_ERR_NULL);
    assert_null(none);
    /* A parameter added after the snapshot: the snapshot no longer fits;
     * the next snapshot grows the copy. */
    assert_non_null(vikt_param(m, "fc2.weight", 1, (int64_t[]){4}, VIKT_INIT_ZEROS));
    double three[3];
    assert_int_equal(vikt_update_tracker_ratios(t, three, 3), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_update_tracker_ratios", "2 parameters");
    assert_int_equal(vikt_update_tracker_snapshot(t), VIKT_OK);
    assert_int_equal(vikt_update_tracker_ratios(t, three, 3), VIKT_OK);
    assert_true(three[2] == 0);
    vikt_update_tracker_destroy(NULL);
    vikt_update_tracker_destroy(t);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

static void update_tracker_oom(void **state) {
    (void)state;
    vikt_model *m = small_model();
    int64_t at = 1;
    for (;; at++) {
        vikt_update_tracker *t = NULL;
        vt_stats.fail_at = vt_stats.calls + at;
        int rc = vikt_update_tracker_create(m, &t);
        if (rc == VIKT_OK) rc = vikt_update_tracker_snapshot(t);
        vt_stats.fail_at = 0;
        if (rc == VIKT_OK) {
            double r[2];
            assert_int_equal(vikt_update_tracker_ratios(t, r, 2), VIKT_OK);
            vikt_update_tracker_destroy(t);
            break;
        }
        assert_int_equal(rc, VIKT_ERR_NOMEM);
        vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_update_tracker", NULL);
        if (t) {
            /* A failed snapshot forgets the old one; the tracker still works. */
            double r[2];
            assert_int_equal(vikt_update_tracker_ratios(t, r, 2), VIKT_ERR_STATE);
            vikt_model_clear_error(m);
            vikt_update_tracker_destroy(t);
        }
        assert_true(at < 10);
    }
    assert_int_equal(at, 3); /* the tracker, then the copy */
    vikt_model_destroy(m);
}

/* ------------------------------------------------------------ NaN / Inf */

static void check_finite(void **state) {
    (void)state;
    vikt_model *m = small_model();
    vikt_tensor *w = vikt_param_find(m, "fc.weight"), *b = vikt_param_find(m, "fc.bias");
    int both = VIKT_STATS_VALUE | VIKT_STATS_GRAD;
    assert_int_equal(vikt_check_finite(m, both), VIKT_OK);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    /* The gradient of the weight at [1, 2] (flat 6), the value of the bias:
     * creation order, values before gradients within a parameter. */
    vikt_tensor_grad(w)[6] = NAN;
    vikt_tensor_data(b)[1] = -INFINITY;
    assert_int_equal(vikt_check_finite(m, both), VIKT_ERR_NONFINITE);
    vt_expect_error(m, VIKT_ERR_NONFINITE, "the gradient of parameter 'fc.weight' (3x4) holds NaN",
                    "flat index 6 [1, 2]");
    assert_int_equal(vikt_check_finite(m, VIKT_STATS_VALUE), VIKT_ERR_NONFINITE);
    vt_expect_error(m, VIKT_ERR_NONFINITE, "the values of parameter 'fc.bias' (3) holds -inf",
                    "flat index 1 [1]");
    vikt_tensor_data(b)[1] = 0;
    assert_int_equal(vikt_check_finite(m, VIKT_STATS_VALUE), VIKT_OK);
    /* Buffers are values too. */
    vikt_tensor_data(vikt_buffer_find(m, "bn.running_mean"))[2] = INFINITY;
    assert_int_equal(vikt_check_finite(m, VIKT_STATS_VALUE), VIKT_ERR_NONFINITE);
    vt_expect_error(m, VIKT_ERR_NONFINITE, "buffer 'bn.running_mean'", "flat index 2");
    assert_int_equal(vikt_check_finite(m, 0), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_check_finite", NULL);
    assert_int_equal(vikt_check_finite(m, 4), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_check_finite", NULL);
    assert_int_equal(vikt_check_finite(NULL, both), VIKT_ERR_NULL);
    vikt_model_destroy(m);
}

/* ----------------------------------------------------------- anomaly mode */

/* y = sum(log(x) · 0) with x = [1, 0, 2]: log(0) = −Inf, −Inf · 0 = NaN. */
static vikt_tensor *log_times_zero(vikt_model *m) {
    vikt_tensor *x = vikt_param(m, "x", 1, (int64_t[]){3}, VIKT_INIT_ZEROS);
    float v[3] = {1, 0, 2};
    vikt_tensor_copy_in(x, v, 3);
    vikt_tensor *l = vikt_log(m, x);
    vikt_tensor *z = vikt_mul(m, l, vikt_zeros(m, 1, (int64_t[]){3}));
    return vikt_sum(m, z);
}

static void anomaly_forward(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    assert_int_equal(vikt_anomaly_mode(m), 0);
    /* Off: the NaN flows through silently. */
    vikt_tensor *y = log_times_zero(m);
    assert_non_null(y);
    assert_true(isnan(vikt_tensor_data(y)[0]));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    /* On: the op that made the infinity is named, with index and shapes. */
    assert_int_equal(vikt_set_anomaly_mode(m, 1), VIKT_OK);
    assert_int_equal(vikt_anomaly_mode(m), 1);
    vikt_step_begin(m);
    assert_null(log_times_zero(m));
    vt_expect_error(m, VIKT_ERR_NONFINITE, "anomaly: vikt_log made -inf at flat index 1 [1]",
                    "of its output 3 from finite inputs (3)");
    /* A NaN made from infinite inputs is the op's own: −Inf · 0. */
    vikt_step_begin(m);
    vikt_tensor *inf = vikt_full(m, 1, (int64_t[]){2}, -INFINITY);
    vikt_tensor *ok = vikt_scale(m, inf, 2.0f); /* −Inf from −Inf passes on */
    assert_non_null(ok);
    assert_null(vikt_mul(m, ok, vikt_zeros(m, 1, (int64_t[]){2})));
    vt_expect_error(m, VIKT_ERR_NONFINITE, "anomaly: vikt_mul made NaN at flat index 0",
                    "from NaN-free inputs (2, 2)");
    /* A NaN that came in through a parameter stops the first op reading it,
     * which names the parameter. */
    vikt_step_begin(m);
    vikt_tensor *x = vikt_param_find(m, "x");
    vikt_tensor_data(x)[2] = NAN;
    assert_null(vikt_scale(m, x, 3.0f));
    vt_expect_error(m, VIKT_ERR_NONFINITE, "anomaly: vikt_scale: input 0 (parameter 'x', 3)",
                    "holds NaN at flat index 2");
    vikt_tensor_data(x)[2] = 2;
    /* The causal mask's −Inf is its contract, and softmax makes it 0. */
    vikt_step_begin(m);
    vikt_tensor *scores = vikt_randn(m, 2, (int64_t[]){3, 3}, 0, 1);
    vikt_tensor *p = vikt_softmax(m, vikt_causal_mask(m, scores));
    assert_non_null(p);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    assert_true(vikt_tensor_data(p)[1] == 0 && vikt_tensor_data(p)[0] == 1);
    assert_int_equal(vikt_set_anomaly_mode(NULL, 1), VIKT_ERR_NULL);
    assert_int_equal(vikt_anomaly_mode(NULL), 0);
    assert_int_equal(vikt_set_anomaly_mode(m, 0), VIKT_OK);
    assert_int_equal(vikt_anomaly_mode(m), 0);
    vikt_model_destroy(m);
}

/* sum(sqrt(p) · g) for p = [4, 0]: finite forward; backward of sqrt at 0 is
 * g·0.5/0, +Inf for g = 1 and NaN for g = 0. */
static int sqrt_at_zero(vikt_model *m, float g) {
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *p = vikt_param(m, "p", 1, (int64_t[]){2}, VIKT_INIT_ZEROS);
    vikt_tensor_data(p)[0] = 4;
    vikt_tensor *s = vikt_sqrt(m, p);
    vikt_tensor *loss = vikt_sum(m, vikt_mul(m, s, vikt_full(m, 1, (int64_t[]){2}, g)));
    return vikt_backward(m, loss);
}

static void anomaly_backward(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    /* Off: the gradient silently holds Inf / NaN. */
    assert_int_equal(sqrt_at_zero(m, 1), VIKT_OK);
    assert_true(isinf(vikt_tensor_grad(vikt_param_find(m, "p"))[1]));
    assert_int_equal(sqrt_at_zero(m, 0), VIKT_OK);
    assert_true(isnan(vikt_tensor_grad(vikt_param_find(m, "p"))[1]));
    vikt_set_anomaly_mode(m, 1);
    assert_int_equal(sqrt_at_zero(m, 1), VIKT_ERR_NONFINITE);
    vt_expect_error(m, VIKT_ERR_NONFINITE, "vikt_backward: anomaly: the backward of vikt_sqrt made inf",
                    "gradient of input 0 (parameter 'p', 2)");
    assert_int_equal(sqrt_at_zero(m, 0), VIKT_ERR_NONFINITE);
    vt_expect_error(m, VIKT_ERR_NONFINITE, "the backward of vikt_sqrt made NaN at flat index 1 [1]",
                    NULL);
    /* A gradient left non-finite by an earlier step is named as such. */
    vikt_tensor *p = vikt_param_find(m, "p");
    vikt_step_begin(m);
    vikt_tensor *loss = vikt_sum(m, vikt_scale(m, p, 2.0f));
    vikt_tensor_grad(p)[0] = NAN;
    assert_int_equal(vikt_backward(m, loss), VIKT_ERR_NONFINITE);
    vt_expect_error(m, VIKT_ERR_NONFINITE, "the gradient of parameter 'p' (2) holds NaN",
                    "before backward");
    /* Finite all along: no error, and the same gradient as with it off. */
    vikt_zero_grad(m);
    assert_int_equal(vikt_backward(m, loss), VIKT_OK);
    assert_true(vikt_tensor_grad(p)[0] == 2 && vikt_tensor_grad(p)[1] == 2);
    /* A frozen parameter's stale gradient is not used, so not checked. */
    vikt_tensor *f = vikt_param(m, "frozen", 1, (int64_t[]){2}, VIKT_INIT_ONES);
    vikt_tensor_grad(f)[1] = NAN;
    assert_int_equal(vikt_param_freeze(m, "frozen", 1), 1);
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor_grad(f)[1] = NAN;
    loss = vikt_sum(m, vikt_mul(m, p, f));
    assert_int_equal(vikt_backward(m, loss), VIKT_OK);
    assert_true(vikt_tensor_grad(p)[0] == 1 && isnan(vikt_tensor_grad(f)[1]));
    vikt_model_destroy(m);
}

/* A causal transformer block, an LSTM, max pooling and cross-entropy give
 * bit-identical losses and gradients with anomaly mode on and off, and no
 * error: the checks only read, and the causal mask's −Inf is allowed. */
static float anomaly_model_step(int mode, float *grads, int64_t room) {
    vikt_model *m = vt_model(5);
    vikt_set_anomaly_mode(m, mode);
    vikt_tensor *x = vikt_randn(m, 3, (int64_t[]){2, 5, 8}, 0, 1);
    vikt_tensor *h = vikt_transformer_block(m, "tb", x, 2, 16, 1);
    vikt_tensor *r = vikt_lstm(m, "lstm", h, 4, NULL, NULL, NULL, NULL);
    vikt_tensor *img = vikt_reshape(m, r, 4, (int64_t[]){2, 1, 5, 4});
    vikt_tensor *pooled = vikt_max_pool2d(m, img, 2, 2);
    vikt_tensor *logits = vikt_reshape(m, pooled, 2, (int64_t[]){2, 4});
    vikt_tensor *loss = vikt_cross_entropy_loss(m, logits, (const int32_t[]){1, 3});
    assert_int_equal(vikt_backward(m, loss), VIKT_OK);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    int64_t used = 0;
    for (int64_t i = 0; i < vikt_param_count(m); i++) {
        vikt_tensor *p = vikt_param_at(m, i);
        assert_true(used + vikt_tensor_numel(p) <= room);
        memcpy(grads + used, vikt_tensor_grad(p), (size_t)vikt_tensor_numel(p) * sizeof(float));
        used += vikt_tensor_numel(p);
    }
    assert_true(used > 500);
    float value = vikt_tensor_data(loss)[0];
    vikt_model_destroy(m);
    return value;
}

static void anomaly_changes_nothing(void **state) {
    (void)state;
    static float grads[2][8192];
    float off = anomaly_model_step(0, grads[0], 8192);
    float on = anomaly_model_step(1, grads[1], 8192);
    assert_memory_equal(&off, &on, sizeof off);
    assert_memory_equal(grads[0], grads[1], sizeof grads[0]);
}

/* ---------------------------------------------------------- gap tracker */

/* Least-squares slope of y against 0..n-1 by the textbook formula with
 * both means, in long double. */
static double reference_slope(const double *y, int n) {
    long double xm = (n - 1) / 2.0L, ym = 0, sxy = 0, sxx = 0;
    for (int i = 0; i < n; i++) ym += y[i];
    ym /= n;
    for (int i = 0; i < n; i++) {
        sxy += (i - xm) * (y[i] - ym);
        sxx += (i - xm) * (i - xm);
    }
    return (double)(sxy / sxx);
}

static void gap_tracker_rule(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_gap_tracker *t;
    assert_int_equal(vikt_gap_tracker_create(m, 4, 0, &t), VIKT_OK);
    double ts, vs, gap;
    assert_int_equal(vikt_gap_tracker_state(t, &ts, &vs, &gap), 0);
    assert_true(isnan(ts) && isnan(vs) && isnan(gap));
    /* Both falling for six epochs, then validation turns up while training
     * keeps falling. */
    const double train[12] = {2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35};
    const double val[12] = {2.1, 1.7, 1.4, 1.3, 1.25, 1.22, 1.24, 1.3, 1.35, 1.42, 1.5, 1.6};
    int flags[12];
    for (int e = 0; e < 12; e++) {
        flags[e] = vikt_gap_tracker_add(t, train[e], val[e]);
        assert_true(flags[e] == 0 || flags[e] == 1);
        assert_int_equal(vikt_gap_tracker_state(t, &ts, &vs, &gap), flags[e]);
        assert_true(fabs(gap - (val[e] - train[e])) < 1e-15);
        if (e < 3) {
            assert_int_equal(flags[e], 0); /* window not full yet */
            assert_true(isnan(ts) && isnan(vs));
            continue;
        }
        double rt = reference_slope(train + e - 3, 4), rv = reference_slope(val + e - 3, 4);
        assert_true(fabs(ts - rt) < 1e-12 && fabs(vs - rv) < 1e-12);
        assert_int_equal(flags[e], rv > 0 && rt < 0);
    }
    /* The turn: flagged once the window's validation slope is positive. */
    assert_int_equal(flags[6], 0);
    assert_int_equal(flags[8], 1);
    assert_int_equal(flags[11], 1);
    /* NaN and infinity are refused and change nothing. */
    assert_int_equal(vikt_gap_tracker_add(t, NAN, 1.0), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gap_tracker_add", "finite");
    assert_int_equal(vikt_gap_tracker_add(t, 0.3, INFINITY), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gap_tracker_add", NULL);
    double ts2, vs2, gap2;
    assert_int_equal(vikt_gap_tracker_state(t, &ts2, &vs2, &gap2), 1);
    assert_true(ts2 == ts && vs2 == vs && gap2 == gap);
    /* Both rising (a diverging run) is not overfitting; neither is both
     * falling. */
    int flag = -1;
    for (int e = 0; e < 4; e++) flag = vikt_gap_tracker_add(t, 1.0 + e, 2.0 + e);
    assert_int_equal(flag, 0);
    for (int e = 0; e < 4; e++) flag = vikt_gap_tracker_add(t, 9.0 - e, 9.5 - e);
    assert_int_equal(flag, 0);
    /* Validation flat (slope 0) is not a rise. */
    for (int e = 0; e < 4; e++) flag = vikt_gap_tracker_add(t, 1.0 - 0.1 * e, 1.0);
    assert_int_equal(flag, 0);
    vikt_gap_tracker_destroy(t);

    /* Tolerance: a validation rise of 0.05 per epoch counts only when it is
     * above the tolerance. */
    for (int k = 0; k < 2; k++) {
        assert_int_equal(vikt_gap_tracker_create(m, 3, k ? 0.1 : 0.01, &t), VIKT_OK);
        flag = 0;
        for (int e = 0; e < 3; e++) flag = vikt_gap_tracker_add(t, 1.0 - 0.1 * e, 1.0 + 0.05 * e);
        assert_int_equal(flag, k ? 0 : 1);
        vikt_gap_tracker_destroy(t);
    }
    vikt_gap_tracker_destroy(NULL);
    vikt_model_destroy(m);
}

static void gap_tracker_bad_and_oom(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_gap_tracker *t = (vikt_gap_tracker *)m;
    assert_int_equal(vikt_gap_tracker_create(m, 1, 0, &t), VIKT_ERR_ARG);
    assert_null(t);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gap_tracker_create", "window 1");
    assert_int_equal(vikt_gap_tracker_create(m, 1000001, 0, &t), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gap_tracker_create", NULL);
    assert_int_equal(vikt_gap_tracker_create(m, 5, -1, &t), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gap_tracker_create", "tolerance");
    assert_int_equal(vikt_gap_tracker_create(m, 5, NAN, &t), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gap_tracker_create", "tolerance");
    assert_int_equal(vikt_gap_tracker_create(NULL, 5, 0, &t), VIKT_ERR_NULL);
    assert_int_equal(vikt_gap_tracker_create(m, 5, 0, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_gap_tracker_add(NULL, 1, 1), VIKT_ERR_NULL);
    assert_int_equal(vikt_gap_tracker_state(NULL, NULL, NULL, NULL), VIKT_ERR_NULL);
    for (int64_t at = 1; at <= 2; at++) {
        vt_stats.fail_at = vt_stats.calls + at;
        assert_int_equal(vikt_gap_tracker_create(m, 5, 0, &t), VIKT_ERR_NOMEM);
        vt_stats.fail_at = 0;
        assert_null(t);
        vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_gap_tracker_create", NULL);
    }
    int64_t live = vt_stats.live;
    assert_int_equal(vikt_gap_tracker_create(m, 5, 0, &t), VIKT_OK);
    int64_t calls = vt_stats.calls;
    for (int e = 0; e < 20; e++) vikt_gap_tracker_add(t, 1, 1);
    assert_int_equal(vt_stats.calls, calls); /* adding allocates nothing */
    vikt_gap_tracker_destroy(t);
    assert_int_equal(vt_stats.live, live);
    vikt_model_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(histogram_numpy_cases),
        cmocka_unit_test(histogram_against_reference),
        cmocka_unit_test(histogram_bad_arguments),
        cmocka_unit_test(topk_against_sort),
        cmocka_unit_test(topk_known_and_bad),
        cmocka_unit_test(unravel),
        cmocka_unit_test(param_stats),
        cmocka_unit_test(grad_norms),
        cmocka_unit_test(update_ratios),
        cmocka_unit_test(update_tracker_oom),
        cmocka_unit_test(check_finite),
        cmocka_unit_test(anomaly_forward),
        cmocka_unit_test(anomaly_backward),
        cmocka_unit_test(anomaly_changes_nothing),
        cmocka_unit_test(gap_tracker_rule),
        cmocka_unit_test(gap_tracker_bad_and_oom),
    };
    return cmocka_run_group_tests_name("pstats", tests, NULL, NULL);
}
