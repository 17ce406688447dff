/* Tensors: creation in both storages, fills, queries and copies. */
#include "vikt_internal.h"

#include <math.h>
#include <string.h>

int vikt__check_shape(vikt_model *m, const char *opname, int rank, const int64_t *shape,
                      int64_t *numel) {
    if (rank < 0 || rank > VIKT_MAX_RANK)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: rank %d is outside 0..%d", opname, rank,
                          VIKT_MAX_RANK);
    if (rank > 0 && !shape) return vikt__fail(m, VIKT_ERR_NULL, "%s: shape is NULL", opname);
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return vikt__fail(m, VIKT_ERR_SHAPE, "%s: dimension %d is negative (%lld)", opname,
                              i, (long long)shape[i]);
        /* Keep every byte count representable as size_t and int64_t. */
        if (shape[i] > 0 && n > (INT64_MAX / 8) / shape[i])
            return vikt__fail(m, VIKT_ERR_SHAPE, "%s: shape overflows", opname);
        n *= shape[i];
    }
    *numel = n;
    return VIKT_OK;
}

int vikt__same_shape(const vikt_tensor *a, const vikt_tensor *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

int vikt__norm_axis(int axis, int rank) {
    if (axis < 0) axis += rank;
    return axis >= 0 && axis < rank ? axis : -1;
}

int64_t vikt__outer_size(const vikt_tensor *t, int axis) {
    int64_t n = 1;
    for (int i = 0; i < axis; i++) n *= t->shape[i];
    return n;
}

int64_t vikt__inner_size(const vikt_tensor *t, int axis) {
    int64_t n = 1;
    for (int i = axis + 1; i < t->rank; i++) n *= t->shape[i];
    return n;
}

static void set_shape(vikt_tensor *t, int rank, const int64_t *shape, int64_t numel) {
    t->rank = rank;
    for (int i = 0; i < VIKT_MAX_RANK; i++) t->shape[i] = i < rank ? shape[i] : 1;
    t->numel = numel;
}

vikt_tensor *vikt__step_tensor(vikt_model *m, const char *opname, int rank,
                               const int64_t *shape) {
    int64_t numel;
    if (vikt__check_shape(m, opname, rank, shape, &numel)) return NULL;
    vikt_tensor *t = vikt__arena_alloc(m, sizeof *t);
    float *data = t ? vikt__arena_alloc(m, (size_t)numel * sizeof(float)) : NULL;
    if (!data) {
        char dims[VIKT__SHAPE_STR];
        vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for a %s tensor", opname,
                   vikt__dims_str(rank, shape, dims));
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->model = m;
    t->data = data;
    t->storage = VIKT__STEP;
    set_shape(t, rank, shape, numel);
    return t;
}

void vikt__tensor_release(vikt_tensor *t) {
    vikt_model *m = t->model;
    if (t->owned_prev)
        t->owned_prev->owned_next = t->owned_next;
    else
        m->owned = t->owned_next;
    if (t->owned_next) t->owned_next->owned_prev = t->owned_prev;
    size_t bytes = (size_t)t->numel * sizeof(float);
    vikt__free(m, t->data, bytes);
    vikt__free(m, t->grad, bytes);
    vikt__free(m, t->mask, (size_t)t->numel);
    if (t->name) vikt__free(m, t->name, strlen(t->name) + 1);
    vikt__free(m, t, sizeof *t);
}

vikt_tensor *vikt__persistent_tensor(vikt_model *m, const char *opname, int rank,
                                     const int64_t *shape, int requires_grad) {
    int64_t numel;
    if (vikt__check_shape(m, opname, rank, shape, &numel)) return NULL;
    size_t bytes = (size_t)numel * sizeof(float);
    vikt_tensor *t = vikt__alloc(m, sizeof *t);
    float *data = t ? vikt__alloc(m, bytes) : NULL;
    float *grad = data && requires_grad ? vikt__alloc(m, bytes) : NULL;
    if (!data || (requires_grad && !grad)) {
        if (data) vikt__free(m, data, bytes);
        if (t) vikt__free(m, t, sizeof *t);
        char dims[VIKT__SHAPE_STR];
        vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for a %s tensor", opname,
                   vikt__dims_str(rank, shape, dims));
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->model = m;
    t->data = data;
    t->grad = grad;
    t->storage = VIKT__PERSISTENT;
    t->requires_grad = requires_grad != 0;
    set_shape(t, rank, shape, numel);
    memset(data, 0, bytes);
    if (grad) memset(grad, 0, bytes);
    t->owned_next = m->owned;
    if (m->owned) m->owned->owned_prev = t;
    m->owned = t;
    return t;
}

int vikt_tensor_create(vikt_model *m, int rank, const int64_t *shape, const float *data,
                       int requires_grad, vikt_tensor **out) {
    if (!out) return vikt__fail(m, VIKT_ERR_NULL, "vikt_tensor_create: out is NULL");
    *out = NULL;
    if (!m) return VIKT_ERR_NULL;
    /* Check here so the code returned is this call's, not an earlier sticky
     * error; after the check only memory can fail. */
    int64_t numel;
    int rc = vikt__check_shape(m, "vikt_tensor_create", rank, shape, &numel);
    if (rc) return rc;
    vikt_tensor *t = vikt__persistent_tensor(m, "vikt_tensor_create", rank, shape, requires_grad);
    if (!t) return VIKT_ERR_NOMEM;
    if (data) memcpy(t->data, data, (size_t)t->numel * sizeof(float));
    *out = t;
    return VIKT_OK;
}

void vikt_tensor_destroy(vikt_tensor *t) {
    if (t && t->storage == VIKT__PERSISTENT) vikt__tensor_release(t);
}

static void fill(float *p, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

vikt_tensor *vikt_input(vikt_model *m, int rank, const int64_t *shape, const float *data) {
    if (!m) return NULL;
    vikt_tensor *t = vikt__step_tensor(m, "vikt_input", rank, shape);
    if (!t) return NULL;
    if (data)
        memcpy(t->data, data, (size_t)t->numel * sizeof(float));
    else
        fill(t->data, t->numel, 0.0f);
    return t;
}

vikt_tensor *vikt_full(vikt_model *m, int rank, const int64_t *shape, float value) {
    if (!m) return NULL;
    vikt_tensor *t = vikt__step_tensor(m, "vikt_full", rank, shape);
    if (t) fill(t->data, t->numel, value);
    return t;
}

vikt_tensor *vikt_zeros(vikt_model *m, int rank, const int64_t *shape) {
    return vikt_full(m, rank, shape, 0.0f);
}

vikt_tensor *vikt_ones(vikt_model *m, int rank, const int64_t *shape) {
    return vikt_full(m, rank, shape, 1.0f);
}

static int check_normal(vikt_model *m, const char *opname, float mean, float std) {
    if (!(std >= 0.0f) || !isfinite(std) || !isfinite(mean))
        return vikt__fail(m, VIKT_ERR_ARG, "%s: needs a finite mean and std >= 0 (got %g, %g)",
                          opname, (double)mean, (double)std);
    return VIKT_OK;
}

static int check_uniform(vikt_model *m, const char *opname, float lo, float hi) {
    if (!isfinite(lo) || !isfinite(hi) || !(hi >= lo))
        return vikt__fail(m, VIKT_ERR_ARG, "%s: needs finite lo <= hi (got %g, %g)", opname,
                          (double)lo, (double)hi);
    return VIKT_OK;
}

static void fill_normal(vikt__rng *r, float *p, int64_t n, float mean, float std) {
    for (int64_t i = 0; i < n; i++) p[i] = mean + std * vikt__rng_normal(r);
}

static void fill_uniform(vikt__rng *r, float *p, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * vikt__rng_uniform(r);
}

vikt_tensor *vikt_randn(vikt_model *m, int rank, const int64_t *shape, float mean, float std) {
    if (!m || check_normal(m, "vikt_randn", mean, std)) return NULL;
    vikt_tensor *t = vikt__step_tensor(m, "vikt_randn", rank, shape);
    if (t) fill_normal(&m->rng, t->data, t->numel, mean, std);
    return t;
}

vikt_tensor *vikt_rand(vikt_model *m, int rank, const int64_t *shape, float lo, float hi) {
    if (!m || check_uniform(m, "vikt_rand", lo, hi)) return NULL;
    vikt_tensor *t = vikt__step_tensor(m, "vikt_rand", rank, shape);
    if (t) fill_uniform(&m->rng, t->data, t->numel, lo, hi);
    return t;
}

int vikt_tensor_fill(vikt_tensor *t, float value) {
    if (!t) return VIKT_ERR_NULL;
    fill(t->data, t->numel, value);
    return VIKT_OK;
}

int vikt_tensor_fill_normal(vikt_tensor *t, float mean, float std) {
    if (!t) return VIKT_ERR_NULL;
    int rc = check_normal(t->model, "vikt_tensor_fill_normal", mean, std);
    if (rc) return rc;
    fill_normal(&t->model->rng, t->data, t->numel, mean, std);
    return VIKT_OK;
}

int vikt_tensor_fill_uniform(vikt_tensor *t, float lo, float hi) {
    if (!t) return VIKT_ERR_NULL;
    int rc = check_uniform(t->model, "vikt_tensor_fill_uniform", lo, hi);
    if (rc) return rc;
    fill_uniform(&t->model->rng, t->data, t->numel, lo, hi);
    return VIKT_OK;
}

int vikt_tensor_rank(const vikt_tensor *t) { return t ? t->rank : -1; }

int64_t vikt_tensor_dim(const vikt_tensor *t, int axis) {
    if (!t) return -1;
    int a = vikt__norm_axis(axis, t->rank);
    return a < 0 ? -1 : t->shape[a];
}

int64_t vikt_tensor_numel(const vikt_tensor *t) { return t ? t->numel : -1; }

int vikt_tensor_shape(const vikt_tensor *t, int64_t *shape) {
    if (!t || !shape) return VIKT_ERR_NULL;
    for (int i = 0; i < t->rank; i++) shape[i] = t->shape[i];
    return t->rank;
}

float *vikt_tensor_data(vikt_tensor *t) { return t && t->numel > 0 ? t->data : NULL; }

float *vikt_tensor_grad(vikt_tensor *t) { return t ? t->grad : NULL; }

int vikt_tensor_copy_out(const vikt_tensor *t, float *dst, int64_t n) {
    if (!t) return VIKT_ERR_NULL;
    if (!dst) return vikt__fail(t->model, VIKT_ERR_NULL, "vikt_tensor_copy_out: dst is NULL");
    if (n < t->numel) {
        char s[VIKT__SHAPE_STR];
        return vikt__fail(t->model, VIKT_ERR_ARG,
                          "vikt_tensor_copy_out: room for %lld floats, tensor %s has %lld",
                          (long long)n, vikt__shape_str(t, s), (long long)t->numel);
    }
    memcpy(dst, t->data, (size_t)t->numel * sizeof(float));
    return VIKT_OK;
}

int vikt_tensor_copy_in(vikt_tensor *t, const float *src, int64_t n) {
    if (!t) return VIKT_ERR_NULL;
    if (!src) return vikt__fail(t->model, VIKT_ERR_NULL, "vikt_tensor_copy_in: src is NULL");
    if (n != t->numel) {
        char s[VIKT__SHAPE_STR];
        return vikt__fail(t->model, VIKT_ERR_ARG,
                          "vikt_tensor_copy_in: %lld floats given, tensor %s has %lld",
                          (long long)n, vikt__shape_str(t, s), (long long)t->numel);
    }
    memcpy(t->data, src, (size_t)n * sizeof(float));
    return VIKT_OK;
}

int vikt_tensor_requires_grad(const vikt_tensor *t) { return t ? t->requires_grad : 0; }

int vikt_tensor_set_requires_grad(vikt_tensor *t, int requires_grad) {
    if (!t) return VIKT_ERR_NULL;
    vikt_model *m = t->model;
    /* Any op result, also one computed without recording (no-grad mode, or
     * no input requiring a gradient). */
    if (t->op_name)
        return vikt__fail(m, VIKT_ERR_STATE,
                          "vikt_tensor_set_requires_grad: the tensor is the result of %s, not a leaf",
                          t->op_name);
    if (requires_grad && !t->grad && t->storage != VIKT__STEP) {
        size_t bytes = (size_t)t->numel * sizeof(float);
        t->grad = vikt__alloc(m, bytes);
        if (!t->grad)
            return vikt__fail(m, VIKT_ERR_NOMEM,
                              "vikt_tensor_set_requires_grad: out of memory for the gradient");
        memset(t->grad, 0, bytes);
    }
    t->requires_grad = requires_grad != 0;
    return VIKT_OK;
}

const char *vikt_tensor_name(const vikt_tensor *t) { return t && t->name ? t->name : ""; }
