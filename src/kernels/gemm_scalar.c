/* The portable GEMM: the reference every other kernel is tested against, and
 * the path on CPUs without a faster one. Loop orders keep the innermost loop
 * over contiguous memory where the layout allows (i-p-j for op(B) = B, dot
 * products for op(B) = Bᵀ) so the compiler can vectorize it. */
#include "../vikt_internal.h"

static void scale_row(float *c, int64_t n, float beta) {
    if (beta == 0.0f)
        for (int64_t j = 0; j < n; j++) c[j] = 0.0f; /* ignores NaN in C */
    else if (beta != 1.0f)
        for (int64_t j = 0; j < n; j++) c[j] *= beta;
}

void vikt__gemm_scalar(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        scale_row(c, N, beta);
        if (alpha == 0.0f || K == 0) continue; /* reads neither A nor B */
        if (!trans_b) {
            for (int64_t p = 0; p < K; p++) {
                float a = alpha * (trans_a ? A[p * lda + i] : A[i * lda + p]);
                const float *b = B + p * ldb;
                for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
            }
        } else {
            for (int64_t j = 0; j < N; j++) {
                const float *b = B + j * ldb;
                float s = 0.0f;
                if (trans_a)
                    for (int64_t p = 0; p < K; p++) s += A[p * lda + i] * b[p];
                else
                    for (int64_t p = 0; p < K; p++) s += A[i * lda + p] * b[p];
                c[j] += alpha * s;
            }
        }
    }
}
