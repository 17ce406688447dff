/* vikt_stats_compute against statistics computed independently here: a
 * two-pass algorithm in long double, element by element, on random data of
 * sizes around the block length, on data whose mean dwarfs its spread (where
 * the one-pass formula E[x²] − E[x]² loses every digit), with NaN and
 * infinities mixed in, and for n = 0 and 1. */
#include "support.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* The reference: plain loops in long double over the finite values. */
static vikt_stats reference(const float *x, int64_t n) {
    vikt_stats r;
    memset(&r, 0, sizeof r);
    long double sum = 0, sumsq = 0, dev2 = 0;
    double lo = INFINITY, hi = -INFINITY;
    r.count = n;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(x[i])) r.nan_count++;
        else if (isinf(x[i])) r.inf_count++;
        else {
            r.finite_count++;
            sum += x[i];
            sumsq += (long double)x[i] * x[i];
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
        if (x[i] == 0.0f) r.zero_count++;
    }
    long double mean = r.finite_count ? sum / r.finite_count : 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(x[i])) dev2 += ((long double)x[i] - mean) * ((long double)x[i] - mean);
    r.mean = r.finite_count ? (double)mean : NAN;
    r.std = r.finite_count ? (double)sqrtl(dev2 / r.finite_count) : NAN;
    r.std_unbiased = r.finite_count > 1 ? (double)sqrtl(dev2 / (r.finite_count - 1)) : NAN;
    r.min = r.finite_count ? lo : NAN;
    r.max = r.finite_count ? hi : NAN;
    r.l2_norm = (double)sqrtl(sumsq);
    r.zero_fraction = n ? (double)r.zero_count / (double)n : 0;
    return r;
}

/* Equal within rel·|want| + abs, or both NaN. */
static void near(const char *what, double got, double want, double rel, double abs_tol) {
    if (isnan(want) && isnan(got)) return;
    if (!(fabs(got - want) <= rel * fabs(want) + abs_tol))
        fail_msg("%s: %.17g, expected %.17g", what, got, want);
}

static void expect_stats(const char *what, const float *x, int64_t n, double rel) {
    vikt_stats s, r = reference(x, n);
    assert_int_equal(vikt_stats_compute(x, n, &s), VIKT_OK);
    if (s.count != r.count || s.finite_count != r.finite_count || s.nan_count != r.nan_count ||
        s.inf_count != r.inf_count || s.zero_count != r.zero_count)
        fail_msg("%s: counts %lld/%lld/%lld/%lld/%lld, expected %lld/%lld/%lld/%lld/%lld", what,
                 (long long)s.count, (long long)s.finite_count, (long long)s.nan_count,
                 (long long)s.inf_count, (long long)s.zero_count, (long long)r.count,
                 (long long)r.finite_count, (long long)r.nan_count, (long long)r.inf_count,
                 (long long)r.zero_count);
    near("mean", s.mean, r.mean, rel, rel * (r.std > 0 ? r.std : 0));
    near("std", s.std, r.std, rel, 0);
    near("std_unbiased", s.std_unbiased, r.std_unbiased, rel, 0);
    near("min", s.min, r.min, 0, 0);
    near("max", s.max, r.max, 0, 0);
    near("l2_norm", s.l2_norm, r.l2_norm, rel, 0);
    near("zero_fraction", s.zero_fraction, r.zero_fraction, 0, 0);
}

static void known_values(void **state) {
    (void)state;
    const float x[4] = {1, 2, 3, 4};
    vikt_stats s;
    assert_int_equal(vikt_stats_compute(x, 4, &s), VIKT_OK);
    assert_int_equal(s.count, 4);
    assert_int_equal(s.finite_count, 4);
    assert_true(s.mean == 2.5 && s.min == 1 && s.max == 4 && s.zero_fraction == 0);
    near("std", s.std, sqrt(1.25), 1e-15, 0);            /* numpy.std([1,2,3,4]) */
    near("std_unbiased", s.std_unbiased, sqrt(5.0 / 3), 1e-15, 0); /* torch.std */
    near("l2_norm", s.l2_norm, sqrt(30.0), 1e-15, 0);
}

static void empty_and_single(void **state) {
    (void)state;
    vikt_stats s;
    assert_int_equal(vikt_stats_compute(NULL, 0, &s), VIKT_OK);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.finite_count, 0);
    assert_true(isnan(s.mean) && isnan(s.std) && isnan(s.std_unbiased) && isnan(s.min) && isnan(s.max));
    assert_true(s.l2_norm == 0 && s.zero_fraction == 0);
    const float one = -3.5f;
    assert_int_equal(vikt_stats_compute(&one, 1, &s), VIKT_OK);
    assert_true(s.count == 1 && s.finite_count == 1 && s.mean == -3.5 && s.std == 0);
    assert_true(isnan(s.std_unbiased)); /* as torch.std of one element */
    assert_true(s.min == -3.5 && s.max == -3.5 && s.l2_norm == 3.5 && s.zero_fraction == 0);
    const float zero = -0.0f;
    assert_int_equal(vikt_stats_compute(&zero, 1, &s), VIKT_OK);
    assert_true(s.zero_count == 1 && s.zero_fraction == 1 && s.mean == 0 && s.l2_norm == 0);
}

/* Sizes around the block length, so partial and several blocks are seen. */
static void random_sizes(void **state) {
    (void)state;
    static float x[5000];
    const int64_t sizes[] = {2, 3, 17, 1023, 1024, 1025, 2049, 5000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        vt_fill(x, sizes[k], (uint32_t)(k + 1), -2.0f, 3.0f);
        expect_stats("random", x, sizes[k], 1e-12);
    }
}

/* Mean 1e4, spread 1e-3: E[x²] − E[x]² in double would keep about 1 digit
 * of the variance; the two-pass result keeps almost all of them. */
static void large_mean_small_spread(void **state) {
    (void)state;
    static float x[3000];
    vt_fill(x, 3000, 7, -1e-3f, 1e-3f);
    for (int i = 0; i < 3000; i++) x[i] += 1e4f;
    expect_stats("offset", x, 3000, 1e-10);
    vikt_stats s;
    assert_int_equal(vikt_stats_compute(x, 3000, &s), VIKT_OK);
    assert_true(s.std > 1e-4); /* float spacing at 1e4 is ~1e-3: values differ */
    /* Constant values: exactly zero spread and the value as the mean. */
    for (int i = 0; i < 3000; i++) x[i] = 0.1f;
    assert_int_equal(vikt_stats_compute(x, 3000, &s), VIKT_OK);
    assert_true(s.mean == (double)0.1f && s.std == 0 && s.std_unbiased == 0);
}

/* NaN and infinities are counted and left out of everything else. */
static void non_finite(void **state) {
    (void)state;
    float x[2100];
    vt_fill(x, 2100, 3, -1.0f, 1.0f);
    x[0] = NAN, x[5] = INFINITY, x[1500] = -INFINITY, x[2099] = NAN, x[7] = 0.0f, x[8] = -0.0f;
    expect_stats("mixed", x, 2100, 1e-12);
    vikt_stats s;
    assert_int_equal(vikt_stats_compute(x, 2100, &s), VIKT_OK);
    assert_int_equal(s.nan_count, 2);
    assert_int_equal(s.inf_count, 2);
    assert_int_equal(s.finite_count, 2096);
    assert_true(isfinite(s.mean) && isfinite(s.std) && s.max <= 1 && s.min >= -1);
    assert_true(s.zero_count >= 2);
    near("zero_fraction", s.zero_fraction, (double)s.zero_count / 2100, 0, 0);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    assert_int_equal(vikt_stats_compute(bad, 3, &s), VIKT_OK);
    assert_true(s.finite_count == 0 && s.nan_count == 1 && s.inf_count == 2);
    assert_true(isnan(s.mean) && isnan(s.min) && isnan(s.max) && s.l2_norm == 0);
    /* The largest floats: squares stay finite in double. */
    const float big[2] = {FLT_MAX, -FLT_MAX};
    assert_int_equal(vikt_stats_compute(big, 2, &s), VIKT_OK);
    near("l2 of FLT_MAX", s.l2_norm, (double)FLT_MAX * sqrt(2.0), 1e-15, 0);
    near("std of ±FLT_MAX", s.std, (double)FLT_MAX, 1e-15, 0);
    assert_true(s.mean == 0);
}

static void bad_arguments(void **state) {
    (void)state;
    vikt_stats s, before;
    const float x[2] = {1, 2};
    memset(&s, 0x5A, sizeof s);
    before = s;
    assert_int_equal(vikt_stats_compute(x, 2, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_stats_compute(NULL, 2, &s), VIKT_ERR_NULL);
    assert_int_equal(vikt_stats_compute(x, -1, &s), VIKT_ERR_ARG);
    assert_memory_equal(&s, &before, sizeof s); /* unchanged on failure */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_values),
        cmocka_unit_test(empty_and_single),
        cmocka_unit_test(random_sizes),
        cmocka_unit_test(large_mean_small_spread),
        cmocka_unit_test(non_finite),
        cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
