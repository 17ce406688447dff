/* Multi-head self-attention built from ops, so its backward is the tape's:
 * q, k, v projections, heads split out of the feature axis, scaled dot
 * products, optional causal mask, softmax, weighted values, heads merged,
 * output projection. */
#include "../vikt_internal.h"

#include <math.h>

/* [N, T, D] → [N·H, T, dh]: split D into heads and move them next to N. */
static vikt_tensor *split_heads(vikt_model *m, vikt_tensor *t, int64_t N, int64_t T, int64_t H,
                                int64_t dh) {
    static const int to_heads[4] = {0, 2, 1, 3}; /* [N,T,H,dh] → [N,H,T,dh] */
    t = vikt_reshape(m, t, 4, (int64_t[]){N, T, H, dh});
    t = vikt_permute(m, t, to_heads);
    return vikt_reshape(m, t, 3, (int64_t[]){N * H, T, dh});
}

/* The inverse: [N·H, T, dh] → [N, T, D]. */
static vikt_tensor *merge_heads(vikt_model *m, vikt_tensor *t, int64_t N, int64_t T, int64_t H,
                                int64_t dh) {
    static const int to_tokens[4] = {0, 2, 1, 3}; /* [N,H,T,dh] → [N,T,H,dh] */
    t = vikt_reshape(m, t, 4, (int64_t[]){N, H, T, dh});
    t = vikt_permute(m, t, to_tokens);
    return vikt_reshape(m, t, 3, (int64_t[]){N, T, H * dh});
}

/* Names "<name>.<suffix>" for the sub-layers; fails on a too-long name. */
static vikt_tensor *projection(vikt_model *m, const char *op, const char *name, const char *suffix,
                               vikt_tensor *x, int64_t D) {
    char sub[VIKT__NAME_MAX];
    if (vikt__sub_name(m, op, name, suffix, sub)) return NULL;
    return vikt_dense(m, sub, x, D);
}

vikt_tensor *vikt_attention(vikt_model *m, const char *name, vikt_tensor *x, int64_t heads,
                            int causal) {
    static const char op[] = "vikt_attention";
    if (!m || vikt__check_sequence_layer(m, op, name, x)) return NULL;
    char s[VIKT__SHAPE_STR];
    int64_t N = x->shape[0], T = x->shape[1], D = x->shape[2];
    if (heads < 1 || D % heads != 0) {
        vikt__fail(m, VIKT_ERR_ARG,
                   "%s: '%s' heads = %lld must be >= 1 and divide D = %lld (input %s)", op, name,
                   (long long)heads, (long long)D, vikt__shape_str(x, s));
        return NULL;
    }
    int64_t dh = D / heads;
    vikt_tensor *q = split_heads(m, projection(m, op, name, "q", x, D), N, T, heads, dh);
    vikt_tensor *k = split_heads(m, projection(m, op, name, "k", x, D), N, T, heads, dh);
    vikt_tensor *v = split_heads(m, projection(m, op, name, "v", x, D), N, T, heads, dh);
    vikt_tensor *scores = vikt_scale(m, vikt_matmul_t(m, q, k, 0, 1), 1.0f / sqrtf((float)dh));
    if (causal) scores = vikt_causal_mask(m, scores);
    vikt_tensor *ctx = vikt_matmul(m, vikt_softmax(m, scores), v);
    return projection(m, op, name, "out", merge_heads(m, ctx, N, T, heads, dh), D);
}
