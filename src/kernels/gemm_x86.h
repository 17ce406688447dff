/* Transposes that pack transposed operands, shared by the x86 kernels. Each
 * including file is compiled with its own ISA flags (both have AVX), so the
 * functions are static inline there and nothing here is built on its own. */
#ifndef VIKT_KERNELS_GEMM_X86_H
#define VIKT_KERNELS_GEMM_X86_H

#include <immintrin.h>
#include <stdint.h>

#define GK_INLINE static inline __attribute__((always_inline))

GK_INLINE void gk_tr4(const float *s, int64_t lds, float *d, int64_t ldd) {
    __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + lds), r2 = _mm_loadu_ps(s + 2 * lds),
           r3 = _mm_loadu_ps(s + 3 * lds);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(d, r0);
    _mm_storeu_ps(d + ldd, r1);
    _mm_storeu_ps(d + 2 * ldd, r2);
    _mm_storeu_ps(d + 3 * ldd, r3);
}

/* 8x8 transpose: rows q = 0..7 of s (stride lds), 8 floats each, become
 * rows of d (stride ldd). Each ymm holds rows q and q + 4 in its two lanes,
 * so two in-lane 4x4 transposes finish the job (16 shuffles). */
GK_INLINE void gk_tr8(const float *s, int64_t lds, float *d, int64_t ldd) {
#define LOAD2(q, o) \
    _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + (q)*lds + (o))), \
                         _mm_loadu_ps(s + ((q) + 4) * lds + (o)), 1)
    for (int o = 0; o < 8; o += 4) {
        __m256 r0 = LOAD2(0, o), r1 = LOAD2(1, o), r2 = LOAD2(2, o), r3 = LOAD2(3, o);
        __m256 a = _mm256_unpacklo_ps(r0, r1), b = _mm256_unpackhi_ps(r0, r1);
        __m256 c = _mm256_unpacklo_ps(r2, r3), e = _mm256_unpackhi_ps(r2, r3);
        _mm256_storeu_ps(d + (o + 0) * ldd, _mm256_shuffle_ps(a, c, 0x44));
        _mm256_storeu_ps(d + (o + 1) * ldd, _mm256_shuffle_ps(a, c, 0xee));
        _mm256_storeu_ps(d + (o + 2) * ldd, _mm256_shuffle_ps(b, e, 0x44));
        _mm256_storeu_ps(d + (o + 3) * ldd, _mm256_shuffle_ps(b, e, 0xee));
    }
#undef LOAD2
}
#define GK_HAVE_TR8 1

#endif
