/* AVX2 + FMA GEMM kernel (x86-64), compiled with -mavx2 -mfma for this file
 * only and chosen at run time by dispatch.c.
 *
 * Register tile 6 x 16: 6 rows of C, two 8-float ymm vectors per row, so
 * 12 accumulators + 2 vectors of B + 1 broadcast of A = 15 of the 16 ymm
 * registers (the classic Haswell sgemm tile of BLIS and OpenBLAS). Each k
 * step loads 2 vectors of B, broadcasts 6 values of A and issues 12 FMAs:
 * 6 cycles for two FMA ports, 12 independent chains for a 4-5 cycle FMA
 * latency, 8 loads.
 *
 * Blocking: KC = 256, so the A panel (6 x 256 x 4 B = 6 KB) and the B panel
 * streamed past it (16 x 256 x 4 B = 16 KB) share a 32-48 KB L1; NC = 1536,
 * so the packed B block (256 x 1536 x 4 B = 1.5 MB) stays in a 1-2 MB L2
 * (Zen 4 has 1 MB: its block is read with the L3 prefetchers' help). On the
 * development Xeon every KC in 192..512 and NC in 768..1536 gave 78-82
 * GFLOP/s at 256^3..2048^3 (FMA peak 94), so the choice is for the L1/L2
 * sizes of other CPUs. Blocks are equalized (see gemm_driver.h).
 *
 * Buffers: no allocation here. The driver's packing buffer (KC x NC + MR x KC
 * floats, about 1.5 MB per thread) belongs to the model, allocated once by
 * dispatch.c through the model's allocator and reused by later products.
 *
 * Edges: rows past M use a micro-kernel instantiated for exactly mr rows
 * (1..6, one always-inline body, identical arithmetic per element); columns
 * past N use vmaskmov loads and stores, which neither read nor write the
 * padding of a leading dimension. */
#include "gemm.h"

#ifdef VIKT__GEMM_X86
#include <immintrin.h>

#define GK_MR 6
#define GK_NR 16
#ifndef GK_KC
#define GK_KC 256
#endif
#ifndef GK_NC
#define GK_NC 1536
#endif
#define GK_PREFIX avx2_

#include "gemm_x86.h"

/* Lane masks for the first n of 8 floats. */
static __m256i lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One row: C = alpha·acc (+ beta·C on the first K block, + C on later ones). */
GK_INLINE void store_row(float *c, __m256 x0, __m256 x1, __m256 va, __m256 vb, int mode,
                         int full, __m256i m0, __m256i m1) {
    __m256 r0, r1;
    if (mode == 0) { /* first block, beta = 0: C is not read */
        r0 = _mm256_mul_ps(va, x0);
        r1 = _mm256_mul_ps(va, x1);
    } else {
        __m256 c0, c1;
        if (full) {
            c0 = _mm256_loadu_ps(c);
            c1 = _mm256_loadu_ps(c + 8);
        } else {
            c0 = _mm256_maskload_ps(c, m0);
            c1 = _mm256_maskload_ps(c + 8, m1);
        }
        if (mode == 1) { /* first block: beta·C */
            c0 = _mm256_mul_ps(vb, c0);
            c1 = _mm256_mul_ps(vb, c1);
        }
        r0 = _mm256_fmadd_ps(va, x0, c0);
        r1 = _mm256_fmadd_ps(va, x1, c1);
    }
    if (full) {
        _mm256_storeu_ps(c, r0);
        _mm256_storeu_ps(c + 8, r1);
    } else {
        _mm256_maskstore_ps(c, m0, r0);
        _mm256_maskstore_ps(c + 8, m1, r1);
    }
}

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

GK_INLINE void micro_body(const int MRV, int nr, int64_t kc, const float *ap, const float *bp,
                          float *c, int64_t ldc, float alpha, float beta, int first) {
#define DECL(r) __m256 c##r##_0 = _mm256_setzero_ps(), c##r##_1 = _mm256_setzero_ps();
    ROWS(DECL)
#undef DECL
#define PREF(r)                                                      \
    if (MRV > r) {                                                   \
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);      \
        _mm_prefetch((const char *)(c + r * ldc + 15), _MM_HINT_T0); \
    }
    ROWS(PREF)
#undef PREF
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#define FMA(r)                                        \
    if (MRV > r) {                                    \
        const __m256 a = _mm256_broadcast_ss(ap + r); \
        c##r##_0 = _mm256_fmadd_ps(a, b0, c##r##_0);  \
        c##r##_1 = _mm256_fmadd_ps(a, b1, c##r##_1);  \
    }
        ROWS(FMA)
#undef FMA
        ap += GK_MR;
        bp += GK_NR;
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const int mode = !first ? 2 : beta == 0.0f ? 0 : 1;
    const int full = nr == GK_NR;
    const __m256i m0 = lanes(nr), m1 = lanes(nr - 8);
#define STORE(r) \
    if (MRV > r) store_row(c + r * ldc, c##r##_0, c##r##_1, va, vb, mode, full, m0, m1);
    ROWS(STORE)
#undef STORE
}

#include "gemm_micro.h"

#include "gemm_driver.h"

const vikt__gemm_kernel vikt__gemm_kernel_avx2 = {"avx2", GK_MR, GK_NR, avx2_ws_floats,
                                                  avx2_run};

#else
typedef int vikt__gemm_avx2_unused; /* ISO C wants a non-empty file */
#endif
