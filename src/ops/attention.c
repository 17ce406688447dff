/* Ops attention needs beyond the general ones: the causal mask. */
#include "../vikt_internal.h"

#include <math.h>
#include <string.h>

static int mask_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                      vikt__args *args, int64_t *shape, int *rank) {
    (void)n, (void)args;
    const vikt_tensor *a = in[0];
    char s[VIKT__SHAPE_STR];
    if (a->rank < 2 || a->shape[a->rank - 1] != a->shape[a->rank - 2])
        return vikt__fail(m, VIKT_ERR_SHAPE,
                          "%s: needs rank >= 2 with equal last two dimensions [..., T, T], got %s",
                          op->name, vikt__shape_str(a, s));
    *rank = a->rank;
    for (int i = 0; i < a->rank; i++) shape[i] = a->shape[i];
    return VIKT_OK;
}

/* Each [T, T] block: query row i keeps keys j <= i. Forward writes −∞ above
 * the diagonal (softmax then gives those keys weight 0); backward passes the
 * gradient through the kept part only. */
static void mask_blocks(const vikt_tensor *a, const float *src, float *dst, int backward) {
    int64_t T = a->shape[a->rank - 1];
    int64_t blocks = T ? a->numel / (T * T) : 0;
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t i = 0; i < T; i++) {
            const float *s = src + (b * T + i) * T;
            float *d = dst + (b * T + i) * T;
            for (int64_t j = 0; j < T; j++) {
                if (backward)
                    d[j] += j <= i ? s[j] : 0.0f;
                else
                    d[j] = j <= i ? s[j] : -INFINITY;
            }
        }
}

static int mask_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                    vikt_tensor *out) {
    (void)m, (void)n, (void)args;
    mask_blocks(in[0], in[0]->data, out->data, 0);
    return VIKT_OK;
}

static int mask_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                    vikt_tensor *out) {
    (void)n, (void)args;
    float *ga = vikt__grad(in[0]);
    if (!ga) return m->errcode;
    mask_blocks(in[0], out->grad, ga, 1);
    return VIKT_OK;
}

static const vikt__op causal_mask_op = {"vikt_causal_mask", mask_shape, mask_fwd, mask_bwd};

vikt_tensor *vikt_causal_mask(vikt_model *m, vikt_tensor *scores) {
    return vikt__apply(m, &causal_mask_op, &scores, 1, NULL);
}
