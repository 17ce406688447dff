/* Private to the GEMM: the job a kernel runs, the descriptor every ISA file
 * provides, and the entry points that let tests and benchmarks (which link
 * the objects, not the archive) force one kernel.
 *
 * Layering: src/ops/matmul.c calls vikt__gemm() (vikt_internal.h) with the
 * model; dispatch.c picks the kernel once per process (CPUID, VIKT_ISA),
 * handles the trivial cases (M or N = 0, alpha = 0, K = 0), splits the output
 * among the model's worker threads and makes sure every thread has its
 * packing buffer; a kernel's run() then computes one thread's block alone. */
#ifndef VIKT_KERNELS_GEMM_H
#define VIKT_KERNELS_GEMM_H

#include "../vikt_internal.h"

#include <stddef.h>
#include <stdint.h>

/* Which SIMD files this target builds (the Makefile agrees: it compiles
 * gemm_avx2.c and gemm_avx512.c only for x86-64 and gemm_neon.c only for
 * aarch64). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(VIKT_NO_SIMD)
#define VIKT__GEMM_X86 1
#endif
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(VIKT_NO_SIMD)
#define VIKT__GEMM_NEON 1
#endif

/* C = alpha·op(A)·op(B) + beta·C, row-major, op(A) MxK and op(B) KxN. */
typedef struct vikt__gemm_job {
    int ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const float *A;
    int64_t lda;
    const float *B;
    int64_t ldb;
    float *C;
    int64_t ldc;
} vikt__gemm_job;

typedef struct vikt__gemm_kernel {
    const char *name; /* "scalar", "avx2", "avx512", "neon" */
    /* The register tile. Threads split C at multiples of mr rows or nr
     * columns, so every element is computed by the same instruction sequence
     * whatever the thread count. */
    int mr, nr;
    /* Floats of packing workspace run() needs for this job (64-byte aligned). */
    size_t (*ws_floats)(const vikt__gemm_job *job);
    /* Compute the job; called only with M, N, K > 0 and alpha != 0. */
    void (*run)(const vikt__gemm_job *job, float *ws);
} vikt__gemm_kernel;

extern const vikt__gemm_kernel vikt__gemm_kernel_scalar;
#ifdef VIKT__GEMM_X86
extern const vikt__gemm_kernel vikt__gemm_kernel_avx2;
extern const vikt__gemm_kernel vikt__gemm_kernel_avx512;
#endif
#ifdef VIKT__GEMM_NEON
extern const vikt__gemm_kernel vikt__gemm_kernel_neon;
#endif

/* The kernel called name if it is built and this CPU and OS can run it;
 * NULL otherwise. */
const vikt__gemm_kernel *vikt__gemm_kernel_find(const char *name);

/* The kernel vikt__gemm() uses: VIKT_ISA if it names a usable kernel, else
 * the fastest this CPU has. Chosen on first use, then fixed for the process. */
const vikt__gemm_kernel *vikt__gemm_kernel_default(void);

/* vikt__gemm() with a given kernel: VIKT_OK, or VIKT_ERR_NOMEM when a packing
 * buffer cannot be allocated (C is then unchanged). */
int vikt__gemm_run(vikt_model *m, const vikt__gemm_kernel *k, const vikt__gemm_job *job);

#endif
