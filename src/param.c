/* Named parameters: created on first use with an initializer, found by name
 * afterwards, kept in creation order. */
#include "vikt_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

vikt_tensor *vikt_param_find(vikt_model *m, const char *name) {
    if (!m || !name) return NULL;
    for (int64_t i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i]->name, name) == 0) return m->params[i];
    return NULL;
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
        if (empty)
            return vikt__fail(m, VIKT_ERR_ARG,
                              "vikt_param: '%s' needs rank >= 2 and no empty dimension for a "
                              "fan-based initializer",
                              name);
    }
    return VIKT_OK;
}

static int registry_push(vikt_model *m, vikt_tensor *t) {
    if (m->nparams == m->params_cap) {
        int64_t cap = m->params_cap ? m->params_cap * 2 : 16;
        vikt_tensor **grown = vikt__alloc(m, (size_t)cap * sizeof *grown);
        if (!grown) return VIKT_ERR_NOMEM;
        if (m->nparams) memcpy(grown, m->params, (size_t)m->nparams * sizeof *grown);
        vikt__free(m, m->params, (size_t)m->params_cap * sizeof *m->params);
        m->params = grown;
        m->params_cap = cap;
    }
    m->params[m->nparams++] = t;
    return VIKT_OK;
}

static vikt_tensor *existing(vikt_model *m, vikt_tensor *t, int rank, const int64_t *shape) {
    int same = t->rank == rank;
    for (int i = 0; same && i < rank; i++) same = t->shape[i] == shape[i];
    if (same) return t;
    char have[VIKT__SHAPE_STR], want[VIKT__SHAPE_STR];
    vikt__fail(m, VIKT_ERR_SHAPE, "vikt_param: '%s' exists as %s, asked for %s", t->name,
               vikt__shape_str(t, have), vikt__dims_str(rank, shape, want));
    return NULL;
}

vikt_tensor *vikt_param(vikt_model *m, const char *name, int rank, const int64_t *shape,
                        vikt_init init) {
    if (!m) return NULL;
    if (!name || !name[0]) {
        vikt__fail(m, VIKT_ERR_ARG, "vikt_param: the name is NULL or empty");
        return NULL;
    }
    int64_t numel;
    if (vikt__check_shape(m, "vikt_param", rank, shape, &numel)) return NULL;
    vikt_tensor *found = vikt_param_find(m, name);
    if (found) return existing(m, found, rank, shape);
    if (check_init(m, name, rank, shape, init)) return NULL;

    vikt_tensor *t = vikt__persistent_tensor(m, "vikt_param", rank, shape, 1);
    if (!t) return NULL;
    size_t len = strlen(name) + 1;
    t->name = vikt__alloc(m, len);
    if (!t->name || registry_push(m, t)) {
        vikt__tensor_release(t);
        vikt__fail(m, VIKT_ERR_NOMEM, "vikt_param: out of memory registering '%s'", name);
        return NULL;
    }
    memcpy(t->name, name, len);
    t->storage = VIKT__PARAM;
    if (initialize(m, t, init)) {
        m->nparams--;
        vikt__tensor_release(t);
        return NULL;
    }
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
static int matches(const char *name, const char *pattern) {
    size_t n = strlen(pattern);
    if (n == 0) return 1;
    return strncmp(name, pattern, n) == 0 && (name[n] == '\0' || name[n] == '.' || pattern[n - 1] == '.');
}

int64_t vikt_param_freeze(vikt_model *m, const char *pattern, int frozen) {
    if (!m) return VIKT_ERR_NULL;
    if (!pattern) return vikt__fail(m, VIKT_ERR_NULL, "vikt_param_freeze: pattern is NULL");
    int64_t matched = 0;
    for (int64_t i = 0; i < m->nparams; i++) {
        if (!matches(m->params[i]->name, pattern)) continue;
        int rc = vikt_tensor_set_requires_grad(m->params[i], !frozen);
        if (rc) return rc;
        matched++;
    }
    if (!matched)
        return vikt__fail(m, VIKT_ERR_NOT_FOUND, "vikt_param_freeze: no parameter matches '%s'",
                          pattern);
    return matched;
}

/* Append to a snprintf-style buffer, counting what did not fit. */
typedef struct {
    char *buf;
    size_t size;
    int64_t len;
} text_out;

static void emit(text_out *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void emit(text_out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t used = o->len < (int64_t)o->size ? (size_t)o->len : o->size;
    int n = vsnprintf(o->buf ? o->buf + used : NULL, o->buf ? o->size - used : 0, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += n;
}

int64_t vikt_model_summary(const vikt_model *m, char *buf, size_t size) {
    if (!m || (!buf && size)) return VIKT_ERR_NULL;
    text_out o = {buf, size, 0};
    if (buf && size) buf[0] = '\0';
    size_t width = 4;
    for (int64_t i = 0; i < m->nparams; i++) {
        size_t len = strlen(m->params[i]->name);
        width = len > width ? len : width;
    }
    emit(&o, "%-*s  %-16s  %12s  %s\n", (int)width, "name", "shape", "count", "trainable");
    for (int64_t i = 0; i < m->nparams; i++) {
        const vikt_tensor *t = m->params[i];
        char dims[VIKT__SHAPE_STR];
        emit(&o, "%-*s  %-16s  %12lld  %s\n", (int)width, t->name, vikt__shape_str(t, dims),
             (long long)t->numel, t->requires_grad ? "yes" : "no");
    }
    emit(&o, "total %lld parameters, %lld trainable, %lld frozen, in %lld tensors\n",
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
