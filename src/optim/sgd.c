/* Optimizers: plain SGD for now. The handle keeps its model and learning
 * rate; the full set (momentum, Adam …) builds on the same handle. */
#include "../vikt_internal.h"

#include <math.h>

struct vikt_optimizer {
    vikt_model *model;
    float lr;
};

int vikt_sgd_create(vikt_model *m, float lr, vikt_optimizer **out) {
    if (!out) return vikt__fail(m, VIKT_ERR_NULL, "vikt_sgd_create: out is NULL");
    *out = NULL;
    if (!m) return VIKT_ERR_NULL;
    if (!(lr >= 0.0f) || !isfinite(lr))
        return vikt__fail(m, VIKT_ERR_ARG,
                          "vikt_sgd_create: the learning rate must be finite and >= 0, got %g",
                          (double)lr);
    vikt_optimizer *opt = vikt__alloc(m, sizeof *opt);
    if (!opt) return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_sgd_create: out of memory");
    opt->model = m;
    opt->lr = lr;
    *out = opt;
    return VIKT_OK;
}

int vikt_optimizer_step(vikt_optimizer *opt) {
    if (!opt) return VIKT_ERR_NULL;
    vikt_model *m = opt->model;
    if (m->errcode)
        return vikt__fail(m, VIKT_ERR_STATE, "vikt_optimizer_step: the model holds an error");
    for (int64_t k = 0; k < m->nparams; k++) {
        vikt_tensor *p = m->params[k];
        if (!p->requires_grad) continue;
        for (int64_t i = 0; i < p->numel; i++) p->data[i] -= opt->lr * p->grad[i];
    }
    return VIKT_OK;
}

void vikt_optimizer_destroy(vikt_optimizer *opt) {
    if (opt) vikt__free(opt->model, opt, sizeof *opt);
}
