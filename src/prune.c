/* Magnitude pruning: masks that keep chosen weights at exactly zero, the
 * cubic gradual schedule, and a sparsity report.
 *
 * Choosing the round(s·n) smallest magnitudes is a selection, not a sort:
 * each value gets a 32-bit key (0 for a value already masked, else the bits
 * of |w| plus one, which order like the magnitudes, NaN above +Inf), and a
 * radix select (four passes over the values, a 256-bucket histogram each)
 * finds the key K of the k-th smallest and how many of the values equal to K
 * to take, in index order. So pruning needs no memory besides the masks,
 * takes linear time, and ties break by position. */
#include "vikt_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------- the hooks */

void vikt__prune_apply_mask(vikt_tensor *t) {
    const uint8_t *mask = t->mask;
    float *p = t->data;
    for (int64_t i = 0; i < t->numel; i++) p[i] = mask[i] ? p[i] : 0.0f;
}

void vikt__prune_mask_grads(vikt_model *m) {
    for (int64_t k = 0; k < m->nparams; k++) {
        vikt_tensor *t = m->params[k];
        if (!t->mask || !t->grad) continue;
        const uint8_t *mask = t->mask;
        float *g = t->grad;
        for (int64_t i = 0; i < t->numel; i++) g[i] = mask[i] ? g[i] : 0.0f;
    }
}

void vikt__prune_mask_weights(vikt_model *m) {
    for (int64_t k = 0; k < m->nparams; k++)
        if (m->params[k]->mask) vikt__prune_apply_mask(m->params[k]);
}

/* ------------------------------------------------------- the selection */

/* Which parameters a pattern selects: a predicate over the registry, so a
 * selection needs no memory. */
typedef struct selection {
    vikt_model *m;
    const char *pattern; /* NULL: every parameter of rank >= 2 */
} selection;

static int selected(const selection *sel, const vikt_tensor *t) {
    if (!sel->pattern) return t->rank >= 2;
    if (strcmp(t->name, sel->pattern) == 0) return 1;
    return t->rank >= 2 && vikt__name_matches(t->name, sel->pattern);
}

static int64_t count_selected(const selection *sel) {
    int64_t n = 0;
    for (int64_t k = 0; k < sel->m->nparams; k++) n += selected(sel, sel->m->params[k]);
    return n;
}

static int not_found(vikt_model *m, const char *fn, const char *pattern) {
    if (!pattern)
        return vikt__fail(m, VIKT_ERR_NOT_FOUND, "%s: the model has no parameter of rank >= 2",
                          fn);
    return vikt__fail(m, VIKT_ERR_NOT_FOUND,
                      "%s: no parameter is named '%s', and none of rank >= 2 is under it", fn,
                      pattern);
}

/* ------------------------------------------------------------ the keys */

static inline uint32_t key_of(const vikt_tensor *t, int64_t i) {
    if (t->mask && !t->mask[i]) return 0;
    uint32_t bits;
    memcpy(&bits, &t->data[i], sizeof bits);
    return (bits & 0x7fffffffu) + 1u;
}

/* The tensors one threshold applies to: all selected ones (global) or one. */
typedef struct group {
    vikt_tensor *const *list; /* m->params */
    int64_t n;
    const selection *sel; /* NULL: every tensor of the list */
} group;

static int in_group(const group *g, int64_t k) {
    return !g->sel || selected(g->sel, g->list[k]);
}

/* The key of the k-th smallest value (1 <= k <= values), and in *take how
 * many values with that key are among the k smallest (the first ones in
 * group order). */
static uint32_t kth_key(const group *g, int64_t k, int64_t *take) {
    uint32_t prefix = 0, known = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        int64_t hist[256] = {0};
        for (int64_t t = 0; t < g->n; t++) {
            if (!in_group(g, t)) continue;
            const vikt_tensor *x = g->list[t];
            for (int64_t i = 0; i < x->numel; i++) {
                uint32_t key = key_of(x, i);
                if ((key & known) == prefix) hist[(key >> shift) & 0xffu]++;
            }
        }
        int b = 0;
        while (k > hist[b]) k -= hist[b++];
        prefix |= (uint32_t)b << shift;
        known |= 0xffu << shift;
    }
    *take = k;
    return prefix;
}

/* Mask the `want` smallest values of the group (want >= what is masked). */
static void prune_group(const group *g, int64_t want) {
    if (want == 0) return;
    int64_t take;
    uint32_t cut = kth_key(g, want, &take);
    for (int64_t t = 0; t < g->n; t++) {
        if (!in_group(g, t)) continue;
        vikt_tensor *x = g->list[t];
        for (int64_t i = 0; i < x->numel; i++) {
            uint32_t key = key_of(x, i);
            if (key < cut || (key == cut && take > 0)) {
                take -= key == cut;
                x->mask[i] = 0;
            }
        }
        vikt__prune_apply_mask(x);
    }
}

static void group_counts(const group *g, int64_t *values, int64_t *masked) {
    *values = *masked = 0;
    for (int64_t t = 0; t < g->n; t++) {
        if (!in_group(g, t)) continue;
        const vikt_tensor *x = g->list[t];
        *values += x->numel;
        for (int64_t i = 0; x->mask && i < x->numel; i++) *masked += !x->mask[i];
    }
}

/* round(s·n), half to even as Python's round() in torch.nn.utils.prune. */
static int64_t round_count(double s, int64_t n) {
    double x = s * (double)n, f = floor(x), frac = x - f;
    int64_t r = (int64_t)f;
    if (frac > 0.5 || (frac == 0.5 && (r & 1))) r++;
    return r > n ? n : r;
}

static void prune(const group *g, double sparsity) {
    int64_t values, masked;
    group_counts(g, &values, &masked);
    int64_t want = round_count(sparsity, values);
    if (want > masked) prune_group(g, want);
}

/* ------------------------------------------------------------- masks */

/* A new mask is filled with FRESH until every allocation has succeeded, so
 * a failure can tell the masks it made (freed again: nothing changes) from
 * older ones, which hold only 0 and 1. Empty tensors get no mask. */
#define FRESH 2

static void drop_mask(vikt_tensor *t) {
    vikt__free(t->model, t->mask, (size_t)t->numel);
    t->mask = NULL;
}

static int ensure_masks(const selection *sel, const char *fn) {
    vikt_model *m = sel->m;
    int64_t k = 0;
    for (; k < m->nparams; k++) {
        vikt_tensor *t = m->params[k];
        if (!selected(sel, t) || t->mask || t->numel == 0) continue;
        t->mask = vikt__alloc(m, (size_t)t->numel);
        if (!t->mask) break;
        memset(t->mask, FRESH, (size_t)t->numel);
    }
    int failed = k < m->nparams;
    for (int64_t j = 0; j < k; j++) {
        vikt_tensor *t = m->params[j];
        if (!t->mask || t->mask[0] != FRESH) continue;
        if (failed)
            drop_mask(t);
        else
            memset(t->mask, 1, (size_t)t->numel);
    }
    if (failed)
        return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for the mask of '%s' (%lld values)",
                          fn, m->params[k]->name, (long long)m->params[k]->numel);
    return VIKT_OK;
}

/* -------------------------------------------------------------- public */

int64_t vikt_prune_magnitude(vikt_model *m, const char *pattern, double sparsity,
                             vikt_prune_scope scope) {
    static const char fn[] = "vikt_prune_magnitude";
    if (!m) return VIKT_ERR_NULL;
    if (!(sparsity >= 0.0 && sparsity <= 1.0))
        return vikt__fail(m, VIKT_ERR_ARG, "%s: sparsity must be in [0, 1], got %g", fn, sparsity);
    if (scope != VIKT_PRUNE_PER_TENSOR && scope != VIKT_PRUNE_GLOBAL)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: unknown scope %d", fn, (int)scope);
    selection sel = {m, pattern && pattern[0] ? pattern : NULL};
    int64_t n = count_selected(&sel);
    if (!n) return not_found(m, fn, sel.pattern);
    int rc = ensure_masks(&sel, fn);
    if (rc) return rc;
    if (scope == VIKT_PRUNE_GLOBAL) {
        group g = {m->params, m->nparams, &sel};
        prune(&g, sparsity);
    } else {
        for (int64_t k = 0; k < m->nparams; k++) {
            if (!selected(&sel, m->params[k])) continue;
            group g = {&m->params[k], 1, NULL};
            prune(&g, sparsity);
        }
    }
    return n;
}

int vikt_prune_schedule(vikt_model *m, int64_t step, double initial, double final,
                        int64_t begin, int64_t every, int64_t count, double *sparsity) {
    static const char fn[] = "vikt_prune_schedule";
#define BAD(...) (m ? vikt__fail(m, VIKT_ERR_ARG, __VA_ARGS__) : VIKT_ERR_ARG)
    if (!sparsity) return m ? vikt__fail(m, VIKT_ERR_NULL, "%s: sparsity is NULL", fn) : VIKT_ERR_NULL;
    if (!(initial >= 0.0 && initial <= 1.0))
        return BAD("%s: initial sparsity must be in [0, 1], got %g", fn, initial);
    if (!(final >= initial && final <= 1.0))
        return BAD("%s: final sparsity must be in [initial = %g, 1], got %g", fn, initial, final);
    if (step < 0 || begin < 0 || every < 1 || count < 1)
        return BAD("%s: need step >= 0, begin >= 0, every >= 1, count >= 1; got %lld, %lld, %lld, "
                   "%lld",
                   fn, (long long)step, (long long)begin, (long long)every, (long long)count);
    if (count > (INT64_MAX - begin) / every)
        return BAD("%s: the last pruning step %lld + %lld x %lld overflows", fn, (long long)begin,
                   (long long)count, (long long)every);
#undef BAD
    if (step < begin) {
        *sparsity = 0.0;
        return 0;
    }
    int64_t j = (step - begin) / every;
    int at_step = j <= count && (step - begin) % every == 0;
    if (j >= count) {
        *sparsity = final; /* exactly, as at j = 0 below */
    } else {
        double left = 1.0 - (double)j / (double)count;
        *sparsity = j == 0 ? initial : final + (initial - final) * left * left * left;
    }
    return at_step;
}

int64_t vikt_prune_remove(vikt_model *m, const char *pattern) {
    if (!m) return VIKT_ERR_NULL;
    int64_t matched = 0, dropped = 0;
    for (int64_t k = 0; k < m->nparams; k++) {
        vikt_tensor *t = m->params[k];
        if (pattern && !vikt__name_matches(t->name, pattern)) continue;
        matched++;
        if (!t->mask) continue;
        drop_mask(t);
        dropped++;
    }
    if (!matched && pattern)
        return vikt__fail(m, VIKT_ERR_NOT_FOUND, "vikt_prune_remove: no parameter matches '%s'",
                          pattern);
    return dropped;
}

const uint8_t *vikt_prune_mask(const vikt_tensor *t) {
    return t && t->storage == VIKT__PARAM ? t->mask : NULL;
}

static int64_t zeros_of(const vikt_tensor *t) {
    int64_t z = 0;
    for (int64_t i = 0; i < t->numel; i++) z += t->data[i] == 0.0f;
    return z;
}

int64_t vikt_prune_count(vikt_model *m, const char *pattern, int64_t *zeros, int64_t *numel) {
    if (!m) return VIKT_ERR_NULL;
    selection sel = {m, pattern && pattern[0] ? pattern : NULL};
    int64_t n = 0, z = 0, values = 0;
    for (int64_t k = 0; k < m->nparams; k++) {
        const vikt_tensor *t = m->params[k];
        if (!selected(&sel, t)) continue;
        n++;
        z += zeros_of(t);
        values += t->numel;
    }
    if (!n) return not_found(m, "vikt_prune_count", sel.pattern);
    if (zeros) *zeros = z;
    if (numel) *numel = values;
    return n;
}

static double percent(int64_t part, int64_t whole) {
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

int64_t vikt_prune_report(const vikt_model *m, char *buf, size_t size) {
    if (!m || (!buf && size)) return VIKT_ERR_NULL;
    vikt__text o = {buf, size, 0};
    if (buf && size) buf[0] = '\0';
    int width = 4;
    for (int64_t k = 0; k < m->nparams; k++) {
        int len = (int)strlen(m->params[k]->name);
        width = len > width ? len : width;
    }
    vikt__emit(&o, "%-*s  %-16s  %12s  %12s  %8s  %12s\n", width, "name", "shape", "count",
               "zeros", "sparsity", "masked");
    int64_t values = 0, zeros = 0, masked = 0, pruned = 0;
    for (int64_t k = 0; k < m->nparams; k++) {
        const vikt_tensor *t = m->params[k];
        char dims[VIKT__SHAPE_STR], held[24] = "-";
        int64_t z = zeros_of(t);
        if (t->mask) {
            int64_t h = 0;
            for (int64_t i = 0; i < t->numel; i++) h += !t->mask[i];
            snprintf(held, sizeof held, "%lld", (long long)h);
            masked += h;
            pruned++;
        }
        vikt__emit(&o, "%-*s  %-16s  %12lld  %12lld  %7.2f%%  %12s\n", width, t->name,
                   vikt__shape_str(t, dims), (long long)t->numel, (long long)z,
                   percent(z, t->numel), held);
        values += t->numel;
        zeros += z;
    }
    vikt__emit(&o, "total %lld values, %lld zero (%.2f%%), %lld masked in %lld of %lld tensors\n",
               (long long)values, (long long)zeros, percent(zeros, values), (long long)masked,
               (long long)pruned, (long long)m->nparams);
    return o.len;
}
