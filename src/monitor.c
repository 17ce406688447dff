/* Watching a model train: statistics of a parameter by name, gradient norms,
 * update-to-weight ratios, the search for NaN and infinity, and the
 * train/validation gap. Array-level statistics live in stats.c; anomaly
 * mode's checks in tape.c. */
#include "vikt_internal.h"

#include <string.h>

/* ------------------------------------------------------ parameter stats */

int vikt_param_stats(vikt_model *m, const char *name, vikt_stats_of what, vikt_stats *out) {
    if (!m) return VIKT_ERR_NULL;
    if (!name || !out)
        return vikt__fail(m, VIKT_ERR_NULL, "vikt_param_stats: %s is NULL", name ? "out" : "name");
    if (what != VIKT_STATS_VALUE && what != VIKT_STATS_GRAD)
        return vikt__fail(m, VIKT_ERR_ARG,
                          "vikt_param_stats: what must be VIKT_STATS_VALUE or VIKT_STATS_GRAD, "
                          "not %d", (int)what);
    vikt_tensor *p = vikt_param_find(m, name);
    if (!p) return vikt__fail(m, VIKT_ERR_NOT_FOUND, "vikt_param_stats: no parameter '%s'", name);
    const float *x = what == VIKT_STATS_VALUE ? p->data : p->grad;
    if (!x)
        return vikt__fail(m, VIKT_ERR_STATE, "vikt_param_stats: parameter '%s' holds no gradient",
                          name);
    return vikt_stats_compute(x, p->numel, out);
}

/* Σx² in double with NaN and infinities kept in (they make it NaN or Inf). */
static double sum_of_squares(const float *x, int64_t n) {
    double total = 0;
    for (int64_t start = 0; start < n; start += 1024) {
        int64_t end = n - start < 1024 ? n : start + 1024;
        double block = 0;
        for (int64_t i = start; i < end; i++) block += (double)x[i] * x[i];
        total += block;
    }
    return total;
}

int vikt_grad_norms(vikt_model *m, double *norms, int64_t n, double *global) {
    if (!m) return VIKT_ERR_NULL;
    if (norms && n < m->nparams)
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_grad_norms: room for %lld norms, the model has "
                          "%lld parameters", (long long)n, (long long)m->nparams);
    double total = 0;
    for (int64_t i = 0; i < m->nparams; i++) {
        const vikt_tensor *p = m->params[i];
        double ss = p->grad ? sum_of_squares(p->grad, p->numel) : 0;
        if (norms) norms[i] = sqrt(ss);
        total += ss;
    }
    if (global) *global = sqrt(total);
    return VIKT_OK;
}

/* ------------------------------------------------------- update tracker */

struct vikt_update_tracker {
    vikt_model *model;
    float *copy;       /* the snapshot, parameters one after another */
    int64_t capacity;  /* floats allocated at copy */
    int64_t nparams;   /* parameters in the snapshot; -1 before the first */
};

int vikt_update_tracker_create(vikt_model *m, vikt_update_tracker **out) {
    if (!out) return VIKT_ERR_NULL;
    *out = NULL;
    if (!m) return VIKT_ERR_NULL;
    vikt_update_tracker *t = vikt__alloc(m, sizeof *t);
    if (!t)
        return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_update_tracker_create: out of memory");
    t->model = m;
    t->copy = NULL;
    t->capacity = 0;
    t->nparams = -1;
    *out = t;
    return VIKT_OK;
}

int vikt_update_tracker_snapshot(vikt_update_tracker *t) {
    if (!t) return VIKT_ERR_NULL;
    vikt_model *m = t->model;
    int64_t total = vikt_model_num_params(m);
    if (total > t->capacity) {
        /* Parameters were added (or this is the first snapshot): grow once. */
        float *bigger = vikt__alloc(m, (size_t)total * sizeof(float));
        if (!bigger) {
            t->nparams = -1;
            return vikt__fail(m, VIKT_ERR_NOMEM,
                              "vikt_update_tracker_snapshot: out of memory for %lld floats",
                              (long long)total);
        }
        vikt__free(m, t->copy, (size_t)t->capacity * sizeof(float));
        t->copy = bigger;
        t->capacity = total;
    }
    float *dst = t->copy;
    for (int64_t i = 0; i < m->nparams; i++) {
        const vikt_tensor *p = m->params[i];
        if (p->numel) memcpy(dst, p->data, (size_t)p->numel * sizeof(float));
        dst += p->numel;
    }
    t->nparams = m->nparams;
    return VIKT_OK;
}

/* ‖now − before‖ / ‖before‖ in double; 0/0 is 0 (nothing moved). */
static double update_ratio(const float *before, const float *now, int64_t n) {
    double delta = 0, base = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)now[i] - before[i];
        delta += d * d;
        base += (double)before[i] * before[i];
    }
    if (base == 0) return delta == 0 ? 0 : INFINITY;
    return sqrt(delta) / sqrt(base);
}

int vikt_update_tracker_ratios(const vikt_update_tracker *t, double *ratios, int64_t n) {
    if (!t) return VIKT_ERR_NULL;
    vikt_model *m = t->model;
    if (!ratios) return vikt__fail(m, VIKT_ERR_NULL, "vikt_update_tracker_ratios: ratios is NULL");
    if (t->nparams < 0)
        return vikt__fail(m, VIKT_ERR_STATE,
                          "vikt_update_tracker_ratios: no snapshot; call "
                          "vikt_update_tracker_snapshot before the step");
    if (t->nparams != m->nparams)
        return vikt__fail(m, VIKT_ERR_STATE,
                          "vikt_update_tracker_ratios: the snapshot has %lld parameters, the "
                          "model now %lld", (long long)t->nparams, (long long)m->nparams);
    if (n < m->nparams)
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_update_tracker_ratios: room for %lld ratios, the "
                          "model has %lld parameters", (long long)n, (long long)m->nparams);
    const float *before = t->copy;
    for (int64_t i = 0; i < m->nparams; i++) {
        ratios[i] = update_ratio(before, m->params[i]->data, m->params[i]->numel);
        before += m->params[i]->numel;
    }
    return VIKT_OK;
}

void vikt_update_tracker_destroy(vikt_update_tracker *t) {
    if (!t) return;
    vikt__free(t->model, t->copy, (size_t)t->capacity * sizeof(float));
    vikt__free(t->model, t, sizeof *t);
}

/* ------------------------------------------------------------ NaN / Inf */

/* Record the first non-finite element of x (the values or gradient of t) as
 * the model's error; VIKT_OK when there is none. */
static int check_array(vikt_model *m, const vikt_tensor *t, const float *x, const char *what,
                       const char *kind) {
    int64_t at = x ? vikt__first_nonfinite(x, t->numel) : -1;
    if (at < 0) return VIKT_OK;
    char s[VIKT__SHAPE_STR], w[VIKT__WHERE_STR], v[VIKT__VALUE_STR];
    return vikt__fail(m, VIKT_ERR_NONFINITE, "vikt_check_finite: %s %s '%s' (%s) holds %s at %s",
                      what, kind, t->name, vikt__shape_str(t, s), vikt__value_str(x[at], v),
                      vikt__where_str(t, at, w));
}

int vikt_check_finite(vikt_model *m, int what) {
    if (!m) return VIKT_ERR_NULL;
    int known = VIKT_STATS_VALUE | VIKT_STATS_GRAD;
    if (what == 0 || (what & ~known))
        return vikt__fail(m, VIKT_ERR_ARG,
                          "vikt_check_finite: what must be VIKT_STATS_VALUE, VIKT_STATS_GRAD or "
                          "both, not %d", what);
    for (int64_t i = 0; i < m->nparams; i++) {
        const vikt_tensor *p = m->params[i];
        int rc = VIKT_OK;
        if (what & VIKT_STATS_VALUE) rc = check_array(m, p, p->data, "the values of", "parameter");
        if (!rc && (what & VIKT_STATS_GRAD))
            rc = check_array(m, p, p->grad, "the gradient of", "parameter");
        if (rc) return rc;
    }
    if (what & VIKT_STATS_VALUE)
        for (int64_t i = 0; i < m->nbuffers; i++) {
            const vikt_tensor *b = m->buffers[i];
            int rc = check_array(m, b, b->data, "the values of", "buffer");
            if (rc) return rc;
        }
    return VIKT_OK;
}

int vikt_set_anomaly_mode(vikt_model *m, int enabled) {
    if (!m) return VIKT_ERR_NULL;
    m->anomaly = enabled != 0;
    return VIKT_OK;
}

int vikt_anomaly_mode(const vikt_model *m) { return m ? m->anomaly : 0; }

/* ---------------------------------------------------------- gap tracker */

struct vikt_gap_tracker {
    vikt_model *model;
    double *train, *val; /* ring buffers of window losses */
    int64_t window;
    int64_t added;       /* epochs added so far */
    double tolerance;
};

int vikt_gap_tracker_create(vikt_model *m, int64_t window, double tolerance,
                            vikt_gap_tracker **out) {
    if (!out) return VIKT_ERR_NULL;
    *out = NULL;
    if (!m) return VIKT_ERR_NULL;
    if (window < 2 || window > 1000000)
        return vikt__fail(m, VIKT_ERR_ARG,
                          "vikt_gap_tracker_create: window %lld is not in 2..1000000",
                          (long long)window);
    if (!isfinite(tolerance) || tolerance < 0)
        return vikt__fail(m, VIKT_ERR_ARG,
                          "vikt_gap_tracker_create: tolerance %g is not finite and >= 0",
                          tolerance);
    vikt_gap_tracker *t = vikt__alloc(m, sizeof *t);
    double *losses = vikt__alloc(m, 2 * (size_t)window * sizeof(double));
    if (!t || !losses) {
        vikt__free(m, t, sizeof *t);
        vikt__free(m, losses, 2 * (size_t)window * sizeof(double));
        return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_gap_tracker_create: out of memory");
    }
    t->model = m;
    t->train = losses;
    t->val = losses + window;
    t->window = window;
    t->added = 0;
    t->tolerance = tolerance;
    *out = t;
    return VIKT_OK;
}

/* The least-squares slope of the last `window` values of a ring buffer
 * against the epoch 0..W-1: Σ(e − ē)·y / Σ(e − ē)², where Σ(e − ē)² =
 * W(W² − 1)/12 (Σ(e − ē) = 0, so y's mean drops out). */
static double slope(const vikt_gap_tracker *t, const double *ring) {
    int64_t w = t->window, oldest = t->added % w;
    double centre = (double)(w - 1) / 2, num = 0;
    for (int64_t e = 0; e < w; e++) num += ((double)e - centre) * ring[(oldest + e) % w];
    return num / ((double)w * ((double)w * w - 1) / 12);
}

int vikt_gap_tracker_state(const vikt_gap_tracker *t, double *train_slope, double *val_slope,
                           double *gap) {
    if (!t) return VIKT_ERR_NULL;
    int full = t->added >= t->window;
    double ts = full ? slope(t, t->train) : NAN, vs = full ? slope(t, t->val) : NAN;
    if (train_slope) *train_slope = ts;
    if (val_slope) *val_slope = vs;
    if (gap) {
        int64_t last = (t->added - 1) % t->window;
        *gap = t->added ? t->val[last] - t->train[last] : NAN;
    }
    return full && vs > t->tolerance && ts < 0;
}

int vikt_gap_tracker_add(vikt_gap_tracker *t, double train_loss, double val_loss) {
    if (!t) return VIKT_ERR_NULL;
    if (!isfinite(train_loss) || !isfinite(val_loss))
        return vikt__fail(t->model, VIKT_ERR_ARG,
                          "vikt_gap_tracker_add: losses must be finite, got train %g, "
                          "validation %g", train_loss, val_loss);
    int64_t slot = t->added % t->window;
    t->train[slot] = train_loss;
    t->val[slot] = val_loss;
    t->added++;
    return vikt_gap_tracker_state(t, NULL, NULL, NULL);
}

void vikt_gap_tracker_destroy(vikt_gap_tracker *t) {
    if (!t) return;
    vikt__free(t->model, t->train, 2 * (size_t)t->window * sizeof(double));
    vikt__free(t->model, t, sizeof *t);
}
