/* Included by each SIMD kernel file after it defines
 *   micro_body(rows, nr, kc, ap, bp, c, ldc, alpha, beta, first)
 * (always inline, rows a constant) and GK_MR (6 to 14). Not a header of its
 * own: it makes static functions in the including file, with its ISA flags. */
/* One copy of the kernel's micro_body per row count, so the row count is a
 * compile-time constant and unused accumulators vanish; gk_micro picks the
 * copy for an edge tile's rows. */
#define GK_MICRO(n)                                                                            \
    static void micro_##n(int nr, int64_t kc, const float *ap, const float *bp, float *c,     \
                          int64_t ldc, float alpha, float beta, int first) {                  \
        micro_body(n, nr, kc, ap, bp, c, ldc, alpha, beta, first);                            \
    }
GK_MICRO(1)
GK_MICRO(2)
GK_MICRO(3)
GK_MICRO(4)
GK_MICRO(5)
GK_MICRO(6)
#if GK_MR > 6
GK_MICRO(7)
GK_MICRO(8)
#endif
#if GK_MR > 8
GK_MICRO(9)
GK_MICRO(10)
GK_MICRO(11)
GK_MICRO(12)
#endif
#if GK_MR > 12
GK_MICRO(13)
GK_MICRO(14)
#endif
#undef GK_MICRO

typedef void (*gk_micro_fn)(int, int64_t, const float *, const float *, float *, int64_t, float,
                            float, int);
static const gk_micro_fn gk_micro_by_rows[GK_MR + 1] = {
    NULL, micro_1, micro_2, micro_3, micro_4, micro_5, micro_6,
#if GK_MR > 6
    micro_7, micro_8,
#endif
#if GK_MR > 8
    micro_9, micro_10, micro_11, micro_12,
#endif
#if GK_MR > 12
    micro_13, micro_14,
#endif
};

static void gk_micro(int mr, int nr, int64_t kc, const float *ap, const float *bp, float *c,
                     int64_t ldc, float alpha, float beta, int first) {
    gk_micro_by_rows[mr](nr, kc, ap, bp, c, ldc, alpha, beta, first);
}
