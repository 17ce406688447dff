/* Dense (linear) layer: y = x·Wᵀ + b with W [out, in], as torch.nn.Linear;
 * the parameters, then the op of src/ops/linear.c. */
#include "../vikt_internal.h"

#include <math.h>

vikt_tensor *vikt_dense(vikt_model *m, const char *name, vikt_tensor *x, int64_t out_features) {
    static const char op[] = "vikt_dense";
    if (!m || vikt__check_layer(m, op, name, x)) return NULL;
    char s[VIKT__SHAPE_STR];
    if (x->rank < 1 || x->rank > 3 || out_features < 1) {
        vikt__fail(m, x->rank < 1 || x->rank > 3 ? VIKT_ERR_SHAPE : VIKT_ERR_ARG,
                   "%s: '%s' needs input of rank 1 to 3 and out_features >= 1 (got %s, %lld)", op,
                   name, vikt__shape_str(x, s), (long long)out_features);
        return NULL;
    }
    int64_t in = x->shape[x->rank - 1];
    if (in < 1) {
        vikt__fail(m, VIKT_ERR_SHAPE, "%s: '%s' input %s has no features", op, name,
                   vikt__shape_str(x, s));
        return NULL;
    }
    float bound = 1.0f / sqrtf((float)in);
    vikt_tensor *w = vikt__layer_param(m, op, name, "weight", 2, (int64_t[]){out_features, in},
                                       VIKT__FILL_UNIFORM, bound);
    vikt_tensor *b = vikt__layer_param(m, op, name, "bias", 1, (int64_t[]){out_features},
                                       VIKT__FILL_UNIFORM, bound);
    if (!w || !b) return NULL;
    return vikt__linear(m, x, w, b);
}
