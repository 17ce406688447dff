/* The one internal GEMM entry point. Only the scalar kernel exists so far;
 * SIMD kernels will be chosen here at run time. */
#include "../vikt_internal.h"

void vikt__gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                int64_t ldc) {
    vikt__gemm_scalar(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
