/* NEON (AArch64 Advanced SIMD) GEMM kernel, built only for aarch64 targets
 * and used there by dispatch.c (Advanced SIMD is part of every AArch64 CPU
 * that runs Linux, so no run-time check is needed).
 *
 * Register tile 8 x 12: 8 rows of C, three 4-float q vectors per row, so 24
 * accumulators + 3 vectors of B + 2 vectors holding 8 values of A = 29 of the
 * 32 v registers. Each k step loads 5 vectors and issues 24 by-element FMAs
 * (FMLA v.4s, v.4s, v.s[lane]), which needs no broadcasts; 24 independent
 * chains cover the FMA latency of wide cores (4 cycles x 4 pipes on
 * Neoverse V1/V2 needs 16). This is the tile of OpenBLAS's and BLIS's
 * Cortex-A57/Neoverse sgemm kernels.
 *
 * Blocking: KC = 256: the A panel (8 x 256 x 4 B = 8 KB) and one B panel
 * (12 x 256 x 4 B = 12 KB) fit a 32-64 KB L1; NC = 768 keeps the packed B
 * block (256 x 768 x 4 B = 768 KB) inside a 1 MB L2. Blocks are equalized
 * (see gemm_driver.h).
 *
 * Buffers: no allocation here; the driver's packing buffer (about 0.8 MB per
 * thread) belongs to the model (see dispatch.c).
 *
 * Edges: rows past M use a micro-kernel instantiated for exactly mr rows;
 * columns past N go through a small on-stack copy of the C tile, so the same
 * vector instructions run for full and partial tiles (identical results per
 * element) and the padding of a leading dimension is never touched. There is
 * no speed target under qemu; correctness is tested by `make check-neon`. */
#include "gemm.h"

#ifdef VIKT__GEMM_NEON
#include <arm_neon.h>

#define GK_MR 8
#define GK_NR 12
#define GK_KC 256
#define GK_NC 768
#define GK_PREFIX neon_

#define GK_INLINE static inline __attribute__((always_inline))

GK_INLINE void gk_tr4(const float *s, int64_t lds, float *d, int64_t ldd) {
    float32x4_t r0 = vld1q_f32(s), r1 = vld1q_f32(s + lds), r2 = vld1q_f32(s + 2 * lds),
                r3 = vld1q_f32(s + 3 * lds);
    float32x4x2_t t01 = vtrnq_f32(r0, r1), t23 = vtrnq_f32(r2, r3);
    vst1q_f32(d, vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0])));
    vst1q_f32(d + ldd, vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1])));
    vst1q_f32(d + 2 * ldd, vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0])));
    vst1q_f32(d + 3 * ldd, vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1])));
}

/* One row of 12: C = alpha·acc (+ beta·C on the first K block, + C later). */
GK_INLINE void store_row(float *c, float32x4_t x0, float32x4_t x1, float32x4_t x2, float alpha,
                         float beta, int mode) {
    float32x4_t r0, r1, r2;
    if (mode == 0) {
        r0 = vmulq_n_f32(x0, alpha);
        r1 = vmulq_n_f32(x1, alpha);
        r2 = vmulq_n_f32(x2, alpha);
    } else {
        float32x4_t c0 = vld1q_f32(c), c1 = vld1q_f32(c + 4), c2 = vld1q_f32(c + 8);
        if (mode == 1) {
            c0 = vmulq_n_f32(c0, beta);
            c1 = vmulq_n_f32(c1, beta);
            c2 = vmulq_n_f32(c2, beta);
        }
        r0 = vfmaq_n_f32(c0, x0, alpha);
        r1 = vfmaq_n_f32(c1, x1, alpha);
        r2 = vfmaq_n_f32(c2, x2, alpha);
    }
    vst1q_f32(c, r0);
    vst1q_f32(c + 4, r1);
    vst1q_f32(c + 8, r2);
}

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

GK_INLINE void micro_body(const int MRV, int nr, int64_t kc, const float *ap, const float *bp,
                          float *c, int64_t ldc, float alpha, float beta, int first) {
#define DECL(r)                                                                   \
    float32x4_t c##r##_0 = vdupq_n_f32(0), c##r##_1 = vdupq_n_f32(0), c##r##_2 = \
                                                                      vdupq_n_f32(0);
    ROWS(DECL)
#undef DECL
    for (int64_t k = 0; k < kc; k++) {
        const float32x4_t b0 = vld1q_f32(bp), b1 = vld1q_f32(bp + 4), b2 = vld1q_f32(bp + 8);
        const float32x4_t a03 = vld1q_f32(ap), a47 = vld1q_f32(ap + 4);
#define FMA(r)                                                             \
    if (MRV > r) {                                                         \
        c##r##_0 = vfmaq_laneq_f32(c##r##_0, b0, (r) < 4 ? a03 : a47, (r)&3); \
        c##r##_1 = vfmaq_laneq_f32(c##r##_1, b1, (r) < 4 ? a03 : a47, (r)&3); \
        c##r##_2 = vfmaq_laneq_f32(c##r##_2, b2, (r) < 4 ? a03 : a47, (r)&3); \
    }
        ROWS(FMA)
#undef FMA
        ap += GK_MR;
        bp += GK_NR;
    }
    const int mode = !first ? 2 : beta == 0.0f ? 0 : 1;
    if (nr == GK_NR) {
#define STORE(r) \
    if (MRV > r) store_row(c + r * ldc, c##r##_0, c##r##_1, c##r##_2, alpha, beta, mode);
        ROWS(STORE)
#undef STORE
        return;
    }
    /* Partial width: the same stores on a copy of the valid part. */
    float t[GK_NR];
#define STORE(r)                                                                   \
    if (MRV > r) {                                                                 \
        float *cr = c + r * ldc;                                                   \
        for (int x = 0; x < GK_NR; x++) t[x] = x < nr && mode != 0 ? cr[x] : 0.0f; \
        store_row(t, c##r##_0, c##r##_1, c##r##_2, alpha, beta, mode);             \
        for (int x = 0; x < nr; x++) cr[x] = t[x];                                 \
    }
    ROWS(STORE)
#undef STORE
}

#include "gemm_micro.h"

#include "gemm_driver.h"

const vikt__gemm_kernel vikt__gemm_kernel_neon = {"neon", GK_MR, GK_NR, neon_ws_floats,
                                                  neon_run};

#else
typedef int vikt__gemm_neon_unused; /* ISO C wants a non-empty file */
#endif
