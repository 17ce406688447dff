/* The Goto/BLIS loop nest around a register micro-kernel, shared by the SIMD
 * kernel files. It is a template: a kernel file defines
 *
 *   GK_MR, GK_NR       the register tile (rows of A x columns of B)
 *   GK_KC, GK_NC       cache blocking of K and N
 *   GK_PREFIX          prefix of the generated names (e.g. avx2_)
 *   gk_micro(mr, nr, kc, ap, bp, c, ldc, alpha, beta, first)
 *                      C[mr x nr] (+)= alpha·Ap·Bp over kc packed steps
 *   gk_tr4(src, lds, dst, ldd)
 *                      transpose a 4x4 block of floats
 *   gk_tr8 (optional, with GK_HAVE_TR8) the same for 8x8
 *   gk_direct(mr, nr, kc, a, rsa, csa, b, ldb, c, ldc, alpha, beta, first)
 *                      (optional, with GK_HAVE_DIRECT) the micro-kernel on
 *                      unpacked operands: row r of op(A) at a + r·rsa, step
 *                      csa along k; op(B) = B rows at b, stride ldb. It must
 *                      do the same FMAs and stores as gk_micro, so results do
 *                      not depend on which path ran.
 *
 * and then includes this file, so every function here is compiled with that
 * file's instruction-set flags and nothing else sees it (all are static).
 *
 * Loop nest (row-major C, vectors run along N):
 *
 *   for jc in N step NC                      B block: KC x NC, lives in L2
 *     for pc in K step KC
 *       pack op(B)[pc.., jc..] into NR-wide panels    (Bp)
 *       for ic in M step MR
 *         pack op(A)[ic.., pc..] into one MR-row panel (Ap, lives in L1)
 *         for jr in NC step NR
 *           micro-kernel: C[ic.., jc+jr..] (+)= Ap · Bp[jr]
 *
 * The A panel (MR x KC) stays in L1 while the B panels stream from the L2
 * block, which is the usual BLIS order seen through C = (Bᵀ·Aᵀ)ᵀ: vectors are
 * loaded from B and A is broadcast. Packing makes both operands contiguous
 * and aligned whatever the transposes and leading dimensions; short panels
 * at the edges are zero-padded, and the micro-kernel stores only the valid
 * mr x nr part. K and N are cut into equal blocks (K = 784 is 3 x 262, not
 * 384 + 384 + 16): fewer thin blocks, and the cut depends on K and N only.
 *
 * The first K block stores alpha·acc + beta·C (alpha·acc alone when beta = 0,
 * so NaN in C is ignored); later blocks add alpha·acc.
 *
 * Tiny products (at most 2^16 multiply-adds) with op(B) = B skip packing
 * when the kernel has a direct micro-kernel (gk_direct): it broadcasts A and
 * loads B where they are, with the same K blocks, FMAs and stores.
 *
 * Every element of C is therefore computed by one fixed sequence of
 * instructions that depends on K alone (the K blocks), not on where its tile
 * starts, whether the tile is full, or which path ran: cutting C into blocks
 * for threads changes no bit of the result. */

#include <string.h>

#define GK_CAT2(a, b) a##b
#define GK_CAT(a, b) GK_CAT2(a, b)
#define GK_FN(name) GK_CAT(GK_PREFIX, name)

static int64_t GK_FN(ceil_div)(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Equal blocks of at most max, each a multiple of unit (except the last). */
static int64_t GK_FN(block)(int64_t n, int64_t max, int64_t unit) {
    if (n <= max) return n;
    int64_t nb = GK_FN(ceil_div)(n, max);
    int64_t b = GK_FN(ceil_div)(GK_FN(ceil_div)(n, nb), unit) * unit;
    return b < max ? b : max;
}

/* dst[k·R + r] = src[r·ld + k] for r < rv, zero for rv <= r < R: R rows of a
 * row-major matrix, interleaved so each k step is R consecutive floats. */
static void GK_FN(pack_rows)(int R, int rv, int64_t kc, const float *src, int64_t ld,
                             float *dst) {
    int r = 0;
#ifdef GK_HAVE_TR8
    for (; r + 8 <= rv; r += 8) {
        const float *s = src + r * ld;
        float *d = dst + r;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) gk_tr8(s + k, ld, d + k * R, R);
        for (; k < kc; k++)
            for (int q = 0; q < 8; q++) d[k * R + q] = s[q * ld + k];
    }
#endif
    for (; r + 4 <= rv; r += 4) {
        const float *s = src + r * ld;
        float *d = dst + r;
        int64_t k = 0;
        for (; k + 4 <= kc; k += 4) gk_tr4(s + k, ld, d + k * R, R);
        for (; k < kc; k++) {
            d[k * R + 0] = s[k];
            d[k * R + 1] = s[ld + k];
            d[k * R + 2] = s[2 * ld + k];
            d[k * R + 3] = s[3 * ld + k];
        }
    }
    for (; r < rv; r++)
        for (int64_t k = 0; k < kc; k++) dst[k * R + r] = src[r * ld + k];
    if (rv < R)
        for (int64_t k = 0; k < kc; k++) memset(dst + k * R + rv, 0, (size_t)(R - rv) * sizeof(float));
}

/* dst[k·R + r] = src[k·ld + r] for r < rv, zero for rv <= r < R. */
static void GK_FN(pack_cols)(int R, int rv, int64_t kc, const float *src, int64_t ld,
                             float *dst) {
    if (rv == R) {
        for (int64_t k = 0; k < kc; k++) memcpy(dst + k * R, src + k * ld, (size_t)R * sizeof(float));
        return;
    }
    for (int64_t k = 0; k < kc; k++) {
        memcpy(dst + k * R, src + k * ld, (size_t)rv * sizeof(float));
        memset(dst + k * R + rv, 0, (size_t)(R - rv) * sizeof(float));
    }
}

#ifndef GK_DIRECT_MAX_MNK
#define GK_DIRECT_MAX_MNK 65536
#endif

/* Tiny products with op(B) = B skip packing (GK_HAVE_DIRECT): below about
 * 40^3 multiply-adds packing costs more than it saves (16^3: 2x faster
 * direct; 64^3: 8 % slower direct, on the development Xeon). So do products
 * of at most two row tiles whatever their size, where a packed B would be
 * read once or twice after being copied: the batch-1 and LSTM-step shapes
 * 1x784x256 2.6x, 8x512x128 1.5x, 16x512x128 1.15x faster direct (AVX-512,
 * one thread). */
static int GK_FN(direct)(const vikt__gemm_job *j) {
#ifdef GK_HAVE_DIRECT
    return !j->tb && (j->M * j->N <= GK_DIRECT_MAX_MNK / j->K || j->M <= 2 * GK_MR);
#else
    (void)j;
    return 0;
#endif
}

static size_t GK_FN(ws_floats)(const vikt__gemm_job *j) {
    if (GK_FN(direct)(j)) return 0;
    int64_t kc = GK_FN(block)(j->K, GK_KC, 8);
    int64_t nc = GK_FN(block)(j->N, GK_NC, GK_NR);
    nc = GK_FN(ceil_div)(nc, GK_NR) * GK_NR;
    int64_t bp = GK_FN(ceil_div)(kc * nc, 16) * 16; /* keep Ap 64-byte aligned */
    return (size_t)(bp + (int64_t)GK_MR * kc);
}

static void GK_FN(run)(const vikt__gemm_job *j, float *ws) {
    const int64_t M = j->M, N = j->N, K = j->K;
    const int64_t KB = GK_FN(block)(K, GK_KC, 8), NB = GK_FN(block)(N, GK_NC, GK_NR);
#ifdef GK_HAVE_DIRECT
    if (GK_FN(direct)(j)) {
        const int64_t rsa = j->ta ? 1 : j->lda, csa = j->ta ? j->lda : 1;
        for (int64_t pc = 0; pc < K; pc += KB) {
            const int64_t kc = K - pc < KB ? K - pc : KB;
            for (int64_t ic = 0; ic < M; ic += GK_MR) {
                int mr = M - ic < GK_MR ? (int)(M - ic) : GK_MR;
                const float *a = j->A + ic * rsa + pc * csa;
                for (int64_t jr = 0; jr < N; jr += GK_NR) {
                    int nr = N - jr < GK_NR ? (int)(N - jr) : GK_NR;
                    gk_direct(mr, nr, kc, a, rsa, csa, j->B + pc * j->ldb + jr, j->ldb,
                              j->C + ic * j->ldc + jr, j->ldc, j->alpha, j->beta, pc == 0);
                }
            }
        }
        return;
    }
#endif
    float *bp = ws;
    float *ap = ws + GK_FN(ceil_div)(KB * GK_FN(ceil_div)(NB, GK_NR) * GK_NR, 16) * 16;
    for (int64_t jc = 0; jc < N; jc += NB) {
        const int64_t nc = N - jc < NB ? N - jc : NB;
        for (int64_t pc = 0; pc < K; pc += KB) {
            const int64_t kc = K - pc < KB ? K - pc : KB;
            for (int64_t jr = 0; jr < nc; jr += GK_NR) {
                int nr = nc - jr < GK_NR ? (int)(nc - jr) : GK_NR;
                float *dst = bp + jr * kc;
                if (j->tb)
                    GK_FN(pack_rows)(GK_NR, nr, kc, j->B + (jc + jr) * j->ldb + pc, j->ldb, dst);
                else
                    GK_FN(pack_cols)(GK_NR, nr, kc, j->B + pc * j->ldb + jc + jr, j->ldb, dst);
            }
            for (int64_t ic = 0; ic < M; ic += GK_MR) {
                int mr = M - ic < GK_MR ? (int)(M - ic) : GK_MR;
                if (j->ta)
                    GK_FN(pack_cols)(GK_MR, mr, kc, j->A + pc * j->lda + ic, j->lda, ap);
                else
                    GK_FN(pack_rows)(GK_MR, mr, kc, j->A + ic * j->lda + pc, j->lda, ap);
                float *c = j->C + ic * j->ldc + jc;
                for (int64_t jr = 0; jr < nc; jr += GK_NR) {
                    int nr = nc - jr < GK_NR ? (int)(nc - jr) : GK_NR;
                    gk_micro(mr, nr, kc, ap, bp + jr * kc, c + jr, j->ldc, j->alpha, j->beta,
                             pc == 0);
                }
            }
        }
    }
}
