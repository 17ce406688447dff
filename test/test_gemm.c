/* The GEMM kernels: every kernel this CPU can run against a float64
 * reference on sizes that cross the register tiles and cache blocks, both
 * transposes, several alpha and beta, padded leading dimensions whose padding
 * must come back untouched; the BLAS NaN contract; bitwise-identical results
 * for 1 to 4 threads; the thread and ISA API; out of memory.
 *
 * The program links the library's objects (not the archive) so it can force
 * each kernel through src/kernels/gemm.h. With VIKT_ISA set (as `make check`
 * does, once per ISA) it tests that kernel; without, every usable one. The
 * reference is a float64 product, so the scalar kernel is checked too, and
 * every SIMD kernel is held to the same error bound as the scalar one.
 *
 * VIKT_TEST_QUICK=1 (set by `make check-neon`, where qemu runs this 20-50x
 * slower) keeps every size and edge but crosses at most one size above 100
 * and runs fewer thread shapes. */
#include "support.h"

#include "../src/kernels/gemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int64_t sizes[] = {0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 64, 65, 127, 255, 257};
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))
static const float alphas[] = {0.0f, 1.0f, -1.0f, 0.7f};
static const float betas[] = {0.0f, 1.0f, 1.3f};

/* A signalling-NaN pattern: in a product it turns the result into NaN, and
 * in C's padding it must survive bit for bit. */
static const uint32_t SENTINEL_BITS = 0x7fa5a5a5u;

static float sentinel(void) {
    float f;
    memcpy(&f, &SENTINEL_BITS, sizeof f);
    return f;
}

static int is_sentinel(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u == SENTINEL_BITS;
}

static int quick(void) {
    const char *q = getenv("VIKT_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* ------------------------------------------------------------- kernels */

static const char *const isa_names[] = {"scalar", "avx2", "avx512", "neon"};

/* The kernels under test: the one VIKT_ISA selects, or every usable one. */
static int kernels_under_test(const vikt__gemm_kernel **out) {
    if (getenv("VIKT_ISA")) {
        out[0] = vikt__gemm_kernel_default();
        return 1;
    }
    int n = 0;
    for (size_t i = 0; i < sizeof isa_names / sizeof isa_names[0]; i++) {
        const vikt__gemm_kernel *k = vikt__gemm_kernel_find(isa_names[i]);
        if (k) out[n++] = k;
    }
    return n;
}

/* --------------------------------------------------------- matrices */

/* A rows x cols matrix stored with ld = cols + 1, the padding column and one
 * extra row holding the sentinel. */
typedef struct {
    int64_t rows, cols, ld;
    float *p;
} mat;

static mat mat_make(int64_t rows, int64_t cols, uint32_t seed) {
    mat a = {rows, cols, cols + 1, NULL};
    size_t n = (size_t)((rows + 1) * a.ld);
    a.p = malloc(n * sizeof(float));
    assert_non_null(a.p);
    for (size_t i = 0; i < n; i++) a.p[i] = sentinel();
    for (int64_t r = 0; r < rows; r++) vt_fill(a.p + r * a.ld, cols, seed + (uint32_t)r, -1, 1);
    return a;
}

static void mat_free(mat *a) { free(a->p); }

static size_t mat_bytes(const mat *a) { return (size_t)((a->rows + 1) * a->ld) * sizeof(float); }

/* Every element outside the rows x cols block still holds the sentinel. */
static void expect_padding_intact(const mat *c, const char *what) {
    for (int64_t r = 0; r <= c->rows; r++)
        for (int64_t x = 0; x < c->ld; x++)
            if ((r == c->rows || x >= c->cols) && !is_sentinel(c->p[r * c->ld + x]))
                fail_msg("%s: padding of C at (%lld, %lld) was written", what, (long long)r,
                         (long long)x);
}

/* op(A) M x K and op(B) K x N stored for the given transposes. */
typedef struct {
    int64_t M, N, K;
    int ta, tb;
    mat a, b;
    double *prod; /* op(A)·op(B), M x N */
    double *mag;  /* |op(A)|·|op(B)|, for the error bound */
} problem;

static float op_a(const problem *p, int64_t i, int64_t k) {
    return p->ta ? p->a.p[k * p->a.ld + i] : p->a.p[i * p->a.ld + k];
}

static float op_b(const problem *p, int64_t k, int64_t j) {
    return p->tb ? p->b.p[j * p->b.ld + k] : p->b.p[k * p->b.ld + j];
}

static void problem_make(problem *p, int64_t M, int64_t N, int64_t K, int ta, int tb,
                         uint32_t seed) {
    p->M = M, p->N = N, p->K = K, p->ta = ta, p->tb = tb;
    p->a = ta ? mat_make(K, M, seed) : mat_make(M, K, seed);
    p->b = tb ? mat_make(N, K, seed + 7777) : mat_make(K, N, seed + 7777);
    size_t mn = (size_t)(M * N) + 1;
    p->prod = malloc(mn * sizeof(double));
    p->mag = malloc(mn * sizeof(double));
    assert_non_null(p->prod);
    assert_non_null(p->mag);
    /* Rows of op(A) and columns of op(B), contiguous, so the reference is
     * four independent sums (fast enough for 257^3 under ASan). */
    double *ar = malloc((size_t)(K + 1) * sizeof(double));
    double *bc = malloc((size_t)(K * N + 1) * sizeof(double));
    assert_non_null(ar);
    assert_non_null(bc);
    for (int64_t j = 0; j < N; j++)
        for (int64_t k = 0; k < K; k++) bc[j * K + k] = op_b(p, k, j);
    for (int64_t i = 0; i < M; i++) {
        for (int64_t k = 0; k < K; k++) ar[k] = op_a(p, i, k);
        for (int64_t j = 0; j < N; j++) {
            const double *b = bc + j * K;
            double s[4] = {0, 0, 0, 0}, g[4] = {0, 0, 0, 0};
            int64_t k = 0;
            for (; k + 4 <= K; k += 4)
                for (int q = 0; q < 4; q++) {
                    s[q] += ar[k + q] * b[k + q];
                    g[q] += fabs(ar[k + q] * b[k + q]);
                }
            for (; k < K; k++) {
                s[0] += ar[k] * b[k];
                g[0] += fabs(ar[k] * b[k]);
            }
            p->prod[i * N + j] = (s[0] + s[1]) + (s[2] + s[3]);
            p->mag[i * N + j] = (g[0] + g[1]) + (g[2] + g[3]);
        }
    }
    free(ar);
    free(bc);
}

static void problem_free(problem *p) {
    mat_free(&p->a);
    mat_free(&p->b);
    free(p->prod);
    free(p->mag);
}

static vikt__gemm_job job_for(const problem *p, float alpha, float beta, mat *c) {
    vikt__gemm_job j = {p->ta, p->tb, p->M,   p->N,    p->K, alpha, beta,
                        p->a.p, p->a.ld, p->b.p, p->b.ld, c->p, c->ld};
    return j;
}

/* Run kernel k on the problem with C starting as c0, and check every element
 * against alpha·prod + beta·c0 within a bound that grows with K: a float dot
 * product of length K with or without FMA is within (K + 2)·u·Σ|a·b| of the
 * exact one (u = 2^-24); the scaling by alpha and beta adds a few u. */
static void check_one(vikt_model *m, const vikt__gemm_kernel *k, const problem *p, float alpha,
                      float beta, const mat *c0) {
    mat c = *c0;
    c.p = malloc(mat_bytes(c0));
    assert_non_null(c.p);
    memcpy(c.p, c0->p, mat_bytes(c0));
    vikt__gemm_job j = job_for(p, alpha, beta, &c);
    assert_int_equal(vikt__gemm_run(m, k, &j), VIKT_OK);
    char what[160];
    snprintf(what, sizeof what, "%s %lldx%lldx%lld %c%c alpha=%g beta=%g", k->name,
             (long long)p->M, (long long)p->N, (long long)p->K, p->ta ? 'T' : 'N',
             p->tb ? 'T' : 'N', alpha, beta);
    const double u = ldexp(1.0, -24);
    for (int64_t i = 0; i < p->M; i++)
        for (int64_t x = 0; x < p->N; x++) {
            double old = c0->p[i * c0->ld + x];
            double want = (double)alpha * p->prod[i * p->N + x] + (double)beta * old;
            double bound = (double)(p->K + 4) * u *
                               (fabs(alpha) * p->mag[i * p->N + x] + fabs(beta * old)) +
                           1e-30;
            if (alpha == 0.0f) want = (double)(float)(beta * (float)old), bound = 0;
            if (beta == 0.0f && alpha == 0.0f) want = 0;
            double got = c.p[i * c.ld + x];
            if (!(fabs(got - want) <= bound))
                fail_msg("%s: C[%lld][%lld] = %.9g, want %.9g (bound %.3g)", what, (long long)i,
                         (long long)x, got, want, bound);
        }
    expect_padding_intact(&c, what);
    free(c.p);
}

/* Shapes: every (M, N, K) from sizes with at most two of them above 100 (the
 * products with all three at 127..257 add time and cross no new edge; one
 * in quick mode), each
 * with both transposes of each operand. Every shape runs two of the twelve
 * (alpha, beta) pairs, rotating, so all pairs meet all edge classes; the
 * shapes whose sizes are all in {0, 1, 7, 17, 33, 65} run all twelve. */
static int is_big(int64_t s) { return s > 100; }

static int all_pairs_shape(int64_t M, int64_t N, int64_t K) {
    static const int64_t few[] = {0, 1, 7, 17, 33, 65};
    int hits = 0;
    for (int i = 0; i < 6; i++) hits += (M == few[i]) + (N == few[i]) + (K == few[i]);
    return hits == 3;
}

static void kernels_match_reference(void **state) {
    (void)state;
    const vikt__gemm_kernel *ks[8];
    int nk = kernels_under_test(ks);
    vikt_model *m = vt_model(1);
    int64_t checks = 0;
    int rot = 0;
    const int max_big = quick() ? 1 : 2;
    for (int mi = 0; mi < NSIZES; mi++)
        for (int ni = 0; ni < NSIZES; ni++)
            for (int ki = 0; ki < NSIZES; ki++) {
                int64_t M = sizes[mi], N = sizes[ni], K = sizes[ki];
                if (is_big(M) + is_big(N) + is_big(K) > max_big) continue;
                int all = all_pairs_shape(M, N, K);
                for (int t = 0; t < 4; t++) {
                    problem p;
                    problem_make(&p, M, N, K, t & 1, t >> 1, (uint32_t)(mi * 256 + ni * 16 + ki));
                    mat c0 = mat_make(M, N, (uint32_t)(9000 + mi * 256 + ni * 16 + ki));
                    for (int pair = 0; pair < 12; pair++) {
                        if (!all && pair != rot % 12 && pair != (rot + 5) % 12) continue;
                        for (int q = 0; q < nk; q++) {
                            check_one(m, ks[q], &p, alphas[pair / 3], betas[pair % 3], &c0);
                            checks++;
                        }
                    }
                    rot++;
                    mat_free(&c0);
                    problem_free(&p);
                }
            }
    print_message("%lld products checked on %d kernel(s):", (long long)checks, nk);
    for (int q = 0; q < nk; q++) print_message(" %s", ks[q]->name);
    print_message("\n");
    vikt_model_destroy(m);
}

/* ------------------------------------------------------- NaN contract */

static int count_nan(const mat *c) {
    int n = 0;
    for (int64_t i = 0; i < c->rows; i++)
        for (int64_t x = 0; x < c->cols; x++) n += isnan(c->p[i * c->ld + x]);
    return n;
}

static void nan_contract(void **state) {
    (void)state;
    const vikt__gemm_kernel *ks[8];
    int nk = kernels_under_test(ks);
    vikt_model *m = vt_model(2);
    const int64_t M = 19, N = 37, K = 23;
    for (int q = 0; q < nk; q++)
        for (int t = 0; t < 4; t++) {
            const vikt__gemm_kernel *k = ks[q];
            problem p;
            problem_make(&p, M, N, K, t & 1, t >> 1, 77u + (uint32_t)t);
            mat c = mat_make(M, N, 5);

            /* beta = 0: NaN in C is ignored. */
            for (int64_t i = 0; i < M; i++)
                for (int64_t x = 0; x < N; x++) c.p[i * c.ld + x] = NAN;
            vikt__gemm_job j = job_for(&p, 1.0f, 0.0f, &c);
            assert_int_equal(vikt__gemm_run(m, k, &j), VIKT_OK);
            assert_int_equal(count_nan(&c), 0);
            expect_padding_intact(&c, k->name);

            /* alpha = 0: A and B are not read (NULL would crash), C = beta·C. */
            for (int64_t i = 0; i < M; i++)
                for (int64_t x = 0; x < N; x++) c.p[i * c.ld + x] = (float)(i - x);
            j = job_for(&p, 0.0f, 1.3f, &c);
            j.A = NULL, j.B = NULL;
            assert_int_equal(vikt__gemm_run(m, k, &j), VIKT_OK);
            for (int64_t i = 0; i < M; i++)
                for (int64_t x = 0; x < N; x++)
                    assert_true(c.p[i * c.ld + x] == (float)(i - x) * 1.3f);
            /* alpha = 0 and beta = 0: zeros, even over NaN. */
            c.p[0] = NAN;
            j = job_for(&p, 0.0f, 0.0f, &c);
            j.A = NULL, j.B = NULL;
            assert_int_equal(vikt__gemm_run(m, k, &j), VIKT_OK);
            for (int64_t i = 0; i < M; i++)
                for (int64_t x = 0; x < N; x++) assert_true(c.p[i * c.ld + x] == 0.0f);
            expect_padding_intact(&c, k->name);

            /* Otherwise NaN propagates: a NaN in row 3 of op(A) spoils row 3
             * of C, one in column 5 of op(B) column 5, one in C (beta != 0)
             * that element. */
            float *a35 = p.ta ? &p.a.p[4 * p.a.ld + 3] : &p.a.p[3 * p.a.ld + 4];
            float *b65 = p.tb ? &p.b.p[5 * p.b.ld + 6] : &p.b.p[6 * p.b.ld + 5];
            *a35 = NAN;
            *b65 = NAN;
            for (int64_t i = 0; i < M; i++)
                for (int64_t x = 0; x < N; x++) c.p[i * c.ld + x] = 1.0f;
            c.p[10 * c.ld + 20] = NAN;
            j = job_for(&p, 0.5f, 2.0f, &c);
            assert_int_equal(vikt__gemm_run(m, k, &j), VIKT_OK);
            for (int64_t i = 0; i < M; i++)
                for (int64_t x = 0; x < N; x++) {
                    int want = i == 3 || x == 5 || (i == 10 && x == 20);
                    if (isnan(c.p[i * c.ld + x]) != want)
                        fail_msg("%s %c%c: C[%lld][%lld] = %g", k->name, p.ta ? 'T' : 'N',
                                 p.tb ? 'T' : 'N', (long long)i, (long long)x, c.p[i * c.ld + x]);
                }
            expect_padding_intact(&c, k->name);
            mat_free(&c);
            problem_free(&p);
        }
    vikt_model_destroy(m);
}

/* ------------------------------------------------------------- threads */

/* The same products at 1, 2, 3 and 4 threads give the same bits. Shapes are
 * large enough to be split (dispatch.c threads products of 2^20 FMAs and
 * more) and cut both ways (rows when M >= N, columns otherwise), with edges. */
static void threads_bitwise_identical(void **state) {
    (void)state;
    const vikt__gemm_kernel *ks[8];
    int nk = kernels_under_test(ks);
    static const int64_t shapes[][3] = {
        {257, 255, 65}, {65, 257, 127}, {127, 33, 257}, {301, 97, 64}, {64, 784, 256},
    };
    const size_t nshapes = quick() ? 2 : sizeof shapes / sizeof shapes[0];
    vikt_model *m = vt_model(3);
    for (int q = 0; q < nk; q++)
        for (size_t s = 0; s < nshapes; s++)
            for (int t = 0; t < 4; t++) {
                int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                mat a = t & 1 ? mat_make(K, M, 11) : mat_make(M, K, 11);
                mat b = t & 2 ? mat_make(N, K, 12) : mat_make(K, N, 12);
                mat ref = mat_make(M, N, 13);
                for (int n = 1; n <= 4; n++) {
                    assert_int_equal(vikt_set_num_threads(m, n), VIKT_OK);
                    assert_int_equal(vikt_num_threads(m), n);
                    mat c = n == 1 ? ref : mat_make(M, N, 13);
                    vikt__gemm_job j = {t & 1, t >> 1, M, N, K, 0.7f, 1.3f,
                                        a.p,   a.ld,   b.p, b.ld, c.p, c.ld};
                    assert_int_equal(vikt__gemm_run(m, ks[q], &j), VIKT_OK);
                    if (n == 1) continue;
                    if (memcmp(ref.p, c.p, mat_bytes(&c)) != 0)
                        fail_msg("%s %lldx%lldx%lld op=%c%c: %d threads differ from 1",
                                 ks[q]->name, (long long)M, (long long)N, (long long)K,
                                 t & 1 ? 'T' : 'N', t & 2 ? 'T' : 'N', n);
                    mat_free(&c);
                }
                assert_int_equal(vikt_set_num_threads(m, 1), VIKT_OK);
                mat_free(&a);
                mat_free(&b);
                mat_free(&ref);
            }
    vikt_model_destroy(m);
}

/* Every element is computed by the same instructions whatever block of C it
 * falls in (packed or direct path, full or edge tile): the product computed
 * whole equals, bit for bit, the product computed row by row (small enough
 * to take the direct path where there is one) or in strips of 19 columns.
 * This is what makes thread counts agree. */
static void tiling_does_not_change_results(void **state) {
    (void)state;
    const vikt__gemm_kernel *ks[8];
    int nk = kernels_under_test(ks);
    const int64_t M = 67, N = 83, K = 700; /* K spans two K blocks */
    vikt_model *m = vt_model(8);
    for (int q = 0; q < nk; q++)
        for (int t = 0; t < 4; t++) {
            problem p;
            problem_make(&p, M, N, K, t & 1, t >> 1, 21);
            mat whole = mat_make(M, N, 22), rows = mat_make(M, N, 22), cols = mat_make(M, N, 22);
            vikt__gemm_job j = job_for(&p, 0.7f, 1.3f, &whole);
            assert_int_equal(vikt__gemm_run(m, ks[q], &j), VIKT_OK);
            for (int64_t i = 0; i < M; i++) {
                vikt__gemm_job s = job_for(&p, 0.7f, 1.3f, &rows);
                s.M = 1;
                s.A = p.ta ? p.a.p + i : p.a.p + i * p.a.ld;
                s.C = rows.p + i * rows.ld;
                assert_int_equal(vikt__gemm_run(m, ks[q], &s), VIKT_OK);
            }
            for (int64_t x = 0; x < N; x += 19) {
                vikt__gemm_job s = job_for(&p, 0.7f, 1.3f, &cols);
                s.N = N - x < 19 ? N - x : 19;
                s.B = p.tb ? p.b.p + x * p.b.ld : p.b.p + x;
                s.C = cols.p + x;
                assert_int_equal(vikt__gemm_run(m, ks[q], &s), VIKT_OK);
            }
            if (memcmp(whole.p, rows.p, mat_bytes(&whole)) || memcmp(whole.p, cols.p, mat_bytes(&whole)))
                fail_msg("%s op=%c%c: strips differ from the whole product", ks[q]->name,
                         t & 1 ? 'T' : 'N', t & 2 ? 'T' : 'N');
            mat_free(&whole);
            mat_free(&rows);
            mat_free(&cols);
            problem_free(&p);
        }
    vikt_model_destroy(m);
}

/* Forward and backward of the public matmul, single and multi-threaded. */
static void matmul_threads_bitwise_identical(void **state) {
    (void)state;
    const int64_t M = 96, K = 200, N = 130;
    float *x = malloc((size_t)(M * K) * sizeof(float)), *w = malloc((size_t)(K * N) * sizeof(float));
    float *out[2], *gx[2], *gw[2];
    vt_fill(x, M * K, 1, -1, 1);
    vt_fill(w, K * N, 2, -1, 1);
    for (int r = 0; r < 2; r++) {
        vikt_model *m = vt_model(4);
        assert_int_equal(vikt_set_num_threads(m, r ? 3 : 1), VIKT_OK);
        vikt_tensor *tx, *tw;
        assert_int_equal(vikt_tensor_create(m, 2, (int64_t[]){M, K}, x, 1, &tx), VIKT_OK);
        assert_int_equal(vikt_tensor_create(m, 2, (int64_t[]){K, N}, w, 1, &tw), VIKT_OK);
        vikt_step_begin(m);
        vikt_tensor *y = vikt_matmul(m, tx, tw);
        assert_non_null(y);
        assert_int_equal(vikt_backward(m, vikt_sum(m, vikt_square(m, y))), VIKT_OK);
        out[r] = malloc((size_t)(M * N) * sizeof(float));
        gx[r] = malloc((size_t)(M * K) * sizeof(float));
        gw[r] = malloc((size_t)(K * N) * sizeof(float));
        memcpy(out[r], vikt_tensor_data(y), (size_t)(M * N) * sizeof(float));
        memcpy(gx[r], vikt_tensor_grad(tx), (size_t)(M * K) * sizeof(float));
        memcpy(gw[r], vikt_tensor_grad(tw), (size_t)(K * N) * sizeof(float));
        assert_int_equal(vikt_model_errcode(m), VIKT_OK);
        vikt_model_destroy(m);
    }
    assert_memory_equal(out[0], out[1], (size_t)(M * N) * sizeof(float));
    assert_memory_equal(gx[0], gx[1], (size_t)(M * K) * sizeof(float));
    assert_memory_equal(gw[0], gw[1], (size_t)(K * N) * sizeof(float));
    for (int r = 0; r < 2; r++) free(out[r]), free(gx[r]), free(gw[r]);
    free(x);
    free(w);
}

/* ---------------------------------------------------------------- API */

static void thread_and_isa_api(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    assert_int_equal(vikt_num_threads(m), 1);
    assert_int_equal(vikt_num_threads(NULL), 0);
    assert_int_equal(vikt_set_num_threads(NULL, 2), VIKT_ERR_NULL);
    assert_int_equal(vikt_set_num_threads(m, 0), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_set_num_threads", NULL);
    assert_int_equal(vikt_set_num_threads(m, 65), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_set_num_threads", NULL);
    assert_int_equal(vikt_num_threads(m), 1);
    assert_int_equal(vikt_set_num_threads(m, 4), VIKT_OK);
    assert_int_equal(vikt_set_num_threads(m, 2), VIKT_OK); /* a new pool replaces the old */
    assert_int_equal(vikt_num_threads(m), 2);
    vikt_model_destroy(m); /* joins the workers; the test allocator sees no leak */

    const char *isa = vikt_gemm_isa();
    assert_non_null(isa);
    assert_ptr_equal(vikt__gemm_kernel_find(isa), vikt__gemm_kernel_default());
    const char *forced = getenv("VIKT_ISA");
    if (forced && vikt__gemm_kernel_find(forced)) assert_string_equal(isa, forced);
    assert_non_null(vikt__gemm_kernel_find("scalar"));
    assert_null(vikt__gemm_kernel_find("sse9"));
    assert_null(vikt__gemm_kernel_find(NULL));
}

/* A packing buffer that cannot be had is VIKT_ERR_NOMEM with C unchanged,
 * and matmul records it; the next call (memory back) works. */
static void out_of_memory(void **state) {
    (void)state;
    const vikt__gemm_kernel *ks[8];
    int nk = kernels_under_test(ks);
    for (int q = 0; q < nk; q++) {
        vt_alloc_reset();
        vikt_model *m = vt_model(6);
        problem p;
        problem_make(&p, 40, 50, 60, 0, 0, 3);
        mat c = mat_make(40, 50, 4);
        mat keep = mat_make(40, 50, 4);
        vikt__gemm_job j = job_for(&p, 1.0f, 1.0f, &c);
        vt_stats.fail_from = vt_stats.calls + 1;
        int rc = vikt__gemm_run(m, ks[q], &j);
        vt_stats.fail_from = 0;
        if (ks[q]->ws_floats(&j) == 0) {
            assert_int_equal(rc, VIKT_OK); /* the scalar kernel needs no buffer */
        } else {
            assert_int_equal(rc, VIKT_ERR_NOMEM);
            assert_memory_equal(c.p, keep.p, mat_bytes(&c));
        }
        assert_int_equal(vikt__gemm_run(m, ks[q], &j), VIKT_OK);
        /* A second product of the same shape allocates nothing. */
        int64_t calls = vt_stats.calls;
        assert_int_equal(vikt__gemm_run(m, ks[q], &j), VIKT_OK);
        assert_int_equal(vt_stats.calls, calls);
        mat_free(&c);
        mat_free(&keep);
        problem_free(&p);
        vikt_model_destroy(m);
    }

    /* Through the op: the error names vikt_matmul. */
    vt_alloc_reset();
    vikt_model *m = vt_model(7);
    vikt_tensor *a = vikt_ones(m, 2, (int64_t[]){64, 64});
    vikt_tensor *b = vikt_ones(m, 2, (int64_t[]){64, 64});
    /* op(B) = Bᵀ: every SIMD kernel packs (no direct path). */
    vikt_tensor *y0 = vikt_matmul_t(m, a, b, 0, 1); /* reserves the arena and the buffers */
    assert_non_null(y0);
    vikt__gemm_release(m);
    vt_stats.fail_from = vt_stats.calls + 1;
    vikt_tensor *y = vikt_matmul_t(m, a, b, 0, 1);
    vt_stats.fail_from = 0;
    if (strcmp(vikt_gemm_isa(), "scalar") != 0) {
        assert_null(y);
        vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_matmul", "64x64x64");
    }
    vikt_model_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thread_and_isa_api),
        cmocka_unit_test(nan_contract),
        cmocka_unit_test(out_of_memory),
        cmocka_unit_test(tiling_does_not_change_results),
        cmocka_unit_test(threads_bitwise_identical),
        cmocka_unit_test(matmul_threads_bitwise_identical),
        cmocka_unit_test(kernels_match_reference),
    };
    if (getenv("VIKT_TEST_FILTER")) cmocka_set_test_filter(getenv("VIKT_TEST_FILTER"));
    return cmocka_run_group_tests_name("gemm", tests, NULL, NULL);
}
