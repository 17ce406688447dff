/* Normalization layers (torch.nn.LayerNorm over the last dimension and
 * torch.nn.BatchNorm1d/2d): their parameters and buffers, then the ops of
 * src/ops/norm.c. */
#include "../vikt_internal.h"

vikt_tensor *vikt_layer_norm(vikt_model *m, const char *name, vikt_tensor *x, float eps) {
    static const char op[] = "vikt_layer_norm";
    if (!m || vikt__check_layer(m, op, name, x)) return NULL;
    char s[VIKT__SHAPE_STR];
    if (x->rank < 1 || x->shape[x->rank - 1] < 1) {
        vikt__fail(m, VIKT_ERR_SHAPE, "%s: '%s' needs input [..., D] with D >= 1, got %s", op,
                   name, vikt__shape_str(x, s));
        return NULL;
    }
    if (!(eps > 0.0f) || isinf(eps)) {
        vikt__fail(m, VIKT_ERR_ARG, "%s: '%s' needs a finite eps > 0, got %g (input %s)", op,
                   name, (double)eps, vikt__shape_str(x, s));
        return NULL;
    }
    int64_t D = x->shape[x->rank - 1];
    vikt_tensor *w = vikt__layer_param(m, op, name, "weight", 1, &D, VIKT__FILL_CONST, 1.0f);
    vikt_tensor *b = vikt__layer_param(m, op, name, "bias", 1, &D, VIKT__FILL_CONST, 0.0f);
    if (!w || !b) return NULL;
    return vikt__layer_norm(m, x, w, b, eps);
}

/* The buffer "<layer>.<suffix>" of [C], found or created filled with value. */
static vikt_tensor *layer_buffer(vikt_model *m, const char *op, const char *layer,
                                 const char *suffix, int64_t C, float value) {
    char full[VIKT__NAME_MAX];
    if (vikt__sub_name(m, op, layer, suffix, full)) return NULL;
    return vikt_buffer(m, full, 1, &C, value);
}

vikt_tensor *vikt_batch_norm(vikt_model *m, const char *name, vikt_tensor *x, float momentum,
                             float eps) {
    static const char op[] = "vikt_batch_norm";
    if (!m || vikt__check_layer(m, op, name, x)) return NULL;
    char s[VIKT__SHAPE_STR];
    if ((x->rank != 2 && x->rank != 4) || x->shape[1] < 1) {
        vikt__fail(m, VIKT_ERR_SHAPE, "%s: '%s' needs input [N, C] or [N, C, H, W] with C >= 1, got %s",
                   op, name, vikt__shape_str(x, s));
        return NULL;
    }
    if (!(momentum >= 0.0f && momentum <= 1.0f) || !(eps > 0.0f) || isinf(eps)) {
        vikt__fail(m, VIKT_ERR_ARG,
                   "%s: '%s' needs momentum in [0, 1] and a finite eps > 0, got %g and %g "
                   "(input %s)",
                   op, name, (double)momentum, (double)eps, vikt__shape_str(x, s));
        return NULL;
    }
    int64_t C = x->shape[1];
    vikt_tensor *w = vikt__layer_param(m, op, name, "weight", 1, &C, VIKT__FILL_CONST, 1.0f);
    vikt_tensor *b = vikt__layer_param(m, op, name, "bias", 1, &C, VIKT__FILL_CONST, 0.0f);
    vikt_tensor *rm = w && b ? layer_buffer(m, op, name, "running_mean", C, 0.0f) : NULL;
    vikt_tensor *rv = rm ? layer_buffer(m, op, name, "running_var", C, 1.0f) : NULL;
    if (!rv) return NULL;
    return vikt__batch_norm(m, x, w, b, rm, rv, vikt_training(m), momentum, eps);
}
