/* The vector kernels for AArch64 Advanced SIMD: 4 floats per vector (NEON is
 * part of every AArch64 CPU, so no flags and no detection are needed). */
#include "vec.h"

#ifdef VIKT__VEC_NEON
#include <arm_neon.h>

#define VW 4
typedef float32x4_t vf;
typedef uint32x4_t vm;

static inline vf vf_load(const float *p) { return vld1q_f32(p); }
static inline void vf_store(float *p, vf v) { vst1q_f32(p, v); }
static inline vf vf_set(float x) { return vdupq_n_f32(x); }
static inline vf vf_add(vf a, vf b) { return vaddq_f32(a, b); }
static inline vf vf_sub(vf a, vf b) { return vsubq_f32(a, b); }
static inline vf vf_mul(vf a, vf b) { return vmulq_f32(a, b); }
static inline vf vf_div(vf a, vf b) { return vdivq_f32(a, b); }
static inline vf vf_sqrt(vf a) { return vsqrtq_f32(a); }
static inline vf vf_min(vf a, vf b) { return vminq_f32(a, b); }
static inline vf vf_max(vf a, vf b) { return vmaxq_f32(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }
static inline vf vf_round(vf a) { return vrndnq_f32(a); }
static inline vf vf_trunc(vf a) { return vrndq_f32(a); }
static inline vf vf_abs(vf a) { return vabsq_f32(a); }
static inline vf vf_copysign(vf mag, vf sign) {
    return vbslq_f32(vdupq_n_u32(0x80000000u), sign, mag);
}
static inline vm vm_gt(vf a, vf b) { return vcgtq_f32(a, b); }
static inline vm vm_ge(vf a, vf b) { return vcgeq_f32(a, b); }
static inline vm vm_lt(vf a, vf b) { return vcltq_f32(a, b); }
static inline vm vm_nan(vf a) { return vmvnq_u32(vceqq_f32(a, a)); }
static inline vm vm_or(vm a, vm b) { return vorrq_u32(a, b); }
static inline vf vf_sel(vm m, vf a, vf b) { return vbslq_f32(m, a, b); }
static inline vf vf_pow2(vf k) {
    int32x4_t e = vaddq_s32(vcvtq_s32_f32(k), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
}

/* Four double accumulators of 2 lanes each, folded in a fixed order. */
static double fold4(float64x2_t a0, float64x2_t a1, float64x2_t a2, float64x2_t a3,
                    double tail) {
    float64x2_t s = vaddq_f64(vaddq_f64(a0, a1), vaddq_f64(a2, a3));
    return (vgetq_lane_f64(s, 0) + vgetq_lane_f64(s, 1)) + tail;
}

static double isa_sum(int64_t n, const float *x) {
    float64x2_t a0 = vdupq_n_f64(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t v = vld1q_f32(x + i), w = vld1q_f32(x + i + 4);
        a0 = vaddq_f64(a0, vcvt_f64_f32(vget_low_f32(v)));
        a1 = vaddq_f64(a1, vcvt_high_f64_f32(v));
        a2 = vaddq_f64(a2, vcvt_f64_f32(vget_low_f32(w)));
        a3 = vaddq_f64(a3, vcvt_high_f64_f32(w));
    }
    double t = 0;
    for (; i < n; i++) t += x[i];
    return fold4(a0, a1, a2, a3, t);
}

static double isa_dot(int64_t n, const float *a, const float *b) {
    float64x2_t a0 = vdupq_n_f64(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t u = vld1q_f32(a + i), v = vld1q_f32(b + i);
        float32x4_t u2 = vld1q_f32(a + i + 4), v2 = vld1q_f32(b + i + 4);
        a0 = vfmaq_f64(a0, vcvt_f64_f32(vget_low_f32(u)), vcvt_f64_f32(vget_low_f32(v)));
        a1 = vfmaq_f64(a1, vcvt_high_f64_f32(u), vcvt_high_f64_f32(v));
        a2 = vfmaq_f64(a2, vcvt_f64_f32(vget_low_f32(u2)), vcvt_f64_f32(vget_low_f32(v2)));
        a3 = vfmaq_f64(a3, vcvt_high_f64_f32(u2), vcvt_high_f64_f32(v2));
    }
    double t = 0;
    for (; i < n; i++) t += (double)a[i] * b[i];
    return fold4(a0, a1, a2, a3, t);
}

#define VEC_TABLE vikt__vec_neon
#define VEC_NAME "neon"
#include "vec_simd.h"

#endif
