/* Datasets: samples shared between a dataset and its splits, an order that
 * batches follow, shuffles from the model's generator, and batch gathering
 * into caller buffers or step tensors. Loaders are in csv.c and idx.c. */
#include "../vikt_internal.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- samples */

vikt__samples *vikt__samples_alloc(vikt_model *m, const char *opname, int64_t rows,
                                   int64_t sample_numel, int with_labels) {
    vikt__samples *s = vikt__alloc(m, sizeof *s);
    if (!s) goto nomem;
    memset(s, 0, sizeof *s);
    s->refs = 0;
    s->owned = 1;
    s->rows = rows;
    s->sample_numel = sample_numel;
    s->features = vikt__alloc(m, (size_t)rows * (size_t)sample_numel * sizeof(float));
    if (!s->features) goto nomem;
    if (with_labels) {
        s->labels = vikt__alloc(m, (size_t)rows * sizeof(int32_t));
        if (!s->labels) goto nomem;
    }
    return s;
nomem:
    vikt__samples_release(m, s);
    vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for %lld samples of %lld floats", opname,
               (long long)rows, (long long)sample_numel);
    return NULL;
}

void vikt__samples_release(vikt_model *m, vikt__samples *s) {
    if (!s) return;
    if (s->owned) {
        size_t rows = (size_t)s->rows;
        vikt__free(m, s->features, rows * (size_t)s->sample_numel * sizeof(float));
        vikt__free(m, s->labels, rows * sizeof(int32_t));
        vikt__free(m, s->targets, rows * (size_t)s->target_width * sizeof(float));
    }
    vikt__free(m, s, sizeof *s);
}

/* --------------------------------------------------------------- datasets */

static vikt_dataset *dataset_with_order(vikt_model *m, const char *opname,
                                        const vikt_dataset *like, int64_t n) {
    vikt_dataset *ds = vikt__alloc(m, sizeof *ds);
    int64_t *order = ds ? vikt__alloc(m, (size_t)n * sizeof *order) : NULL;
    if (!order) {
        vikt__free(m, ds, sizeof *ds);
        vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for an order of %lld samples", opname,
                   (long long)n);
        return NULL;
    }
    *ds = *like;
    ds->n = n;
    ds->order = order;
    ds->samples->refs++;
    return ds;
}

vikt_dataset *vikt__dataset_new(vikt_model *m, const char *opname, vikt__samples *s, int rank,
                                const int64_t *shape, int64_t target_width, int64_t classes) {
    vikt_dataset like;
    memset(&like, 0, sizeof like);
    like.model = m;
    like.samples = s;
    like.rank = rank;
    like.sample_numel = 1;
    for (int i = 0; i < rank; i++) {
        like.shape[i] = shape[i];
        like.sample_numel *= shape[i];
    }
    like.target_width = target_width;
    like.classes = classes;
    vikt_dataset *ds = dataset_with_order(m, opname, &like, s->rows);
    if (!ds) return NULL;
    for (int64_t i = 0; i < ds->n; i++) ds->order[i] = i;
    return ds;
}

void vikt_dataset_destroy(vikt_dataset *ds) {
    if (!ds) return;
    vikt_model *m = ds->model;
    if (--ds->samples->refs == 0) vikt__samples_release(m, ds->samples);
    vikt__free(m, ds->order, (size_t)ds->n * sizeof *ds->order);
    vikt__free(m, ds, sizeof *ds);
}

/* The largest number of floats a dataset may hold: every byte count derived
 * from it fits in size_t and int64_t. */
#define MAX_FLOATS ((int64_t)(SIZE_MAX / 8 < INT64_MAX / 8 ? SIZE_MAX / 8 : INT64_MAX / 8))

static int check_create_args(vikt_model *m, int64_t n, int rank, const int64_t *shape,
                             const float *features, const int32_t *labels,
                             const float *targets, int64_t target_width) {
    static const char op[] = "vikt_dataset_create";
    if (!shape || !features) return vikt__fail(m, VIKT_ERR_NULL, "%s: shape or features is NULL", op);
    if (n < 1) return vikt__fail(m, VIKT_ERR_ARG, "%s: n = %lld, need >= 1", op, (long long)n);
    if (rank < 1 || rank > 3)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: sample rank %d, need 1 to 3", op, rank);
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 1 || shape[i] > MAX_FLOATS / numel)
            return vikt__fail(m, VIKT_ERR_ARG, "%s: shape[%d] = %lld, need >= 1 (and a size that fits)",
                              op, i, (long long)shape[i]);
        numel *= shape[i];
    }
    if (numel > MAX_FLOATS / n)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: %lld samples of %lld floats overflow", op,
                          (long long)n, (long long)numel);
    if (labels && targets)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: give labels or targets, not both", op);
    if (targets ? target_width < 1 || target_width > MAX_FLOATS / n : target_width != 0)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: target_width = %lld %s", op,
                          (long long)target_width,
                          targets ? "with targets, need >= 1" : "without targets, need 0");
    for (int64_t i = 0; labels && i < n; i++)
        if (labels[i] < 0)
            return vikt__fail(m, VIKT_ERR_ARG, "%s: labels[%lld] = %d, need >= 0", op,
                              (long long)i, (int)labels[i]);
    return VIKT_OK;
}

int vikt_dataset_create(vikt_model *m, int64_t n, int rank, const int64_t *shape,
                        const float *features, const int32_t *labels, const float *targets,
                        int64_t target_width, vikt_dataset **out) {
    if (!out) return VIKT_ERR_NULL;
    *out = NULL;
    if (!m) return VIKT_ERR_NULL;
    int err = check_create_args(m, n, rank, shape, features, labels, targets, target_width);
    if (err) return err;
    vikt__samples *s = vikt__alloc(m, sizeof *s);
    if (!s)
        return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_dataset_create: out of memory");
    memset(s, 0, sizeof *s);
    s->rows = n;
    s->features = (float *)features; /* borrowed: never written (owned == 0) */
    s->labels = (int32_t *)labels;
    s->targets = (float *)targets;
    s->target_width = target_width;
    int64_t classes = 0;
    for (int64_t i = 0; labels && i < n; i++)
        if (labels[i] >= classes) classes = (int64_t)labels[i] + 1;
    s->sample_numel = 1;
    for (int i = 0; i < rank; i++) s->sample_numel *= shape[i];
    *out = vikt__dataset_new(m, "vikt_dataset_create", s, rank, shape, target_width, classes);
    if (!*out) {
        vikt__samples_release(m, s);
        return VIKT_ERR_NOMEM;
    }
    return VIKT_OK;
}

int64_t vikt_dataset_size(const vikt_dataset *ds) { return ds ? ds->n : VIKT_ERR_NULL; }

int vikt_dataset_feature_shape(const vikt_dataset *ds, int64_t *shape) {
    if (!ds) return VIKT_ERR_NULL;
    for (int i = 0; shape && i < ds->rank; i++) shape[i] = ds->shape[i];
    return ds->rank;
}

int64_t vikt_dataset_num_classes(const vikt_dataset *ds) {
    return ds ? ds->classes : VIKT_ERR_NULL;
}

int64_t vikt_dataset_target_width(const vikt_dataset *ds) {
    return ds ? ds->target_width : VIKT_ERR_NULL;
}

/* ----------------------------------------------------------------- orders */

static void permute(vikt__rng *rng, int64_t *order, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)vikt__rng_below(rng, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

int vikt_dataset_shuffle(vikt_dataset *ds) {
    if (!ds) return VIKT_ERR_NULL;
    permute(&ds->model->rng, ds->order, ds->n);
    return VIKT_OK;
}

int vikt_dataset_split(const vikt_dataset *ds, int64_t val_count, vikt_dataset **train,
                       vikt_dataset **val) {
    static const char op[] = "vikt_dataset_split";
    if (train) *train = NULL;
    if (val) *val = NULL;
    if (!ds || !train || !val) return VIKT_ERR_NULL;
    vikt_model *m = ds->model;
    if (val_count < 1 || val_count >= ds->n)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: val_count = %lld of %lld samples, need 1 to %lld",
                          op, (long long)val_count, (long long)ds->n, (long long)ds->n - 1);
    int64_t ntrain = ds->n - val_count;
    vikt_dataset *t = dataset_with_order(m, op, ds, ntrain);
    vikt_dataset *v = t ? dataset_with_order(m, op, ds, val_count) : NULL;
    if (!v) {
        vikt_dataset_destroy(t);
        return VIKT_ERR_NOMEM;
    }
    /* Shuffle a copy of the order in place across the two new arrays: the
     * permutation is drawn over positions 0..n-1, the first ntrain landing in
     * t and the rest in v. */
    for (int64_t i = 0; i < ds->n; i++) {
        int64_t *slot = i < ntrain ? &t->order[i] : &v->order[i - ntrain];
        *slot = ds->order[i];
    }
    for (int64_t i = ds->n - 1; i > 0; i--) {
        int64_t j = (int64_t)vikt__rng_below(&m->rng, (uint64_t)i + 1);
        int64_t *a = i < ntrain ? &t->order[i] : &v->order[i - ntrain];
        int64_t *b = j < ntrain ? &t->order[j] : &v->order[j - ntrain];
        int64_t tmp = *a;
        *a = *b;
        *b = tmp;
    }
    *train = t;
    *val = v;
    return VIKT_OK;
}

int vikt_dataset_scale(vikt_dataset *ds, float scale, float shift) {
    if (!ds) return VIKT_ERR_NULL;
    vikt_model *m = ds->model;
    if (!isfinite(scale) || !isfinite(shift))
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_dataset_scale: scale %g and shift %g must be finite",
                          (double)scale, (double)shift);
    vikt__samples *s = ds->samples;
    if (!s->owned)
        return vikt__fail(m, VIKT_ERR_STATE,
                          "vikt_dataset_scale: the features are the caller's arrays; scale them there");
    int64_t total = s->rows * s->sample_numel;
    for (int64_t i = 0; i < total; i++) s->features[i] = s->features[i] * scale + shift;
    return VIKT_OK;
}

/* ---------------------------------------------------------------- batches */

static int check_range(const vikt_dataset *ds, const char *op, int64_t start, int64_t count) {
    if (start < 0 || count < 1 || start > ds->n || count > ds->n - start)
        return vikt__fail(ds->model, VIKT_ERR_ARG,
                          "%s: positions [%lld, %lld + %lld) outside a dataset of %lld samples",
                          op, (long long)start, (long long)start, (long long)count,
                          (long long)ds->n);
    return VIKT_OK;
}

static void gather_features(const vikt_dataset *ds, int64_t start, int64_t count, float *dst) {
    const vikt__samples *s = ds->samples;
    size_t bytes = (size_t)ds->sample_numel * sizeof(float);
    for (int64_t i = 0; i < count; i++)
        memcpy(dst + i * ds->sample_numel, s->features + ds->order[start + i] * ds->sample_numel,
               bytes);
}

static void gather_targets(const vikt_dataset *ds, int64_t start, int64_t count, float *dst) {
    const vikt__samples *s = ds->samples;
    int64_t w = ds->target_width;
    for (int64_t i = 0; i < count; i++)
        memcpy(dst + i * w, s->targets + ds->order[start + i] * w, (size_t)w * sizeof(float));
}

int vikt_dataset_copy_batch(const vikt_dataset *ds, int64_t start, int64_t count,
                            float *features, int32_t *labels, float *targets) {
    static const char op[] = "vikt_dataset_copy_batch";
    if (!ds) return VIKT_ERR_NULL;
    int err = check_range(ds, op, start, count);
    if (err) return err;
    if (labels && !ds->samples->labels)
        return vikt__fail(ds->model, VIKT_ERR_ARG, "%s: labels asked of a dataset without labels", op);
    if (targets && !ds->samples->targets)
        return vikt__fail(ds->model, VIKT_ERR_ARG, "%s: targets asked of a dataset without targets",
                          op);
    if (features) gather_features(ds, start, count, features);
    for (int64_t i = 0; labels && i < count; i++)
        labels[i] = ds->samples->labels[ds->order[start + i]];
    if (targets) gather_targets(ds, start, count, targets);
    return VIKT_OK;
}

vikt_tensor *vikt_dataset_input(const vikt_dataset *ds, int64_t start, int64_t count) {
    static const char op[] = "vikt_dataset_input";
    if (!ds || check_range(ds, op, start, count)) return NULL;
    int64_t shape[VIKT_MAX_RANK] = {count};
    for (int i = 0; i < ds->rank; i++) shape[i + 1] = ds->shape[i];
    vikt_tensor *t = vikt__step_tensor(ds->model, op, ds->rank + 1, shape);
    if (t) gather_features(ds, start, count, t->data);
    return t;
}

vikt_tensor *vikt_dataset_target_input(const vikt_dataset *ds, int64_t start, int64_t count) {
    static const char op[] = "vikt_dataset_target_input";
    if (!ds || check_range(ds, op, start, count)) return NULL;
    if (!ds->samples->targets) {
        vikt__fail(ds->model, VIKT_ERR_ARG, "%s: the dataset has no float targets", op);
        return NULL;
    }
    vikt_tensor *t = vikt__step_tensor(ds->model, op, 2, (int64_t[]){count, ds->target_width});
    if (t) gather_targets(ds, start, count, t->data);
    return t;
}
