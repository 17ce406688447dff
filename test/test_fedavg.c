/* Federated averaging: vikt_fedavg (models) and vikt_fedavg_files.
 *
 * - a hand-computed average, and random sets against an average computed
 *   here in double, for parameters and buffers, in memory and from files
 *   (F32, F64 and F16 files mixed);
 * - bit-exact means from exact rationals (tools/gen_fedavg_fixtures.py):
 *   cancellation, 60 binades, double ties on float ties, 40 clients;
 * - the same bits for all 120 orders of 5 clients (while a float sum in
 *   client order differs between orders, so the test can tell);
 * - only weight ratios matter (huge weights neither overflow nor change a
 *   bit); equal elements (frozen parameters) come out unchanged; dst may be
 *   a client;
 * - every rejection (NULLs, k, weights, names, shapes, kinds, NaN/Inf,
 *   unreadable, malformed or corrupt files) names the client and the tensor
 *   and leaves dst unchanged;
 * - out of memory at every allocation, both functions: dst unchanged, no
 *   leak. */
#define _POSIX_C_SOURCE 200809L

#include "support.h"

#include "fixtures/fedavg_fixtures.h"
#include "fixtures/safetensors_fixtures.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define FIXDIR "test/fixtures/safetensors/"
#define K 5

/* ---------------------------------------------------------------- helpers */

/* The architecture of most tests: two parameters and a buffer. */
static vikt_model *small_model(uint32_t seed, float lo, float hi) {
    vikt_model *m = vt_model(seed);
    vikt_tensor *w = vikt_param(m, "fc.weight", 2, SHAPE(4, 3), VIKT_INIT_ZEROS);
    vikt_tensor *b = vikt_param(m, "fc.bias", 1, SHAPE(3), VIKT_INIT_ZEROS);
    vikt_tensor *r = vikt_buffer(m, "bn.running_mean", 1, SHAPE(3), 0.0f);
    assert_non_null(w);
    assert_non_null(b);
    assert_non_null(r);
    vt_fill(vikt_tensor_data(w), 12, seed, lo, hi);
    vt_fill(vikt_tensor_data(b), 3, seed + 1000, lo, hi);
    vt_fill(vikt_tensor_data(r), 3, seed + 2000, lo, hi);
    return m;
}

static vikt_tensor *tensor_at(vikt_model *m, int64_t j) {
    int64_t np = vikt_param_count(m);
    return j < np ? vikt_param_at(m, j) : vikt_buffer_at(m, j - np);
}

static int64_t tensor_count(vikt_model *m) { return vikt_param_count(m) + vikt_buffer_count(m); }

/* Every value of every parameter and buffer, back to back (malloc'd). */
static float *snapshot(vikt_model *m, int64_t *n) {
    int64_t total = 0;
    for (int64_t j = 0; j < tensor_count(m); j++) total += vikt_tensor_numel(tensor_at(m, j));
    float *s = malloc((size_t)(total ? total : 1) * sizeof *s);
    assert_non_null(s);
    int64_t at = 0;
    for (int64_t j = 0; j < tensor_count(m); j++) {
        vikt_tensor *t = tensor_at(m, j);
        memcpy(s + at, vikt_tensor_data(t), (size_t)vikt_tensor_numel(t) * sizeof *s);
        at += vikt_tensor_numel(t);
    }
    *n = total;
    return s;
}

/* Assert that m holds exactly the values of a snapshot. */
static void assert_unchanged(vikt_model *m, const float *before, int64_t n) {
    int64_t n2;
    float *now = snapshot(m, &n2);
    assert_int_equal(n2, n);
    if (memcmp(now, before, (size_t)n * sizeof *now) != 0) fail_msg("dst changed on an error");
    free(now);
}

/* Weighted mean computed independently: Σ (w_i / W)·θ_i, in double, in
 * client order. */
static float reference(vikt_model *const *c, const double *w, int k, const char *name,
                       int buffer, int64_t e) {
    double total = 0, s = 0;
    for (int i = 0; i < k; i++) total += w[i];
    for (int i = 0; i < k; i++) {
        vikt_tensor *t = buffer ? vikt_buffer_find(c[i], name) : vikt_param_find(c[i], name);
        s += w[i] / total * (double)vikt_tensor_data(t)[e];
    }
    return (float)s;
}

/* |a - b| within one float ulp of b. */
static void assert_within_ulp(float a, float b, const char *what, int64_t e) {
    float lo = nextafterf(b, -INFINITY), hi = nextafterf(b, INFINITY);
    if (!(a >= lo && a <= hi)) fail_msg("%s[%lld]: %.9g, expected %.9g", what, (long long)e, a, b);
}

static void assert_matches_reference(vikt_model *dst, vikt_model *const *c, const double *w,
                                     int k) {
    for (int64_t j = 0; j < tensor_count(dst); j++) {
        vikt_tensor *t = tensor_at(dst, j);
        int buffer = j >= vikt_param_count(dst);
        for (int64_t e = 0; e < vikt_tensor_numel(t); e++)
            assert_within_ulp(vikt_tensor_data(t)[e],
                              reference(c, w, k, vikt_tensor_name(t), buffer, e),
                              vikt_tensor_name(t), e);
    }
}

/* K clients of the small model saved to dir/c0.safetensors ...; paths[] are
 * malloc'd. */
static void save_clients(vikt_model *const *c, int k, const char *dir, char **paths) {
    for (int i = 0; i < k; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%d.safetensors", i);
        paths[i] = vt_join(dir, name);
        if (vikt_save(c[i], paths[i]) != VIKT_OK) fail_msg("vikt_save: %s", vikt_model_errmsg(c[i]));
    }
}

static void free_paths(char **paths, int k) {
    for (int i = 0; i < k; i++) free(paths[i]);
}

/* Clients whose values span 60 binades: the terms of one element need more
 * than double's 53 bits, so even a double sum rounds differently in
 * different orders. */
static void make_spread_clients(vikt_model **c) {
    for (int i = 0; i < K; i++) {
        c[i] = small_model(100 + (uint32_t)i, -1.0f, 1.0f);
        for (int64_t j = 0; j < tensor_count(c[i]); j++) {
            vikt_tensor *t = tensor_at(c[i], j);
            float *x = vikt_tensor_data(t);
            for (int64_t e = 0; e < vikt_tensor_numel(t); e++)
                x[e] = ldexpf(x[e], (int)((i * 13 + e * 7) % 61) - 30);
        }
    }
    /* And one element where clients 0 and 1 (of equal weight) cancel: the
     * other terms survive only in an exact sum. */
    const float cancel[K] = {0x1p60f, -0x1p60f, 1.0f, 0x1p-20f, 3.0f};
    for (int i = 0; i < K; i++) vikt_tensor_data(vikt_param_find(c[i], "fc.bias"))[0] = cancel[i];
}

/* Sample counts; clients 0 and 1 weigh the same (see make_spread_clients). */
static const double spread_w[K] = {120, 120, 1000, 3, 59};

static void destroy_all(vikt_model **c, int k) {
    for (int i = 0; i < k; i++) vikt_model_destroy(c[i]);
}

/* ------------------------------------------------------------- averaging */

static void set_values(vikt_model *m, const char *name, int buffer, const float *v, int64_t n) {
    vikt_tensor *t = buffer ? vikt_buffer_find(m, name) : vikt_param_find(m, name);
    assert_non_null(t);
    assert_int_equal(vikt_tensor_copy_in(t, v, n), VIKT_OK);
}

static void hand_computed_average(void **state) {
    (void)state;
    vikt_model *c[3], *dst = small_model(9, 0, 1);
    for (int i = 0; i < 3; i++) c[i] = small_model(1 + (uint32_t)i, 0, 1);
    const double w[3] = {1, 2, 5}; /* Σ = 8 */
    set_values(c[0], "fc.bias", 0, (const float[]){8, 0, -1}, 3);
    set_values(c[1], "fc.bias", 0, (const float[]){0, 4, 3}, 3);
    set_values(c[2], "fc.bias", 0, (const float[]){0, 0, 1}, 3);
    set_values(c[0], "bn.running_mean", 1, (const float[]){0.5f, 16, 2}, 3);
    set_values(c[1], "bn.running_mean", 1, (const float[]){0.5f, 0, 2}, 3);
    set_values(c[2], "bn.running_mean", 1, (const float[]){0.5f, 0, -2}, 3);
    assert_int_equal(vikt_fedavg(dst, c, w, 3), VIKT_OK);
    /* bias: (8 + 0 + 0)/8, (0 + 8 + 0)/8, (-1 + 6 + 5)/8 */
    const float *b = vikt_tensor_data(vikt_param_find(dst, "fc.bias"));
    assert_true(b[0] == 1.0f && b[1] == 1.0f && b[2] == 1.25f);
    /* running mean: equal 0.5 stays 0.5; 16/8; (2 + 4 - 10)/8 */
    const float *r = vikt_tensor_data(vikt_buffer_find(dst, "bn.running_mean"));
    assert_true(r[0] == 0.5f && r[1] == 2.0f && r[2] == -0.5f);
    assert_matches_reference(dst, c, w, 3);
    destroy_all(c, 3);
    vikt_model_destroy(dst);
}

static void exact_under_cancellation(void **state) {
    (void)state;
    /* (2^60 + 1 - 2^60 + 2)/4 = 0.75; a running double sum gives 0.5. */
    vikt_model *c[4], *dst = vt_model(1);
    const float v[4] = {0x1p60f, 1.0f, -0x1p60f, 2.0f};
    assert_non_null(vikt_param(dst, "x", 1, SHAPE(1), VIKT_INIT_ZEROS));
    for (int i = 0; i < 4; i++) {
        c[i] = vt_model(2 + (uint64_t)i);
        assert_int_equal(vikt_tensor_copy_in(vikt_param(c[i], "x", 1, SHAPE(1), VIKT_INIT_ZEROS), &v[i], 1),
                         VIKT_OK);
    }
    assert_int_equal(vikt_fedavg(dst, c, (const double[]){1, 1, 1, 1}, 4), VIKT_OK);
    assert_true(vikt_tensor_data(vikt_param_find(dst, "x"))[0] == 0.75f);
    destroy_all(c, 4);
    vikt_model_destroy(dst);
}

/* One fixture case in one client order (order[i] = which case row is
 * client i); the mean must have the fixture's bits. */
static void run_fixture_case(const fedavg_case *fc, const int *order) {
    vikt_model *c[40], *dst = vt_model(1);
    double w[40];
    assert_true(fc->k <= 40);
    assert_non_null(vikt_param(dst, "x", 1, SHAPE(fc->n), VIKT_INIT_ZEROS));
    for (int i = 0; i < fc->k; i++) {
        c[i] = vt_model(2 + (uint64_t)i);
        vikt_tensor *x = vikt_param(c[i], "x", 1, SHAPE(fc->n), VIKT_INIT_ZEROS);
        assert_non_null(x);
        memcpy(vikt_tensor_data(x), fc->values + (size_t)order[i] * (size_t)fc->n,
               (size_t)fc->n * sizeof(float));
        w[i] = fc->weights[order[i]];
    }
    assert_int_equal(vikt_fedavg(dst, c, w, fc->k), VIKT_OK);
    const float *got = vikt_tensor_data(vikt_param_find(dst, "x"));
    for (int e = 0; e < fc->n; e++) {
        uint32_t b;
        memcpy(&b, &got[e], sizeof b);
        if (b != fc->mean[e])
            fail_msg("%s[%d] (order starting %d): %08x (%.9g), expected %08x", fc->name, e, order[0],
                     b, got[e], fc->mean[e]);
    }
    destroy_all(c, fc->k);
    vikt_model_destroy(dst);
}

static void exact_means_from_rationals(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof fedavg_cases / sizeof fedavg_cases[0]; i++) {
        const fedavg_case *fc = &fedavg_cases[i];
        int order[40];
        /* Forward, reversed, and every rotation. */
        for (int j = 0; j < fc->k; j++) order[j] = fc->k - 1 - j;
        run_fixture_case(fc, order);
        for (int r = 0; r < fc->k; r++) {
            for (int j = 0; j < fc->k; j++) order[j] = (j + r) % fc->k;
            run_fixture_case(fc, order);
        }
    }
}

static void random_sets_match_double_reference(void **state) {
    (void)state;
    vikt_model *c[K], *dst = small_model(99, 0, 1);
    make_spread_clients(c);
    const double *w = spread_w;
    assert_int_equal(vikt_fedavg(dst, c, w, K), VIKT_OK);
    assert_matches_reference(dst, c, w, K);
    destroy_all(c, K);
    vikt_model_destroy(dst);
}

/* Heap's algorithm: every permutation of p[0..n), visited once each. */
static void permute(int *p, int n, int size, void (*visit)(const int *, void *), void *ctx) {
    if (n == 1) {
        visit(p, ctx);
        return;
    }
    for (int i = 0; i < n; i++) {
        permute(p, n - 1, size, visit, ctx);
        int j = n % 2 ? 0 : i, t = p[j];
        p[j] = p[n - 1];
        p[n - 1] = t;
    }
}

typedef struct order_case {
    vikt_model **c;
    const double *w;
    vikt_model *dst;
    char **paths;        /* NULL: in memory */
    float *first;        /* result of the first order */
    int64_t n;
    int visits;
    double naive[15];    /* a double running sum in client order, first order */
    int naive_differs;   /* it changed with the order somewhere */
} order_case;

static void run_order(const int *p, void *ctx) {
    order_case *oc = ctx;
    vikt_model *c[K];
    const char *paths[K];
    double w[K];
    for (int i = 0; i < K; i++) {
        c[i] = oc->c[p[i]];
        w[i] = oc->w[p[i]];
        paths[i] = oc->paths ? oc->paths[p[i]] : NULL;
    }
    int rc = oc->paths ? vikt_fedavg_files(oc->dst, paths, w, K) : vikt_fedavg(oc->dst, c, w, K);
    if (rc != VIKT_OK) fail_msg("order %d: %s", oc->visits, vikt_model_errmsg(oc->dst));
    int64_t n;
    float *got = snapshot(oc->dst, &n);
    if (!oc->first) {
        oc->first = got;
        oc->n = n;
    } else {
        if (memcmp(got, oc->first, (size_t)n * sizeof *got) != 0)
            fail_msg("order %d (%d %d %d %d %d) changed the result", oc->visits, p[0], p[1], p[2],
                     p[3], p[4]);
        free(got);
    }
    /* What the library must not do: accumulate in client order, even in
     * double. */
    for (int64_t e = 0; e < 15; e++) {
        double s = 0;
        for (int i = 0; i < K; i++) {
            vikt_tensor *t = vikt_param_find(c[i], e < 12 ? "fc.weight" : "fc.bias");
            s += w[i] * (double)vikt_tensor_data(t)[e < 12 ? e : e - 12];
        }
        if (oc->visits == 0) oc->naive[e] = s;
        if (s != oc->naive[e]) oc->naive_differs = 1;
    }
    oc->visits++;
}

static void all_orders(vikt_model **c, const double *w, vikt_model *dst, char **paths) {
    int p[K] = {0, 1, 2, 3, 4};
    order_case oc = {c, w, dst, paths, NULL, 0, 0, {0}, 0};
    permute(p, K, K, run_order, &oc);
    assert_int_equal(oc.visits, 120);
    assert_true(oc.naive_differs); /* the data can tell an order-dependent sum */
    free(oc.first);
}

static void same_bits_for_every_client_order(void **state) {
    (void)state;
    vikt_model *c[K], *dst = small_model(99, 0, 1);
    make_spread_clients(c);
    const double *w = spread_w;
    all_orders(c, w, dst, NULL);
    destroy_all(c, K);
    vikt_model_destroy(dst);
}

static void files_same_bits_for_every_order_and_as_in_memory(void **state) {
    (void)state;
    vikt_model *c[K], *dst = small_model(99, 0, 1), *mem = small_model(98, 0, 1);
    make_spread_clients(c);
    const double *w = spread_w;
    char *dir = vt_tmpdir("fedavg"), *paths[K];
    save_clients(c, K, dir, paths);
    all_orders(c, w, dst, paths);
    assert_int_equal(vikt_fedavg(mem, c, w, K), VIKT_OK);
    int64_t n1, n2;
    float *a = snapshot(dst, &n1), *b = snapshot(mem, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, (size_t)n1 * sizeof *a);
    free(a);
    free(b);
    free_paths(paths, K);
    vt_rmdir(dir);
    destroy_all(c, K);
    vikt_model_destroy(dst);
    vikt_model_destroy(mem);
}

static void only_weight_ratios_matter(void **state) {
    (void)state;
    vikt_model *c[K], *a = small_model(97, 0, 1), *b = small_model(96, 0, 1);
    make_spread_clients(c);
    const double w[K] = {1, 2, 5, 3, 7};
    double huge[K], tiny[K];
    for (int i = 0; i < K; i++) huge[i] = ldexp(w[i], 1000), tiny[i] = ldexp(w[i], -1000);
    assert_int_equal(vikt_fedavg(a, c, w, K), VIKT_OK);
    int64_t n;
    float *first = snapshot(a, &n);
    assert_int_equal(vikt_fedavg(b, c, huge, K), VIKT_OK); /* w·θ would overflow unscaled */
    assert_unchanged(b, first, n);
    assert_int_equal(vikt_fedavg(b, c, tiny, K), VIKT_OK);
    assert_unchanged(b, first, n);
    free(first);
    destroy_all(c, K);
    vikt_model_destroy(a);
    vikt_model_destroy(b);
}

static void equal_elements_come_out_unchanged(void **state) {
    (void)state;
    /* A frozen layer trained nowhere: every client holds the same values. */
    vikt_model *c[K], *dst = small_model(95, 0, 1);
    for (int i = 0; i < K; i++) {
        c[i] = small_model(7, -3, 3);
        assert_int_equal(vikt_param_freeze(c[i], "fc.weight", 1), 1);
        vt_fill(vikt_tensor_data(vikt_param_find(c[i], "fc.bias")), 3, 50 + (uint32_t)i, -1, 1);
    }
    const double w[K] = {3, 1, 4, 1, 5};
    assert_int_equal(vikt_fedavg(dst, c, w, K), VIKT_OK);
    assert_memory_equal(vikt_tensor_data(vikt_param_find(dst, "fc.weight")),
                        vikt_tensor_data(vikt_param_find(c[0], "fc.weight")), 12 * sizeof(float));
    assert_memory_equal(vikt_tensor_data(vikt_buffer_find(dst, "bn.running_mean")),
                        vikt_tensor_data(vikt_buffer_find(c[0], "bn.running_mean")),
                        3 * sizeof(float));
    destroy_all(c, K);
    vikt_model_destroy(dst);
}

static void dst_may_be_a_client(void **state) {
    (void)state;
    vikt_model *c[K], *other = small_model(94, 0, 1);
    make_spread_clients(c);
    const double w[K] = {10, 20, 30, 40, 50};
    assert_int_equal(vikt_fedavg(other, c, w, K), VIKT_OK);
    assert_int_equal(vikt_fedavg(c[2], c, w, K), VIKT_OK);
    int64_t n1, n2;
    float *a = snapshot(other, &n1), *b = snapshot(c[2], &n2);
    assert_memory_equal(a, b, (size_t)n1 * sizeof *a);
    free(a);
    free(b);
    destroy_all(c, K);
    vikt_model_destroy(other);
}

static void one_client_is_a_copy(void **state) {
    (void)state;
    vikt_model *c = small_model(3, -5, 5), *dst = small_model(4, 0, 1);
    assert_int_equal(vikt_fedavg(dst, &c, (const double[]){17}, 1), VIKT_OK);
    int64_t n;
    float *want = snapshot(c, &n);
    assert_unchanged(dst, want, n);
    free(want);
    vikt_model_destroy(c);
    vikt_model_destroy(dst);
}

static void empty_architecture(void **state) {
    (void)state;
    vikt_model *a = vt_model(1), *b = vt_model(2);
    assert_int_equal(vikt_fedavg(a, &b, (const double[]){1}, 1), VIKT_OK);
    vikt_model_destroy(a);
    vikt_model_destroy(b);
}

static void mixed_dtype_files(void **state) {
    (void)state;
    /* The same MLP as F32, F64 (rounds to the same floats) and F16. */
    vikt_model *dst = vt_model(1), *f32 = vt_model(2), *f16 = vt_model(3);
    assert_int_equal(vikt_load(dst, FIXDIR "golden_mlp_f32.safetensors", VIKT_LOAD_STRICT), VIKT_OK);
    assert_int_equal(vikt_load(f32, FIXDIR "golden_mlp_f32.safetensors", VIKT_LOAD_STRICT), VIKT_OK);
    assert_int_equal(vikt_load(f16, FIXDIR "golden_mlp_f16.safetensors", VIKT_LOAD_STRICT), VIKT_OK);
    const char *paths[3] = {FIXDIR "golden_mlp_f32.safetensors", FIXDIR "golden_mlp_f64.safetensors",
                            FIXDIR "golden_mlp_f16.safetensors"};
    assert_int_equal(vikt_fedavg_files(dst, paths, (const double[]){1, 1, 2}, 3), VIKT_OK);
    for (int j = 0; j < 4; j++) {
        const char *name = golden_mlp_names[j];
        vikt_tensor *t = vikt_param_find(dst, name);
        const float *a = vikt_tensor_data(vikt_param_find(f32, name));
        const float *h = vikt_tensor_data(vikt_param_find(f16, name));
        for (int64_t e = 0; e < vikt_tensor_numel(t); e++)
            assert_within_ulp(vikt_tensor_data(t)[e], (float)((2.0 * a[e] + 2.0 * h[e]) / 4.0), name, e);
    }
    vikt_model_destroy(dst);
    vikt_model_destroy(f32);
    vikt_model_destroy(f16);
}

/* ------------------------------------------------------------- rejections */

typedef struct fixture {
    vikt_model *c[3];
    vikt_model *dst;
    float *before;
    int64_t n;
} fixture;

static void fixture_make(fixture *f) {
    for (int i = 0; i < 3; i++) f->c[i] = small_model(10 + (uint32_t)i, -1, 1);
    f->dst = small_model(20, -1, 1);
    f->before = snapshot(f->dst, &f->n);
}

static void fixture_free(fixture *f) {
    destroy_all(f->c, 3);
    vikt_model_destroy(f->dst);
    free(f->before);
}

/* vikt_fedavg fails with err naming needle1 and needle2, dst unchanged. */
static void expect_rejected(fixture *f, const double *w, int64_t k, int err, const char *needle1,
                            const char *needle2) {
    assert_int_equal(vikt_fedavg(f->dst, f->c, w, k), err);
    vt_expect_error(f->dst, err, needle1, needle2);
    assert_unchanged(f->dst, f->before, f->n);
}

static const double ones[3] = {1, 1, 1};

static void rejects_bad_arguments(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f);
    assert_int_equal(vikt_fedavg(NULL, f.c, ones, 3), VIKT_ERR_NULL);
    assert_int_equal(vikt_fedavg(f.dst, NULL, ones, 3), VIKT_ERR_NULL);
    vt_expect_error(f.dst, VIKT_ERR_NULL, "vikt_fedavg", "clients");
    assert_int_equal(vikt_fedavg(f.dst, f.c, NULL, 3), VIKT_ERR_NULL);
    vt_expect_error(f.dst, VIKT_ERR_NULL, "vikt_fedavg", "weights");
    expect_rejected(&f, ones, 0, VIKT_ERR_ARG, "k is 0", NULL);
    expect_rejected(&f, ones, -2, VIKT_ERR_ARG, "k is -2", NULL);
    const double bad[][3] = {{1, 0, 1}, {1, 1, -3}, {NAN, 1, 1}, {1, INFINITY, 1}, {1, 1, -0.0}};
    const char *which[] = {"client 1", "client 2", "client 0", "client 1", "client 2"};
    for (int i = 0; i < 5; i++) expect_rejected(&f, bad[i], 3, VIKT_ERR_ARG, "weight of", which[i]);
    vikt_model *keep = f.c[1];
    f.c[1] = NULL;
    expect_rejected(&f, ones, 3, VIKT_ERR_NULL, "client 1 is NULL", NULL);
    f.c[1] = keep;
    fixture_free(&f);
}

static void rejects_mismatched_names_and_shapes(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f);
    /* A client with one more parameter. */
    vikt_model *extra = small_model(30, -1, 1);
    assert_non_null(vikt_param(extra, "fc2.bias", 1, SHAPE(2), VIKT_INIT_ZEROS));
    vikt_model *keep = f.c[2];
    f.c[2] = extra;
    expect_rejected(&f, ones, 3, VIKT_ERR_NOT_FOUND, "client 2 has parameter 'fc2.bias'", "dst lacks");
    f.c[2] = keep;
    vikt_model_destroy(extra);

    /* A client lacking one: dst has the extra parameter. */
    assert_non_null(vikt_param(f.dst, "head.weight", 2, SHAPE(2, 2), VIKT_INIT_ZEROS));
    free(f.before);
    f.before = snapshot(f.dst, &f.n);
    expect_rejected(&f, ones, 3, VIKT_ERR_NOT_FOUND, "client 0 has no parameter 'head.weight'", NULL);
    fixture_free(&f);

    /* Same names, another shape. */
    fixture_make(&f);
    vikt_model *wide = vt_model(31);
    assert_non_null(vikt_param(wide, "fc.weight", 2, SHAPE(3, 4), VIKT_INIT_ZEROS));
    assert_non_null(vikt_param(wide, "fc.bias", 1, SHAPE(3), VIKT_INIT_ZEROS));
    assert_non_null(vikt_buffer(wide, "bn.running_mean", 1, SHAPE(3), 0));
    keep = f.c[1];
    f.c[1] = wide;
    expect_rejected(&f, ones, 3, VIKT_ERR_SHAPE, "client 1: parameter 'fc.weight' is 3x4",
                    "dst has 4x3");
    f.c[1] = keep;
    vikt_model_destroy(wide);

    /* The buffer as a parameter: names match, kinds do not (the extra
     * parameter is found first). */
    vikt_model *kind = vt_model(32);
    assert_non_null(vikt_param(kind, "fc.weight", 2, SHAPE(4, 3), VIKT_INIT_ZEROS));
    assert_non_null(vikt_param(kind, "fc.bias", 1, SHAPE(3), VIKT_INIT_ZEROS));
    assert_non_null(vikt_param(kind, "bn.running_mean", 1, SHAPE(3), VIKT_INIT_ZEROS));
    keep = f.c[0];
    f.c[0] = kind;
    expect_rejected(&f, ones, 3, VIKT_ERR_NOT_FOUND, "client 0 has parameter 'bn.running_mean'",
                    NULL);
    f.c[0] = keep;
    vikt_model_destroy(kind);
    fixture_free(&f);
}

static void rejects_non_finite_values(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f);
    float *w = vikt_tensor_data(vikt_param_find(f.c[2], "fc.weight"));
    w[7] = NAN;
    expect_rejected(&f, ones, 3, VIKT_ERR_ARG, "client 2: parameter 'fc.weight' element 7", "nan");
    w[7] = 0;
    vikt_tensor_data(vikt_buffer_find(f.c[1], "bn.running_mean"))[2] = -INFINITY;
    expect_rejected(&f, ones, 3, VIKT_ERR_ARG, "client 1: buffer 'bn.running_mean' element 2", "inf");
    fixture_free(&f);
}

/* vikt_fedavg_files fails with err naming both needles, dst unchanged. */
static void expect_files_rejected(fixture *f, const char *const *paths, int64_t k, int err,
                                  const char *needle1, const char *needle2) {
    assert_int_equal(vikt_fedavg_files(f->dst, paths, ones, k), err);
    vt_expect_error(f->dst, err, needle1, needle2);
    assert_unchanged(f->dst, f->before, f->n);
}

static void files_rejections(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f);
    char *dir = vt_tmpdir("fedavg"), *paths[3];
    save_clients(f.c, 3, dir, paths);
    const char *p[3] = {paths[0], paths[1], paths[2]};

    assert_int_equal(vikt_fedavg_files(NULL, p, ones, 3), VIKT_ERR_NULL);
    expect_files_rejected(&f, NULL, 3, VIKT_ERR_NULL, "vikt_fedavg_files", "paths");
    expect_files_rejected(&f, p, 0, VIKT_ERR_ARG, "k is 0", NULL);
    assert_int_equal(vikt_fedavg_files(f.dst, p, (const double[]){1, -1, 1}, 3), VIKT_ERR_ARG);
    vt_expect_error(f.dst, VIKT_ERR_ARG, "weight of client 1", NULL);
    p[1] = NULL;
    expect_files_rejected(&f, p, 3, VIKT_ERR_NULL, "path of client 1 is NULL", NULL);

    /* Missing and malformed files. */
    char *missing = vt_join(dir, "nope.safetensors");
    p[1] = missing;
    expect_files_rejected(&f, p, 3, VIKT_ERR_IO, "nope.safetensors", "cannot open");
    p[1] = FIXDIR "bad_offsets_gap.safetensors";
    expect_files_rejected(&f, p, 3, VIKT_ERR_FORMAT, "bad_offsets_gap", NULL);

    /* Another architecture in one file: missing, extra, other shapes,
     * a dtype a vikt tensor cannot take. */
    p[1] = FIXDIR "golden_mlp_f32.safetensors";
    expect_files_rejected(&f, p, 3, VIKT_ERR_NOT_FOUND, "client 1 has no parameter 'fc.weight'",
                          "golden_mlp_f32");
    vikt_model *extra = small_model(40, -1, 1);
    assert_non_null(vikt_buffer(extra, "bn.running_var", 1, SHAPE(3), 1));
    char *extra_path = vt_join(dir, "extra.safetensors");
    assert_int_equal(vikt_save(extra, extra_path), VIKT_OK);
    p[1] = extra_path;
    expect_files_rejected(&f, p, 3, VIKT_ERR_NOT_FOUND, "client 1 has 'bn.running_var'", "dst lacks");
    vikt_model *wide = vt_model(41);
    assert_non_null(vikt_param(wide, "fc.weight", 2, SHAPE(2, 6), VIKT_INIT_ZEROS));
    assert_non_null(vikt_param(wide, "fc.bias", 1, SHAPE(3), VIKT_INIT_ZEROS));
    assert_non_null(vikt_buffer(wide, "bn.running_mean", 1, SHAPE(3), 0));
    char *wide_path = vt_join(dir, "wide.safetensors");
    assert_int_equal(vikt_save(wide, wide_path), VIKT_OK);
    p[2] = wide_path;
    p[1] = paths[1];
    expect_files_rejected(&f, p, 3, VIKT_ERR_SHAPE, "client 2: parameter 'fc.weight' is 2x6 F32",
                          "dst has 4x3");

    /* A NaN in the last file's last tensor: everything before it was
     * averaged into scratch, and dst still must not change. */
    vikt_tensor_data(vikt_buffer_find(f.c[2], "bn.running_mean"))[1] = NAN;
    assert_int_equal(vikt_save(f.c[2], paths[2]), VIKT_OK);
    p[2] = paths[2];
    expect_files_rejected(&f, p, 3, VIKT_ERR_ARG, "client 2: buffer 'bn.running_mean' element 1",
                          "c2.safetensors");
    vikt_tensor_data(vikt_buffer_find(f.c[2], "bn.running_mean"))[1] = 0.5f;
    assert_int_equal(vikt_save(f.c[2], paths[2]), VIKT_OK);

    /* A flipped bit in the last file's data: its CRC32C catches it. */
    size_t n;
    unsigned char *bytes = vt_read_file(paths[2], &n);
    bytes[n - 2] ^= 0x10;
    vt_write_file(paths[2], bytes, n);
    free(bytes);
    expect_files_rejected(&f, p, 3, VIKT_ERR_FORMAT, "c2.safetensors", NULL);
    assert_int_equal(vikt_save(f.c[2], paths[2]), VIKT_OK);

    /* And with all three good, it works and matches in memory. */
    assert_int_equal(vikt_fedavg_files(f.dst, p, ones, 3), VIKT_OK);
    assert_matches_reference(f.dst, f.c, ones, 3);

    vikt_model_destroy(extra);
    vikt_model_destroy(wide);
    free(missing);
    free(extra_path);
    free(wide_path);
    free_paths(paths, 3);
    vt_rmdir(dir);
    fixture_free(&f);
}

/* ----------------------------------------------------------- out of memory */

static void out_of_memory_everywhere(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f);
    char *dir = vt_tmpdir("fedavg"), *paths[3];
    save_clients(f.c, 3, dir, paths);
    const char *p[3] = {paths[0], paths[1], paths[2]};
    for (int files = 0; files < 2; files++) {
        int64_t at = 1;
        for (;; at++) {
            vt_stats.fail_at = vt_stats.calls + at;
            int rc = files ? vikt_fedavg_files(f.dst, p, ones, 3) : vikt_fedavg(f.dst, f.c, ones, 3);
            vt_stats.fail_at = 0;
            if (rc == VIKT_OK) break;
            assert_int_equal(rc, VIKT_ERR_NOMEM);
            vt_expect_error(f.dst, VIKT_ERR_NOMEM, files ? "vikt_fedavg_files" : "vikt_fedavg", NULL);
            assert_unchanged(f.dst, f.before, f.n);
            assert_true(at < 100);
        }
        /* One block for the arithmetic; files add tables, headers, scratch. */
        assert_true(files ? at > 3 : at == 2);
        assert_matches_reference(f.dst, f.c, ones, 3);
        memcpy(vikt_tensor_data(vikt_param_find(f.dst, "fc.weight")), f.before, 12 * sizeof(float));
        vikt_tensor_copy_in(vikt_param_find(f.dst, "fc.bias"), f.before + 12, 3);
        vikt_tensor_copy_in(vikt_buffer_find(f.dst, "bn.running_mean"), f.before + 15, 3);
    }
    free_paths(paths, 3);
    vt_rmdir(dir);
    fixture_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hand_computed_average),
        cmocka_unit_test(exact_under_cancellation),
        cmocka_unit_test(exact_means_from_rationals),
        cmocka_unit_test(random_sets_match_double_reference),
        cmocka_unit_test(same_bits_for_every_client_order),
        cmocka_unit_test(files_same_bits_for_every_order_and_as_in_memory),
        cmocka_unit_test(only_weight_ratios_matter),
        cmocka_unit_test(equal_elements_come_out_unchanged),
        cmocka_unit_test(dst_may_be_a_client),
        cmocka_unit_test(one_client_is_a_copy),
        cmocka_unit_test(empty_architecture),
        cmocka_unit_test(mixed_dtype_files),
        cmocka_unit_test(rejects_bad_arguments),
        cmocka_unit_test(rejects_mismatched_names_and_shapes),
        cmocka_unit_test(rejects_non_finite_values),
        cmocka_unit_test(files_rejections),
        cmocka_unit_test(out_of_memory_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
