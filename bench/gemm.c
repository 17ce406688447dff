/* GEMM speed: vikt's kernels next to OpenBLAS's cblas_sgemm in the same
 * process, and the machine's FMA peak, as lines of the form
 *
 *   gemm isa=I shape=MxNxK op=NN threads=T vikt_gflops=X openblas_gflops=Y ratio=R
 *   peak isa=I threads=T gflops=P
 *
 * for square 64..2048 (NN) and the MLP training products 64x256x784 (NN,
 * X·W), 784x256x64 (TN, Xᵀ·dY) and 64x784x256 (NT, dY·Wᵀ), at 1 and 2
 * threads, for the best kernel and for avx2. Each figure is the best of
 * several timed repetitions after a warm-up; C = 1·op(A)·op(B) + 0·C with
 * dense leading dimensions. Built by `make bench-gemm`, which links the
 * library's objects (to force a kernel) and OpenBLAS when libopenblas-dev is
 * installed (-DVIKT_BENCH_OPENBLAS); without it the OpenBLAS columns say "na".
 *
 * Not a test: nothing here fails on a slow result. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, setenv, execv */
#include "vikt.h"
#include "kernels/gemm.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef VIKT_BENCH_OPENBLAS
#include <cblas.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int64_t M, N, K;
    const char *op;
} gemm_case;

static const gemm_case cases[] = {
    {64, 64, 64, "NN"},      {128, 128, 128, "NN"},    {256, 256, 256, "NN"},
    {512, 512, 512, "NN"},   {1024, 1024, 1024, "NN"}, {2048, 2048, 2048, "NN"},
    {64, 256, 784, "NN"},    {784, 256, 64, "TN"},     {64, 784, 256, "NT"},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

typedef struct {
    const gemm_case *c;
    int ta, tb;
    int64_t lda, ldb, ldc;
    float *A, *B, *C;
} operands;

static void operands_make(operands *o, const gemm_case *c) {
    o->c = c;
    o->ta = c->op[0] == 'T';
    o->tb = c->op[1] == 'T';
    o->lda = o->ta ? c->M : c->K;
    o->ldb = o->tb ? c->K : c->N;
    o->ldc = c->N;
    size_t na = (size_t)(c->M * c->K), nb = (size_t)(c->K * c->N), nc = (size_t)(c->M * c->N);
    /* 64-byte aligned, as vikt's tensors are. */
    o->A = aligned_alloc(64, (na * sizeof(float) + 63) / 64 * 64);
    o->B = aligned_alloc(64, (nb * sizeof(float) + 63) / 64 * 64);
    o->C = aligned_alloc(64, (nc * sizeof(float) + 63) / 64 * 64);
    if (!o->A || !o->B || !o->C) {
        fprintf(stderr, "bench-gemm: out of memory\n");
        exit(1);
    }
    uint32_t s = 12345;
    for (size_t i = 0; i < na; i++) o->A[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (size_t i = 0; i < nb; i++) o->B[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    memset(o->C, 0, nc * sizeof(float));
}

static void operands_free(operands *o) {
    free(o->A);
    free(o->B);
    free(o->C);
}

typedef void (*run_fn)(const operands *o, void *ctx);

typedef struct {
    vikt_model *m;
    const vikt__gemm_kernel *k;
} vikt_ctx;

static void run_vikt(const operands *o, void *ctx) {
    vikt_ctx *v = ctx;
    vikt__gemm_job j = {o->ta, o->tb, o->c->M, o->c->N, o->c->K, 1.0f, 0.0f,
                        o->A,  o->lda, o->B,   o->ldb,  o->C,     o->ldc};
    if (vikt__gemm_run(v->m, v->k, &j)) {
        fprintf(stderr, "bench-gemm: vikt__gemm_run failed\n");
        exit(1);
    }
}

#ifdef VIKT_BENCH_OPENBLAS
static void run_openblas(const operands *o, void *ctx) {
    (void)ctx;
    cblas_sgemm(CblasRowMajor, o->ta ? CblasTrans : CblasNoTrans, o->tb ? CblasTrans : CblasNoTrans,
                (blasint)o->c->M, (blasint)o->c->N, (blasint)o->c->K, 1.0f, o->A, (blasint)o->lda,
                o->B, (blasint)o->ldb, 0.0f, o->C, (blasint)o->ldc);
}
#endif

/* Best GFLOP/s over reps repetitions of at least min_s seconds each, after
 * warm-up. Many short repetitions: the best of them is the machine's speed
 * even when other work shares it now and then (best, not mean, because
 * interference only ever slows a repetition down). */
static double measure(const operands *o, run_fn fn, void *ctx) {
    const double flops = 2.0 * (double)o->c->M * (double)o->c->N * (double)o->c->K;
    const double min_s = 0.02;
    const int reps = 15;
    /* Warm up and size one repetition. */
    int iters = 1;
    for (;;) {
        double t0 = now();
        for (int i = 0; i < iters; i++) fn(o, ctx);
        double dt = now() - t0;
        if (dt >= min_s / 2) break;
        iters *= 2;
    }
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < iters; i++) fn(o, ctx);
        double dt = now() - t0;
        double g = flops * iters / dt * 1e-9;
        if (g > best) best = g;
    }
    return best;
}

/* ----------------------------------------------------------- FMA peak */

#if defined(__x86_64__) && defined(__GNUC__)
/* Independent FMA chains (16 for AVX-512, 12 for AVX2: more than latency x
 * ports on any x86 core, few enough to stay in registers with the two
 * constants); n iterations. */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define CHAINS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
__attribute__((target("avx512f,fma"))) static float peak_avx512(int64_t n) {
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
#define DECL(i) __m512 a##i = _mm512_set1_ps((float)i);
    CHAINS(DECL)
#undef DECL
    for (int64_t t = 0; t < n; t++) {
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, x, y);
        CHAINS(STEP)
#undef STEP
        __asm__("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7));
    }
    __m512 s = _mm512_setzero_ps();
#define SUM(i) s = _mm512_add_ps(s, a##i);
    CHAINS(SUM)
#undef SUM
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float peak_avx2(int64_t n) {
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
#define DECL(i) __m256 a##i = _mm256_set1_ps((float)i);
    CHAINS12(DECL)
#undef DECL
    for (int64_t t = 0; t < n; t++) {
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, x, y);
        CHAINS12(STEP)
#undef STEP
        __asm__("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7));
    }
    __m256 s = _mm256_setzero_ps();
#define SUM(i) s = _mm256_add_ps(s, a##i);
    CHAINS12(SUM)
#undef SUM
    float f[8];
    _mm256_storeu_ps(f, s);
    return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}
#endif

typedef struct {
    const char *isa;
    int64_t n;
    double flops;
    volatile float sink;
} peak_job;

static void *peak_thread(void *p) {
    peak_job *j = p;
#if defined(__x86_64__) && defined(__GNUC__)
    if (strcmp(j->isa, "avx512") == 0) {
        j->sink = peak_avx512(j->n);
        j->flops = (double)j->n * 16 * 16 * 2; /* chains x lanes x 2 */
    } else {
        j->sink = peak_avx2(j->n);
        j->flops = (double)j->n * 12 * 8 * 2;
    }
#else
    (void)j;
#endif
    return NULL;
}

/* GFLOP/s of FMA loops on `threads` threads at once, best of 5. */
static double peak(const char *isa, int threads) {
    double best = 0;
    for (int r = 0; r < 6; r++) {
        peak_job jobs[2];
        pthread_t th[2];
        double t0 = now();
        for (int t = 0; t < threads; t++) {
            jobs[t].isa = isa;
            jobs[t].n = 20 * 1000 * 1000;
            if (t) pthread_create(&th[t], NULL, peak_thread, &jobs[t]);
        }
        peak_thread(&jobs[0]);
        for (int t = 1; t < threads; t++) pthread_join(th[t], NULL);
        double dt = now() - t0, flops = 0;
        for (int t = 0; t < threads; t++) flops += jobs[t].flops;
        if (r > 0 && flops / dt * 1e-9 > best) best = flops / dt * 1e-9; /* r = 0 warms up */
    }
    return best;
}

/* ------------------------------------------------------------------ main */

#ifdef VIKT_BENCH_OPENBLAS
/* OpenBLAS picks its kernels from the CPU model and falls back to an old
 * generic core (Prescott: SSE3) on CPUs newer than its release (0.3.21 does
 * not know Emerald Rapids). Comparing against that would flatter vikt, so
 * when OpenBLAS chose a pre-AVX2 core on a CPU with AVX2 or AVX-512, run
 * again with OPENBLAS_CORETYPE naming the matching OpenBLAS core (SkylakeX /
 * Haswell); a value the user set is kept. */
static void fix_openblas_core(char **argv) {
    static const char *const weak[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                       "Sandybridge", "Atom", "Katmai", "Coppermine",
                                       "Northwood", "Banias", "Unknown"};
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = openblas_get_corename();
    int is_weak = 0;
    for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++)
        if (core && strcmp(core, weak[i]) == 0) is_weak = 1;
    const char *want = vikt__gemm_kernel_find("avx512") ? "SkylakeX"
                       : vikt__gemm_kernel_find("avx2") ? "Haswell"
                                                        : NULL;
    if (!is_weak || !want) return;
    printf("# OpenBLAS chose core %s on this CPU; running again with OPENBLAS_CORETYPE=%s\n",
           core, want);
    fflush(stdout);
    if (setenv("OPENBLAS_CORETYPE", want, 1) == 0) execv("/proc/self/exe", argv);
    printf("# could not run again; OpenBLAS figures use core %s\n", core);
}
#endif

int main(int argc, char **argv) {
#ifdef VIKT_BENCH_OPENBLAS
    fix_openblas_core(argv);
#endif
    /* `gemm peak` prints only the peak lines, `gemm cases` only the products. */
    int do_cases = argc < 2 || strcmp(argv[1], "peak") != 0;
    int do_peak = argc < 2 || strcmp(argv[1], "cases") != 0;
    const vikt__gemm_kernel *isas[2];
    int nisa = 0;
    isas[nisa++] = vikt__gemm_kernel_default();
    const vikt__gemm_kernel *avx2 = vikt__gemm_kernel_find("avx2");
    if (avx2 && avx2 != isas[0]) isas[nisa++] = avx2;

    printf("# vikt %s, kernels:", vikt_version());
    for (int i = 0; i < nisa; i++) printf(" %s", isas[i]->name);
#ifdef VIKT_BENCH_OPENBLAS
    printf(", %s (core %s)\n", OPENBLAS_VERSION, openblas_get_corename());
#else
    printf(", OpenBLAS not installed (apt-get install libopenblas-dev)\n");
#endif
    fflush(stdout);

    for (int threads = 1; threads <= 2 && do_cases; threads++) {
        double ob[NCASES];
        double vk[2][NCASES];
        for (int c = 0; c < NCASES; c++) {
            operands o;
            operands_make(&o, &cases[c]);
            for (int i = 0; i < nisa; i++) {
                vikt_model *m;
                if (vikt_model_create(NULL, 1, &m) || vikt_set_num_threads(m, threads)) {
                    fprintf(stderr, "bench-gemm: cannot make a model with %d threads\n", threads);
                    return 1;
                }
                vikt_ctx v = {m, isas[i]};
                vk[i][c] = measure(&o, run_vikt, &v);
                vikt_model_destroy(m);
            }
            ob[c] = 0;
#ifdef VIKT_BENCH_OPENBLAS
            openblas_set_num_threads(threads);
            ob[c] = measure(&o, run_openblas, NULL);
            /* OpenBLAS's workers spin for a while after a call; let them go
             * to sleep before vikt's threads are timed again. */
            if (threads > 1) nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
#endif
            operands_free(&o);
        }
        for (int i = 0; i < nisa; i++)
            for (int c = 0; c < NCASES; c++) {
                const gemm_case *g = &cases[c];
                printf("gemm isa=%s shape=%lldx%lldx%lld op=%s threads=%d vikt_gflops=%.1f ",
                       isas[i]->name, (long long)g->M, (long long)g->N, (long long)g->K, g->op,
                       threads, vk[i][c]);
                if (ob[c] > 0)
                    printf("openblas_gflops=%.1f ratio=%.3f\n", ob[c], vk[i][c] / ob[c]);
                else
                    printf("openblas_gflops=na ratio=na\n");
            }
        fflush(stdout);
    }
#if defined(__x86_64__) && defined(__GNUC__)
    for (int i = 0; i < nisa && do_peak; i++) {
        const char *name = isas[i]->name;
        if (strcmp(name, "avx512") != 0 && strcmp(name, "avx2") != 0) continue;
        for (int threads = 1; threads <= 2; threads++)
            printf("peak isa=%s threads=%d gflops=%.1f\n", name, threads, peak(name, threads));
    }
#endif
    return 0;
}
