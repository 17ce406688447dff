/* The one internal GEMM entry point: pick the kernel, split the output among
 * the model's threads, provide the packing buffers.
 *
 * Kernel choice. Once per process, on first use: VIKT_ISA=scalar|avx2|avx512|
 * neon forces a kernel if it is built and the CPU and OS can run it (anything
 * else is ignored); otherwise the fastest the CPU has. On x86-64 that is read
 * from CPUID and XGETBV (the OS must save the YMM / ZMM state), so one binary
 * built for baseline x86-64 runs everywhere. AVX-512 is preferred over AVX2
 * except on AMD family 19h (Zen 3/4), whose AVX-512 runs on the same two
 * 256-bit FMA pipes as AVX2 and measures no faster (OpenBLAS's AVX-512 sgemm
 * is 2-7 % slower than its AVX2 one there); on Intel server cores the 512-bit
 * kernel is close to 2x (docs/performance.md). The choice is cached in one
 * atomic pointer: every thread that races to fill it computes the same value,
 * so the race is benign and the cache is the only static mutable state.
 *
 * Threads. With a model that has n > 1 threads and a product big enough to
 * pay for waking them, C is cut into n blocks of whole register tiles: rows
 * when M >= N (each thread then packs all of B, the smaller operand), columns
 * otherwise. K is never split and every element is computed by the same
 * instructions in the same order whatever the block it falls in, so results
 * are bitwise identical for every thread count.
 *
 * Buffers. Each thread's packing buffer belongs to the model, is allocated by
 * the calling thread through the model's allocator before the workers start,
 * and is kept: repeated products of the same shapes allocate nothing. */
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

#if !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
#endif

/* ------------------------------------------------------------ the scalar kernel */

static size_t scalar_ws(const vikt__gemm_job *j) {
    (void)j;
    return 0;
}

static void scalar_run(const vikt__gemm_job *j, float *ws) {
    (void)ws;
    vikt__gemm_scalar(j->ta, j->tb, j->M, j->N, j->K, j->alpha, j->A, j->lda, j->B, j->ldb,
                      j->beta, j->C, j->ldc);
}

const vikt__gemm_kernel vikt__gemm_kernel_scalar = {"scalar", 1, 1, scalar_ws, scalar_run};

/* ------------------------------------------------------------ CPU features */

#ifdef VIKT__GEMM_X86
#include <cpuid.h>

typedef struct {
    int avx2, avx512, zen34;
} x86_features;

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static x86_features x86_detect(void) {
    x86_features f = {0, 0, 0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff;
    if (!osxsave || !avx || !fma) return f;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return f; /* the OS does not save XMM and YMM */
    if (__get_cpuid_max(0, NULL) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = (b >> 5) & 1;
    /* AVX-512F, and the OS saves opmask and both halves of the ZMM file. */
    f.avx512 = f.avx2 && ((b >> 16) & 1) && (xcr0 & 0xe0) == 0xe0;
    unsigned vendor[3];
    __cpuid(0, a, vendor[0], vendor[2], vendor[1]);
    f.zen34 = memcmp(vendor, "AuthenticAMD", 12) == 0 && family == 0x19;
    return f;
}
#endif

/* Is kernel k usable here? */
static int usable(const vikt__gemm_kernel *k) {
    if (k == &vikt__gemm_kernel_scalar) return 1;
#ifdef VIKT__GEMM_X86
    x86_features f = x86_detect();
    if (k == &vikt__gemm_kernel_avx2) return f.avx2;
    if (k == &vikt__gemm_kernel_avx512) return f.avx512;
#endif
#ifdef VIKT__GEMM_NEON
    if (k == &vikt__gemm_kernel_neon) return 1; /* Advanced SIMD is part of AArch64 */
#endif
    return 0;
}

static const vikt__gemm_kernel *const kernels[] = {
#ifdef VIKT__GEMM_X86
    &vikt__gemm_kernel_avx512,
    &vikt__gemm_kernel_avx2,
#endif
#ifdef VIKT__GEMM_NEON
    &vikt__gemm_kernel_neon,
#endif
    &vikt__gemm_kernel_scalar,
};

const vikt__gemm_kernel *vikt__gemm_kernel_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (strcmp(kernels[i]->name, name) == 0) return usable(kernels[i]) ? kernels[i] : NULL;
    return NULL;
}

static const vikt__gemm_kernel *choose(void) {
    const vikt__gemm_kernel *k = vikt__gemm_kernel_find(getenv("VIKT_ISA"));
    if (k) return k;
#ifdef VIKT__GEMM_X86
    x86_features f = x86_detect();
    if (f.avx512 && !f.zen34) return &vikt__gemm_kernel_avx512;
    if (f.avx2) return &vikt__gemm_kernel_avx2;
#endif
#ifdef VIKT__GEMM_NEON
    return &vikt__gemm_kernel_neon;
#endif
    return &vikt__gemm_kernel_scalar;
}

#if !defined(__STDC_NO_ATOMICS__)
static _Atomic(const vikt__gemm_kernel *) chosen;

const vikt__gemm_kernel *vikt__gemm_kernel_default(void) {
    const vikt__gemm_kernel *k = atomic_load_explicit(&chosen, memory_order_acquire);
    if (!k) {
        k = choose();
        atomic_store_explicit(&chosen, k, memory_order_release);
    }
    return k;
}
#else
const vikt__gemm_kernel *vikt__gemm_kernel_default(void) { return choose(); }
#endif

const char *vikt_gemm_isa(void) { return vikt__gemm_kernel_default()->name; }

/* ------------------------------------------------------------------ buffers */

struct vikt__gemm_ws {
    float *buf[VIKT__MAX_THREADS];
    size_t floats[VIKT__MAX_THREADS];
};

void vikt__gemm_release(vikt_model *m) {
    struct vikt__gemm_ws *ws = m->gemm_ws;
    if (!ws) return;
    for (int i = 0; i < VIKT__MAX_THREADS; i++)
        vikt__free(m, ws->buf[i], ws->floats[i] * sizeof(float));
    vikt__free(m, ws, sizeof *ws);
    m->gemm_ws = NULL;
}

/* Make thread t's buffer hold at least n floats. */
static int ensure_ws(vikt_model *m, int t, size_t n) {
    if (!m->gemm_ws) {
        m->gemm_ws = vikt__alloc(m, sizeof *m->gemm_ws);
        if (!m->gemm_ws) return VIKT_ERR_NOMEM;
        memset(m->gemm_ws, 0, sizeof *m->gemm_ws);
    }
    struct vikt__gemm_ws *ws = m->gemm_ws;
    if (ws->floats[t] >= n) return VIKT_OK;
    if (n > SIZE_MAX / sizeof(float)) return VIKT_ERR_NOMEM;
    float *p = vikt__alloc(m, n * sizeof(float));
    if (!p) return VIKT_ERR_NOMEM;
    vikt__free(m, ws->buf[t], ws->floats[t] * sizeof(float));
    ws->buf[t] = p;
    ws->floats[t] = n;
    return VIKT_OK;
}

/* -------------------------------------------------------------------- driver */

/* Below this many multiply-adds one thread is faster than waking others
 * (a wake-up and join costs a few microseconds; 2^20 FMAs take ~10 µs). */
#define PARALLEL_MIN_FMAS ((int64_t)1 << 20)

typedef struct {
    const vikt__gemm_kernel *k;
    vikt__gemm_job jobs[VIKT__MAX_THREADS];
    float *ws[VIKT__MAX_THREADS];
} par_ctx;

static void par_task(void *arg, int i) {
    par_ctx *p = arg;
    p->k->run(&p->jobs[i], p->ws[i]);
}

/* C = beta·C without reading A or B (alpha = 0 or K = 0). */
static void scale_only(const vikt__gemm_job *j) {
    for (int64_t i = 0; i < j->M; i++) {
        float *c = j->C + i * j->ldc;
        if (j->beta == 0.0f)
            for (int64_t x = 0; x < j->N; x++) c[x] = 0.0f;
        else if (j->beta != 1.0f)
            for (int64_t x = 0; x < j->N; x++) c[x] *= j->beta;
    }
}

/* How many threads, and which way to cut C. */
static int plan(const vikt_model *m, const vikt__gemm_kernel *k, const vikt__gemm_job *j,
                int *by_rows) {
    int64_t row_tiles = (j->M + k->mr - 1) / k->mr, col_tiles = (j->N + k->nr - 1) / k->nr;
    *by_rows = j->M >= j->N;
    int n = vikt_num_threads(m);
    if (n <= 1 || !m->pool) return 1;
    /* M·N·K without overflow: compare in steps. */
    if (j->M * j->N < PARALLEL_MIN_FMAS / j->K + 1) return 1;
    int64_t tiles = *by_rows ? row_tiles : col_tiles;
    if (tiles < n) { /* too few tiles that way: try the other */
        int64_t other = *by_rows ? col_tiles : row_tiles;
        if (other > tiles) {
            *by_rows = !*by_rows;
            tiles = other;
        }
    }
    if (tiles < n) n = (int)tiles;
    return n;
}

int vikt__gemm_run(vikt_model *m, const vikt__gemm_kernel *k, const vikt__gemm_job *j) {
    if (j->M <= 0 || j->N <= 0) return VIKT_OK;
    if (j->alpha == 0.0f || j->K <= 0) {
        scale_only(j);
        return VIKT_OK;
    }
    int by_rows;
    int n = plan(m, k, j, &by_rows);
    par_ctx p;
    p.k = k;
    int64_t unit = by_rows ? k->mr : k->nr, extent = by_rows ? j->M : j->N;
    int64_t tiles = (extent + unit - 1) / unit;
    for (int t = 0; t < n; t++) {
        int64_t lo = tiles * t / n * unit, hi = tiles * (t + 1) / n * unit;
        if (hi > extent) hi = extent;
        vikt__gemm_job *s = &p.jobs[t];
        *s = *j;
        if (by_rows) {
            s->M = hi - lo;
            s->A = j->ta ? j->A + lo : j->A + lo * j->lda;
            s->C = j->C + lo * j->ldc;
        } else {
            s->N = hi - lo;
            s->B = j->tb ? j->B + lo * j->ldb : j->B + lo;
            s->C = j->C + lo;
        }
        size_t need = k->ws_floats(s);
        p.ws[t] = NULL;
        if (need) {
            if (ensure_ws(m, t, need)) return VIKT_ERR_NOMEM;
            p.ws[t] = m->gemm_ws->buf[t];
        }
    }
    if (n == 1)
        par_task(&p, 0);
    else
        vikt__pool_run(m->pool, n, par_task, &p);
    return VIKT_OK;
}

int vikt__gemm_reserve(vikt_model *m, const char *opname, int threads, int trans_a, int trans_b,
                       int64_t M, int64_t N, int64_t K) {
    vikt__gemm_job j = {trans_a != 0, trans_b != 0, M, N, K, 1.0f, 0.0f, NULL, 0, NULL, 0, NULL, 0};
    size_t need = vikt__gemm_kernel_default()->ws_floats(&j);
    for (int t = 0; need && t < threads; t++)
        if (ensure_ws(m, t, need))
            return vikt__fail(m, VIKT_ERR_NOMEM,
                              "%s: out of memory for the packing buffers of a %lldx%lldx%lld "
                              "product",
                              opname, (long long)M, (long long)N, (long long)K);
    return VIKT_OK;
}

void vikt__gemm_on(vikt_model *m, int t, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                   float beta, float *C, int64_t ldc) {
    vikt__gemm_job j = {trans_a != 0, trans_b != 0, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc};
    if (M <= 0 || N <= 0) return;
    if (alpha == 0.0f || K <= 0) {
        scale_only(&j);
        return;
    }
    const vikt__gemm_kernel *k = vikt__gemm_kernel_default();
    k->run(&j, k->ws_floats(&j) ? m->gemm_ws->buf[t] : NULL);
}

int vikt__gemm(vikt_model *m, const char *opname, int trans_a, int trans_b, int64_t M,
               int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
               int64_t ldb, float beta, float *C, int64_t ldc) {
    vikt__gemm_job j = {trans_a != 0, trans_b != 0, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc};
    int rc = vikt__gemm_run(m, vikt__gemm_kernel_default(), &j);
    if (rc)
        return vikt__fail(m, rc, "%s: out of memory for the packing buffers of a %lldx%lldx%lld "
                                 "product",
                          opname, (long long)M, (long long)N, (long long)K);
    return VIKT_OK;
}
