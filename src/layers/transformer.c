/* Pre-LN transformer block (as torch.nn.TransformerEncoderLayer with
 * norm_first=True, activation="gelu", no dropout):
 *   h = x + attention(ln1(x)); y = h + fc2(gelu(fc1(ln2(h)))). */
#include "../vikt_internal.h"

/* "<name>.<suffix>" into buf, for the sub-layers. */
static const char *sub(vikt_model *m, const char *op, const char *name, const char *suffix,
                       char *buf) {
    return vikt__sub_name(m, op, name, suffix, buf) ? NULL : buf;
}

vikt_tensor *vikt_transformer_block(vikt_model *m, const char *name, vikt_tensor *x, int64_t heads,
                                    int64_t mlp_hidden, int causal) {
    static const char op[] = "vikt_transformer_block";
    if (!m || vikt__check_sequence_layer(m, op, name, x)) return NULL;
    char s[VIKT__SHAPE_STR];
    int64_t D = x->shape[2];
    if (heads < 1 || D % heads != 0 || mlp_hidden < 1) {
        vikt__fail(m, VIKT_ERR_ARG,
                   "%s: '%s' needs heads >= 1 dividing D = %lld and mlp_hidden >= 1; got heads "
                   "%lld, mlp_hidden %lld (input %s)",
                   op, name, (long long)D, (long long)heads, (long long)mlp_hidden,
                   vikt__shape_str(x, s));
        return NULL;
    }
    char ln1[VIKT__NAME_MAX], attn[VIKT__NAME_MAX], ln2[VIKT__NAME_MAX], fc1[VIKT__NAME_MAX],
        fc2[VIKT__NAME_MAX];
    if (!sub(m, op, name, "ln1", ln1) || !sub(m, op, name, "attn", attn) ||
        !sub(m, op, name, "ln2", ln2) || !sub(m, op, name, "mlp.fc1", fc1) ||
        !sub(m, op, name, "mlp.fc2", fc2))
        return NULL;
    vikt_tensor *h =
        vikt_add(m, x, vikt_attention(m, attn, vikt_layer_norm(m, ln1, x, 1e-5f), heads, causal));
    vikt_tensor *mlp = vikt_dense(m, fc1, vikt_layer_norm(m, ln2, h, 1e-5f), mlp_hidden);
    return vikt_add(m, h, vikt_dense(m, fc2, vikt_gelu(m, mlp), D));
}
