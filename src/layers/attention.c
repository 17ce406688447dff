/* Multi-head self-attention: q, k, v projections (dense layers), the fused
 * per-head core of src/ops/attention.c (scaled dot products, optional causal
 * mask, softmax, weighted values; heads read and written in place), output
 * projection. */
#include "../vikt_internal.h"

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
    int64_t D = x->shape[2];
    if (heads < 1 || D % heads != 0) {
        vikt__fail(m, VIKT_ERR_ARG,
                   "%s: '%s' heads = %lld must be >= 1 and divide D = %lld (input %s)", op, name,
                   (long long)heads, (long long)D, vikt__shape_str(x, s));
        return NULL;
    }
    vikt_tensor *q = projection(m, op, name, "q", x, D);
    vikt_tensor *k = projection(m, op, name, "k", x, D);
    vikt_tensor *v = projection(m, op, name, "v", x, D);
    vikt_tensor *ctx = vikt__attention_core(m, q, k, v, heads, causal);
    return projection(m, op, name, "out", ctx, D);
}
