/* The model: creation, destruction, modes and the step boundary. */
#include "vikt_internal.h"

#include <string.h>

int vikt_model_create(const vikt_allocator *allocator, uint64_t seed, vikt_model **out) {
    if (!out) return VIKT_ERR_NULL;
    *out = NULL;
    vikt_allocator a;
    if (allocator) {
        if (!allocator->alloc || !allocator->free) return VIKT_ERR_ARG;
        a = *allocator;
    } else {
        vikt__default_allocator(&a);
    }
    vikt_model *m = a.alloc(a.ud, sizeof *m, VIKT__ALIGN);
    if (!m) return VIKT_ERR_NOMEM;
    memset(m, 0, sizeof *m);
    m->allocator = a;
    m->grad_enabled = 1;
    m->training = 1;
    m->nthreads = 1;
    vikt__rng_seed(&m->rng, seed);
    *out = m;
    return VIKT_OK;
}

void vikt_model_destroy(vikt_model *m) {
    if (!m) return;
    while (m->owned) vikt__tensor_release(m->owned);
    vikt__free(m, m->params, (size_t)m->params_cap * sizeof *m->params);
    vikt__free(m, m->buffers, (size_t)m->buffers_cap * sizeof *m->buffers);
    vikt__arena_release(m, &m->arena);
    vikt__pool_destroy(m, m->pool);
    vikt__gemm_release(m);
    vikt__io_release(m);
    vikt__peft_release(m);
    vikt_allocator a = m->allocator;
    a.free(a.ud, m, sizeof *m);
}

int vikt_model_seed(vikt_model *m, uint64_t seed) {
    if (!m) return VIKT_ERR_NULL;
    vikt__rng_seed(&m->rng, seed);
    return VIKT_OK;
}

int vikt_step_begin(vikt_model *m) {
    if (!m) return VIKT_ERR_NULL;
    m->tape = NULL;
    vikt__arena_rewind(&m->arena);
    return VIKT_OK;
}

int vikt_set_grad_enabled(vikt_model *m, int enabled) {
    if (!m) return VIKT_ERR_NULL;
    m->grad_enabled = enabled != 0;
    return VIKT_OK;
}

int vikt_grad_enabled(const vikt_model *m) { return m ? m->grad_enabled : 0; }

int vikt_set_training(vikt_model *m, int training) {
    if (!m) return VIKT_ERR_NULL;
    m->training = training != 0;
    return VIKT_OK;
}

int vikt_training(const vikt_model *m) { return m ? m->training : 0; }
