/* AVX-512F GEMM kernel (x86-64), compiled with -mavx512f -mfma for this file
 * only and chosen at run time by dispatch.c.
 *
 * Register tile 8 x 32: 8 rows of C, two 16-float zmm vectors per row, so
 * 16 accumulators + 2 vectors of B + 1 broadcast of A. Each k step loads 2
 * vectors of B (packed, aligned), broadcasts 8 values of A and issues 16
 * FMAs: 8 cycles for the two 512-bit FMA ports of Intel server cores, 10
 * loads (the 2-3 load ports have room), and 16 independent chains cover the
 * 4-cycle FMA latency (8 needed). Measured on the development Xeon (Emerald
 * Rapids, single thread, best of 5; GFLOP/s for MR = 8 / 12 / 14, NR = 32):
 *
 *     64^3   144 / 130 / 128      64x256x784 NN  139 / 133 / 133
 *     128^3  150 / 144 / 136      784x256x64 TN  159 / 156 / 157
 *     256^3  159 / 155 / 152      64x784x256 NT  133 / 130 / 129
 *     1024^3 150 / 150 / 150
 *
 * Taller tiles load less per FMA but waste more of the last row panel
 * (M = 64 is 5 x 12 + 4 rows) and hold more registers; on this core loads
 * are not the limit, so 8 rows win or tie everywhere.
 *
 * Blocking: KC = 384, so an A panel (8 x 384 x 4 B = 12 KB) stays in the
 * 48 KB L1 while B panels (32 x 384 x 4 B = 48 KB, read once per call)
 * stream past it; NC = 768, so the packed B block (384 x 768 x 4 B = 1.2 MB)
 * stays in the 2 MB L2 next to the streams of A and C. Blocks of 2.3 MB and
 * more lost 20-30 % at 1024^2 and 2048^2; 1-1.5 MB blocks (KC 256-448) were
 * all within 2 %. Blocks are equalized (see gemm_driver.h).
 *
 * Buffers: no allocation here. The driver's packing buffer (KC x NC + MR x KC
 * floats, at most 1.2 MB per thread) is the model's, allocated once by
 * dispatch.c through the model's allocator and reused by every later
 * product; a stack buffer of that size would overflow the small stacks of
 * embedded hosts and worker threads.
 *
 * Edges: rows past M use a micro-kernel instantiated for exactly mr rows
 * (1..8, all from one always-inline body, so the arithmetic per element is
 * identical); columns past N use masked loads and stores, which neither read
 * nor write the padding of a leading dimension. */
#include "gemm.h"

#ifdef VIKT__GEMM_X86
#include <immintrin.h>

#ifndef GK_MR
#define GK_MR 8
#endif
#define GK_NR 32
#ifndef GK_KC
#define GK_KC 384
#endif
#ifndef GK_NC
#define GK_NC 768
#endif
#define GK_PREFIX avx512_

#include "gemm_x86.h"

/* The stores for one row: C = alpha·acc (+ beta·C on the first K block,
 * + C on later ones), through masks m0 and m1 for the two vectors. */
GK_INLINE void store_row(float *c, __m512 x0, __m512 x1, __m512 va, __m512 vb, int mode,
                         __mmask16 m0, __mmask16 m1) {
    __m512 r0, r1;
    if (mode == 0) { /* first block, beta = 0: C is not read */
        r0 = _mm512_mul_ps(va, x0);
        r1 = _mm512_mul_ps(va, x1);
    } else {
        __m512 c0 = _mm512_maskz_loadu_ps(m0, c), c1 = _mm512_maskz_loadu_ps(m1, c + 16);
        if (mode == 1) { /* first block: beta·C */
            c0 = _mm512_mul_ps(vb, c0);
            c1 = _mm512_mul_ps(vb, c1);
        }
        r0 = _mm512_fmadd_ps(va, x0, c0);
        r1 = _mm512_fmadd_ps(va, x1, c1);
    }
    _mm512_mask_storeu_ps(c, m0, r0);
    _mm512_mask_storeu_ps(c + 16, m1, r1);
}

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

GK_INLINE void micro_body(const int MRV, int nr, int64_t kc, const float *ap, const float *bp,
                          float *c, int64_t ldc, float alpha, float beta, int first) {
#define DECL(r) __m512 c##r##_0 = _mm512_setzero_ps(), c##r##_1 = _mm512_setzero_ps();
    ROWS(DECL)
#undef DECL
#define PREF(r)                                                      \
    if (MRV > r) {                                                   \
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);      \
        _mm_prefetch((const char *)(c + r * ldc + 31), _MM_HINT_T0); \
    }
    ROWS(PREF)
#undef PREF
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#define FMA(r)                                        \
    if (MRV > r) {                                    \
        const __m512 a = _mm512_set1_ps(ap[r]);       \
        c##r##_0 = _mm512_fmadd_ps(a, b0, c##r##_0);  \
        c##r##_1 = _mm512_fmadd_ps(a, b1, c##r##_1);  \
    }
        ROWS(FMA)
#undef FMA
        ap += GK_MR;
        bp += GK_NR;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int mode = !first ? 2 : beta == 0.0f ? 0 : 1;
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff
                         : nr <= 16 ? (__mmask16)0
                                    : (__mmask16)((1u << (nr - 16)) - 1);
#define STORE(r) \
    if (MRV > r) store_row(c + r * ldc, c##r##_0, c##r##_1, va, vb, mode, m0, m1);
    ROWS(STORE)
#undef STORE
}

/* The same micro-kernel reading A and B where they are (no packing): row r
 * of op(A) at a + r·rsa with step csa along k, op(B) rows at b with stride
 * ldb (only for op(B) = B), edge columns through masked loads. The FMAs and
 * stores are those of micro_body, so both give identical results. */
GK_INLINE void direct_body(const int MRV, int nr, int64_t kc, const float *a, int64_t rsa,
                           int64_t csa, const float *b, int64_t ldb, float *c, int64_t ldc,
                           float alpha, float beta, int first) {
#define DECL(r)                                                                     \
    __m512 c##r##_0 = _mm512_setzero_ps(), c##r##_1 = _mm512_setzero_ps();         \
    const float *a##r = a + (MRV > r ? r : 0) * rsa;
    ROWS(DECL)
#undef DECL
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff
                         : nr <= 16 ? (__mmask16)0
                                    : (__mmask16)((1u << (nr - 16)) - 1);
    int64_t ka = 0;
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#define FMA(r)                                        \
    if (MRV > r) {                                    \
        const __m512 x = _mm512_set1_ps(a##r[ka]);    \
        c##r##_0 = _mm512_fmadd_ps(x, b0, c##r##_0);  \
        c##r##_1 = _mm512_fmadd_ps(x, b1, c##r##_1);  \
    }
        ROWS(FMA)
#undef FMA
        ka += csa;
        b += ldb;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int mode = !first ? 2 : beta == 0.0f ? 0 : 1;
#define STORE(r) \
    if (MRV > r) store_row(c + r * ldc, c##r##_0, c##r##_1, va, vb, mode, m0, m1);
    ROWS(STORE)
#undef STORE
}

#include "gemm_micro.h"

#define DIRECT(n)                                                                             \
    static void direct_##n(int nr, int64_t kc, const float *a, int64_t rsa, int64_t csa,     \
                           const float *b, int64_t ldb, float *c, int64_t ldc, float alpha,  \
                           float beta, int first) {                                          \
        direct_body(n, nr, kc, a, rsa, csa, b, ldb, c, ldc, alpha, beta, first);             \
    }
DIRECT(1)
DIRECT(2)
DIRECT(3)
DIRECT(4)
DIRECT(5)
DIRECT(6)
DIRECT(7)
DIRECT(8)
#undef DIRECT

typedef void (*direct_fn)(int, int64_t, const float *, int64_t, int64_t, const float *, int64_t,
                          float *, int64_t, float, float, int);
static const direct_fn direct_by_rows[9] = {NULL,     direct_1, direct_2, direct_3, direct_4,
                                            direct_5, direct_6, direct_7, direct_8};

static void gk_direct(int mr, int nr, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                      const float *b, int64_t ldb, float *c, int64_t ldc, float alpha,
                      float beta, int first) {
    direct_by_rows[mr](nr, kc, a, rsa, csa, b, ldb, c, ldc, alpha, beta, first);
}
#define GK_HAVE_DIRECT 1

#include "gemm_driver.h"

const vikt__gemm_kernel vikt__gemm_kernel_avx512 = {"avx512", GK_MR, GK_NR, avx512_ws_floats,
                                                    avx512_run};

#else
typedef int vikt__gemm_avx512_unused; /* ISO C wants a non-empty file */
#endif
