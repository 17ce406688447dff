/* Flatten: [N, ...] → [N, rest], the bridge from convolutions to dense
 * layers (torch.flatten(x, 1)). A reshape whose errors name vikt_flatten. */
#include "../vikt_internal.h"

vikt_tensor *vikt_flatten(vikt_model *m, vikt_tensor *x) {
    if (!m) return NULL;
    if (!x) {
        vikt__fail(m, VIKT_ERR_NULL, "vikt_flatten: input is NULL");
        return NULL;
    }
    if (x->model != m) {
        vikt__fail(m, VIKT_ERR_ARG, "vikt_flatten: the input belongs to another model");
        return NULL;
    }
    if (x->rank < 1) {
        char s[VIKT__SHAPE_STR];
        vikt__fail(m, VIKT_ERR_SHAPE, "vikt_flatten: needs rank >= 1, got %s",
                   vikt__shape_str(x, s));
        return NULL;
    }
    /* Computed rather than inferred with -1, which fails when N is 0. */
    int64_t rest = 1;
    for (int i = 1; i < x->rank; i++) rest *= x->shape[i];
    return vikt_reshape(m, x, 2, (int64_t[]){x->shape[0], rest});
}
