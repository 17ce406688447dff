/* Named parameters: created on first use with an initializer, found by name
 * afterwards, kept in creation order. */
#include "vikt_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static vikt_tensor *find_in(vikt_tensor *const *list, int64_t n, const char *name) {
    for (int64_t i = 0; i < n; i++)
        if (strcmp(list[i]->name, name) == 0) return list[i];
    return NULL;
}

vikt_tensor *vikt_param_find(vikt_model *m, const char *name) {
    return m && name ? find_in(m->params, m->nparams, name) : NULL;
}

vikt_tensor *vikt_buffer_find(vikt_model *m, const char *name) {
    return m && name ? find_in(m->buffers, m->nbuffers, name) : NULL;
}

int64_t vikt_buffer_count(const vikt_model *m) { return m ? m->nbuffers : -1; }

vikt_tensor *vikt_buffer_at(vikt_model *m, int64_t i) {
    return m && i >= 0 && i < m->nbuffers ? m->buffers[i] : NULL;
}

int64_t vikt_param_count(const vikt_model *m) { return m ? m->nparams : -1; }

vikt_tensor *vikt_param_at(vikt_model *m, int64_t i) {
    return m && i >= 0 && i < m->nparams ? m->params[i] : NULL;
}

int64_t vikt_model_num_params(const vikt_model *m) {
    if (!m) return -1;
    int64_t total = 0;
    for (int64_t i = 0; i < m->nparams; i++) total += m->params[i]->numel;
    return total;
}

/* torch.nn.init's fans: dim 1 and dim 0, each times the receptive field. */
static void fans(const vikt_tensor *t, double *fan_in, double *fan_out) {
    double field = 1;
    for (int i = 2; i < t->rank; i++) field *= (double)t->shape[i];
    *fan_in = (double)t->shape[1] * field;
    *fan_out = (double)t->shape[0] * field;
}

/* Orthonormalize the columns of the rows×cols matrix a (rows >= cols) in
 * place: modified Gram–Schmidt, run twice for float-level orthogonality. The
 * diagonal of the implied R is positive, which is torch's sign convention. */
static void orthonormalize_columns(double *a, int64_t rows, int64_t cols) {
    for (int pass = 0; pass < 2; pass++)
        for (int64_t j = 0; j < cols; j++) {
            for (int64_t k = 0; k < j; k++) {
                double dot = 0;
                for (int64_t i = 0; i < rows; i++) dot += a[i * cols + k] * a[i * cols + j];
                for (int64_t i = 0; i < rows; i++) a[i * cols + j] -= dot * a[i * cols + k];
            }
            double norm = 0;
            for (int64_t i = 0; i < rows; i++) norm += a[i * cols + j] * a[i * cols + j];
            norm = sqrt(norm);
            for (int64_t i = 0; i < rows; i++) a[i * cols + j] = norm > 0 ? a[i * cols + j] / norm : 0;
        }
}

/* torch.nn.init.orthogonal_: the tensor as shape[0] × (the rest), Q of the QR
 * of a normal matrix (transposed when wide, so rows or columns are
 * orthonormal, whichever are fewer). */
static int init_orthogonal(vikt_model *m, vikt_tensor *t) {
    int64_t rows = t->shape[0], cols = t->numel / rows;
    int wide = rows < cols;
    int64_t tall = wide ? cols : rows, narrow = wide ? rows : cols;
    size_t bytes = (size_t)t->numel * sizeof(double);
    double *a = vikt__alloc(m, bytes);
    if (!a) return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_param: out of memory for '%s'", t->name);
    for (int64_t i = 0; i < t->numel; i++) a[i] = vikt__rng_normal(&m->rng);
    orthonormalize_columns(a, tall, narrow);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            t->data[r * cols + c] = (float)(wide ? a[c * narrow + r] : a[r * narrow + c]);
    vikt__free(m, a, bytes);
    return VIKT_OK;
}

static int initialize(vikt_model *m, vikt_tensor *t, vikt_init init) {
    if (init == VIKT_INIT_ZEROS) return vikt_tensor_fill(t, 0.0f);
    if (init == VIKT_INIT_ONES) return vikt_tensor_fill(t, 1.0f);
    double fan_in, fan_out;
    fans(t, &fan_in, &fan_out);
    switch (init) {
    case VIKT_INIT_XAVIER_UNIFORM: {
        float bound = (float)sqrt(6.0 / (fan_in + fan_out));
        return vikt_tensor_fill_uniform(t, -bound, bound);
    }
    case VIKT_INIT_XAVIER_NORMAL:
        return vikt_tensor_fill_normal(t, 0.0f, (float)sqrt(2.0 / (fan_in + fan_out)));
    case VIKT_INIT_KAIMING_UNIFORM: {
        float bound = (float)sqrt(6.0 / fan_in);
        return vikt_tensor_fill_uniform(t, -bound, bound);
    }
    case VIKT_INIT_KAIMING_NORMAL:
        return vikt_tensor_fill_normal(t, 0.0f, (float)sqrt(2.0 / fan_in));
    case VIKT_INIT_ORTHOGONAL:
        return init_orthogonal(m, t);
    default:
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_param: unknown initializer %d", (int)init);
    }
}

static int check_init(vikt_model *m, const char *name, int rank, const int64_t *shape,
                      vikt_init init) {
    if ((int)init < VIKT_INIT_ZEROS || (int)init > VIKT_INIT_ORTHOGONAL)
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_param: unknown initializer %d for '%s'",
                          (int)init, name);
    if (init >= VIKT_INIT_XAVIER_UNIFORM) {
        int empty = rank < 2 || shape[0] == 0;
        for (int i = 1; i < rank; i++) empty |= shape[i] == 0;
        if (empty) {
            char dims[VIKT__SHAPE_STR];
            return vikt__fail(m, VIKT_ERR_ARG,
                              "vikt_param: '%s' is %s; a fan-based initializer needs rank >= 2 "
                              "and no empty dimension",
                              name, vikt__dims_str(rank, shape, dims));
        }
    }
    return VIKT_OK;
}

/* Append to a growable list of tensors (doubling, through the allocator). */
static int list_push(vikt_model *m, vikt_tensor ***list, int64_t *n, int64_t *cap,
                     vikt_tensor *t) {
    if (*n == *cap) {
        int64_t grown_cap = *cap ? *cap * 2 : 16;
        vikt_tensor **grown = vikt__alloc(m, (size_t)grown_cap * sizeof *grown);
        if (!grown) return VIKT_ERR_NOMEM;
        if (*n) memcpy(grown, *list, (size_t)*n * sizeof *grown);
        vikt__free(m, *list, (size_t)*cap * sizeof **list);
        *list = grown;
        *cap = grown_cap;
    }
    (*list)[(*n)++] = t;
    return VIKT_OK;
}

/* A persistent tensor with a copy of name, appended to a list; NULL on OOM
 * (error recorded, nothing left behind). */
static vikt_tensor *named_tensor(vikt_model *m, const char *opname, const char *name, int rank,
                                 const int64_t *shape, int requires_grad, vikt_tensor ***list,
                                 int64_t *n, int64_t *cap) {
    vikt_tensor *t = vikt__persistent_tensor(m, opname, rank, shape, requires_grad);
    if (!t) return NULL;
    size_t len = strlen(name) + 1;
    t->name = vikt__alloc(m, len);
    /* Copy before anything can fail: vikt__tensor_release frees the name
     * with strlen(name) + 1 bytes, so it must hold the string by then. */
    if (t->name) memcpy(t->name, name, len);
    if (!t->name || list_push(m, list, n, cap, t)) {
        vikt__tensor_release(t);
        vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory registering '%s'", opname, name);
        return NULL;
    }
    return t;
}

static vikt_tensor *existing(vikt_model *m, const char *opname, vikt_tensor *t, int rank,
                             const int64_t *shape) {
    int same = t->rank == rank;
    for (int i = 0; same && i < rank; i++) same = t->shape[i] == shape[i];
    if (same) return t;
    char have[VIKT__SHAPE_STR], want[VIKT__SHAPE_STR];
    vikt__fail(m, VIKT_ERR_SHAPE, "%s: '%s' exists as %s, asked for %s", opname, t->name,
               vikt__shape_str(t, have), vikt__dims_str(rank, shape, want));
    return NULL;
}

vikt_tensor *vikt_param(vikt_model *m, const char *name, int rank, const int64_t *shape,
                        vikt_init init) {
    if (!m) return NULL;
    if (!name || !name[0]) {
        vikt__fail(m, name ? VIKT_ERR_ARG : VIKT_ERR_NULL, "vikt_param: the name is %s",
                   name ? "empty" : "NULL");
        return NULL;
    }
    int64_t numel;
    if (vikt__check_shape(m, "vikt_param", rank, shape, &numel)) return NULL;
    vikt_tensor *found = vikt_param_find(m, name);
    if (found) return existing(m, "vikt_param", found, rank, shape);
    if (vikt_buffer_find(m, name)) {
        vikt__fail(m, VIKT_ERR_ARG, "vikt_param: '%s' is already a buffer", name);
        return NULL;
    }
    if (check_init(m, name, rank, shape, init)) return NULL;

    vikt_tensor *t = named_tensor(m, "vikt_param", name, rank, shape, 1, &m->params, &m->nparams,
                                  &m->params_cap);
    if (!t) return NULL;
    t->storage = VIKT__PARAM;
    if (initialize(m, t, init)) {
        m->nparams--;
        vikt__tensor_release(t);
        return NULL;
    }
    return t;
}

vikt_tensor *vikt_buffer(vikt_model *m, const char *name, int rank, const int64_t *shape,
                         float value) {
    if (!m) return NULL;
    if (!name || !name[0]) {
        vikt__fail(m, name ? VIKT_ERR_ARG : VIKT_ERR_NULL, "vikt_buffer: the name is %s",
                   name ? "empty" : "NULL");
        return NULL;
    }
    int64_t numel;
    if (vikt__check_shape(m, "vikt_buffer", rank, shape, &numel)) return NULL;
    vikt_tensor *found = vikt_buffer_find(m, name);
    if (found) return existing(m, "vikt_buffer", found, rank, shape);
    if (vikt_param_find(m, name)) {
        vikt__fail(m, VIKT_ERR_ARG, "vikt_buffer: '%s' is already a parameter", name);
        return NULL;
    }
    vikt_tensor *t = named_tensor(m, "vikt_buffer", name, rank, shape, 0, &m->buffers,
                                  &m->nbuffers, &m->buffers_cap);
    if (!t) return NULL;
    t->storage = VIKT__BUFFER;
    vikt_tensor_fill(t, value);
    return t;
}

int64_t vikt_model_num_trainable(const vikt_model *m) {
    if (!m) return -1;
    int64_t total = 0;
    for (int64_t i = 0; i < m->nparams; i++)
        if (m->params[i]->requires_grad) total += m->params[i]->numel;
    return total;
}

/* A module-path match: the name itself, or the prefix followed by '.'. */
int vikt__name_matches(const char *name, const char *pattern) {
    size_t n = strlen(pattern);
    if (n == 0) return 1;
    return strncmp(name, pattern, n) == 0 && (name[n] == '\0' || name[n] == '.' || pattern[n - 1] == '.');
}

int64_t vikt_param_freeze(vikt_model *m, const char *pattern, int frozen) {
    if (!m) return VIKT_ERR_NULL;
    if (!pattern) return vikt__fail(m, VIKT_ERR_NULL, "vikt_param_freeze: pattern is NULL");
    int64_t matched = 0;
    for (int64_t i = 0; i < m->nparams; i++) {
        if (!vikt__name_matches(m->params[i]->name, pattern)) continue;
        int rc = vikt_tensor_set_requires_grad(m->params[i], !frozen);
        if (rc) return rc;
        matched++;
    }
    if (!matched)
        return vikt__fail(m, VIKT_ERR_NOT_FOUND, "vikt_param_freeze: no parameter matches '%s'",
                          pattern);
    return matched;
}

void vikt__emit(vikt__text *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t used = o->len < (int64_t)o->size ? (size_t)o->len : o->size;
    int n = vsnprintf(o->buf ? o->buf + used : NULL, o->buf ? o->size - used : 0, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += n;
}

int64_t vikt_model_summary(const vikt_model *m, char *buf, size_t size) {
    if (!m || (!buf && size)) return VIKT_ERR_NULL;
    vikt__text o = {buf, size, 0};
    if (buf && size) buf[0] = '\0';
    size_t width = 4;
    for (int64_t i = 0; i < m->nparams; i++) {
        size_t len = strlen(m->params[i]->name);
        width = len > width ? len : width;
    }
    vikt__emit(&o, "%-*s  %-16s  %12s  %s\n", (int)width, "name", "shape", "count", "trainable");
    for (int64_t i = 0; i < m->nparams; i++) {
        const vikt_tensor *t = m->params[i];
        char dims[VIKT__SHAPE_STR];
        vikt__emit(&o, "%-*s  %-16s  %12lld  %s\n", (int)width, t->name, vikt__shape_str(t, dims),
             (long long)t->numel, t->requires_grad ? "yes" : "no");
    }
    vikt__emit(&o, "total %lld parameters, %lld trainable, %lld frozen, in %lld tensors\n",
         (long long)vikt_model_num_params(m), (long long)vikt_model_num_trainable(m),
         (long long)(vikt_model_num_params(m) - vikt_model_num_trainable(m)),
         (long long)m->nparams);
    return o.len;
}

int vikt_zero_grad(vikt_model *m) {
    if (!m) return VIKT_ERR_NULL;
    for (vikt_tensor *t = m->owned; t; t = t->owned_next)
        if (t->grad) memset(t->grad, 0, (size_t)t->numel * sizeof(float));
    return VIKT_OK;
}
