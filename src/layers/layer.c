/* What every layer shares: composing parameter names and creating a layer's
 * parameters with PyTorch's default initialization on first use. */
#include "../vikt_internal.h"

#include <stdio.h>
#include <string.h>

int vikt__sub_name(vikt_model *m, const char *opname, const char *layer, const char *suffix,
                   char *buf) {
    int n = snprintf(buf, VIKT__NAME_MAX, "%s.%s", layer, suffix);
    if (n < 0 || n >= VIKT__NAME_MAX)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: the name '%s.%s' is longer than %d bytes", opname,
                          layer, suffix, VIKT__NAME_MAX - 1);
    return VIKT_OK;
}

int vikt__check_layer(vikt_model *m, const char *opname, const char *name, vikt_tensor *x) {
    /* As vikt_param: a NULL name is a NULL argument, an empty one a bad one. */
    if (!name) return vikt__fail(m, VIKT_ERR_NULL, "%s: the layer name is NULL", opname);
    if (!name[0]) return vikt__fail(m, VIKT_ERR_ARG, "%s: the layer name is empty", opname);
    if (!x) return vikt__fail(m, VIKT_ERR_NULL, "%s: input is NULL", opname);
    if (x->model != m)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: the input belongs to another model", opname);
    return VIKT_OK;
}

int vikt__check_sequence_layer(vikt_model *m, const char *opname, const char *name,
                               vikt_tensor *x) {
    int rc = vikt__check_layer(m, opname, name, x);
    if (rc) return rc;
    if (x->rank != 3 || x->shape[2] < 1) {
        char s[VIKT__SHAPE_STR];
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: '%s' needs input [N, T, D] with D >= 1, got %s",
                          opname, name, vikt__shape_str(x, s));
    }
    return VIKT_OK;
}

vikt_tensor *vikt__layer_param(vikt_model *m, const char *opname, const char *layer,
                               const char *suffix, int rank, const int64_t *shape,
                               vikt__fill fill, float a) {
    char name[VIKT__NAME_MAX];
    if (vikt__sub_name(m, opname, layer, suffix, name)) return NULL;
    vikt_tensor *found = vikt_param_find(m, name);
    if (found) {
        int same = found->rank == rank;
        for (int i = 0; same && i < rank; i++) same = found->shape[i] == shape[i];
        if (same) return found;
        char have[VIKT__SHAPE_STR], want[VIKT__SHAPE_STR];
        vikt__fail(m, VIKT_ERR_SHAPE, "%s: '%s' exists as %s, this call needs %s", opname, name,
                   vikt__shape_str(found, have), vikt__dims_str(rank, shape, want));
        return NULL;
    }
    vikt_tensor *t = vikt_param(m, name, rank, shape, VIKT_INIT_ZEROS);
    if (!t) return NULL;
    switch (fill) {
    case VIKT__FILL_CONST:
        vikt_tensor_fill(t, a);
        break;
    case VIKT__FILL_UNIFORM:
        vikt_tensor_fill_uniform(t, -a, a);
        break;
    case VIKT__FILL_NORMAL:
        vikt_tensor_fill_normal(t, 0.0f, a);
        break;
    }
    return t;
}
