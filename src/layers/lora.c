/* Parameter-efficient fine-tuning of dense layers: LoRA (Hu et al. 2021) and
 * bottleneck adapters (Houlsby et al. 2019).
 *
 * Both live beside the layer, not in it: the model keeps a list of which
 * layer has which adapter, and vikt_dense asks vikt__peft_dense to add their
 * contribution to its output. Layers are re-run every step, so attaching is
 * all it takes; the base parameters are frozen and stay bitwise unchanged
 * while the adapters train.
 *
 * Merging folds LoRA's low-rank update into W in place, W += (alpha/r)·B·A,
 * and unmerging subtracts the same product again. No copy of W is kept (it
 * would double the memory of the adapted layers), so unmerge restores W only
 * to float32 rounding: each element can be off by about one ulp of
 * |W| + |(alpha/r)·B·A|. */
#include "../vikt_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A bottleneck adapter after the dense layer `layer`:
 * h + up(act(down(h))), with the up-projection initialised to zero. */
typedef struct vikt__bottleneck {
    char layer[VIKT__NAME_MAX];
    char down[VIKT__NAME_MAX], up[VIKT__NAME_MAX]; /* sub-layer names */
    int64_t width;
    int activation; /* vikt_activation */
} vikt__bottleneck;

static const char LORA_A[] = "lora_A.weight";
static const char LORA_B[] = "lora_B.weight";
static const char ADAPTER_DOWN[] = "adapter.down";
static const char ADAPTER_UP[] = "adapter.up";

/* ----------------------------------------------------------- bookkeeping */

static vikt__peft *peft_get(vikt_model *m, const char *op) {
    if (m->peft) return m->peft;
    m->peft = vikt__alloc(m, sizeof *m->peft);
    if (!m->peft) {
        vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", op);
        return NULL;
    }
    memset(m->peft, 0, sizeof *m->peft);
    return m->peft;
}

/* Room for one more element of size `each` in a list (doubling). */
static int grow(vikt_model *m, const char *op, void **list, int64_t n, int64_t *cap, size_t each) {
    if (n < *cap) return VIKT_OK;
    int64_t new_cap = *cap ? *cap * 2 : 4;
    void *grown = vikt__alloc(m, (size_t)new_cap * each);
    if (!grown) return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", op);
    if (n) memcpy(grown, *list, (size_t)n * each);
    vikt__free(m, *list, (size_t)*cap * each);
    *list = grown;
    *cap = new_cap;
    return VIKT_OK;
}

void vikt__peft_release(vikt_model *m) {
    vikt__peft *p = m->peft;
    if (!p) return;
    vikt__free(m, p->lora, (size_t)p->lora_cap * sizeof *p->lora);
    vikt__free(m, p->adapters, (size_t)p->adapters_cap * sizeof *p->adapters);
    vikt__free(m, p, sizeof *p);
    m->peft = NULL;
}

vikt__lora *vikt__lora_find(vikt_model *m, const char *layer) {
    if (!m->peft) return NULL;
    for (int64_t i = 0; i < m->peft->nlora; i++)
        if (strcmp(m->peft->lora[i].layer, layer) == 0) return &m->peft->lora[i];
    return NULL;
}

static vikt__bottleneck *adapter_find(vikt_model *m, const char *layer) {
    if (!m->peft) return NULL;
    for (int64_t i = 0; i < m->peft->nadapters; i++)
        if (strcmp(m->peft->adapters[i].layer, layer) == 0) return &m->peft->adapters[i];
    return NULL;
}

static int ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* A parameter an adapter owns: "<layer>.lora_A.weight", "<layer>.lora_B.weight"
 * or one of "<layer>.adapter.down|up.weight|bias". Judged by name, so it holds
 * for parameters a load created before any attach. */
static int is_adapter_param(const char *name) {
    size_t n = strlen(name);
    if (ends_with(name, n, ".lora_A.weight") || ends_with(name, n, ".lora_B.weight")) return 1;
    return strstr(name, ".adapter.down.") != NULL || strstr(name, ".adapter.up.") != NULL;
}

void vikt__peft_freeze_base(vikt_model *m) {
    for (int64_t i = 0; i < m->nparams; i++) {
        vikt_tensor *t = m->params[i];
        /* Cannot fail: parameters are leaves, and freezing allocates nothing. */
        if (!is_adapter_param(t->name)) vikt_tensor_set_requires_grad(t, 0);
    }
}

void vikt__peft_rollback(vikt_model *m, int64_t nlora, int64_t nparams) {
    if (m->peft && m->peft->nlora > nlora) m->peft->nlora = nlora;
    while (m->nparams > nparams) vikt__tensor_release(m->params[--m->nparams]);
}

/* If t is the weight of a dense layer, that layer's name length: t is
 * "<layer>.weight" of rank 2 and "<layer>.bias" exists with [out] (which
 * leaves out embeddings and the MoE router, whose weights have no bias), and
 * the layer is not an adapter's own projection. 0 otherwise. */
static size_t dense_layer_len(vikt_model *m, const vikt_tensor *t) {
    size_t n = strlen(t->name);
    if (t->rank != 2 || !ends_with(t->name, n, ".weight") || is_adapter_param(t->name)) return 0;
    size_t len = n - strlen(".weight");
    char bias[VIKT__NAME_MAX];
    if (len == 0 || len + sizeof ".bias" > sizeof bias) return 0;
    memcpy(bias, t->name, len);
    memcpy(bias + len, ".bias", sizeof ".bias");
    const vikt_tensor *b = vikt_param_find(m, bias);
    return b && b->rank == 1 && b->shape[0] == t->shape[0] ? len : 0;
}

vikt_tensor *vikt__dense_weight(vikt_model *m, const char *layer) {
    char name[VIKT__NAME_MAX];
    int n = snprintf(name, sizeof name, "%s.weight", layer);
    if (n < 0 || n >= (int)sizeof name) return NULL;
    vikt_tensor *w = vikt_param_find(m, name);
    return w && dense_layer_len(m, w) == strlen(layer) ? w : NULL;
}

/* Call fn on every dense layer whose name the pattern matches; stops at the
 * first error. Returns the number of layers, or the error. */
typedef int (*layer_fn)(vikt_model *m, const char *layer, vikt_tensor *w, void *ctx);

static int64_t for_each_dense(vikt_model *m, const char *pattern, layer_fn fn, void *ctx) {
    int64_t count = 0, n = m->nparams; /* fn may append parameters: visit only the old */
    for (int64_t i = 0; i < n; i++) {
        vikt_tensor *w = m->params[i];
        size_t len = dense_layer_len(m, w);
        if (!len) continue;
        char layer[VIKT__NAME_MAX];
        memcpy(layer, w->name, len);
        layer[len] = '\0';
        if (!vikt__name_matches(layer, pattern)) continue;
        int rc = fn(m, layer, w, ctx);
        if (rc) return rc;
        count++;
    }
    return count;
}

/* for_each_dense for an attach call: matching no layer is an error (most
 * likely the model has not run yet, so its layers do not exist). */
static int64_t attach_each(vikt_model *m, const char *op, const char *pattern, layer_fn fn,
                           void *ctx) {
    int64_t count = for_each_dense(m, pattern, fn, ctx);
    if (count == 0)
        count = vikt__fail(m, VIKT_ERR_NOT_FOUND,
                           "%s: no dense layer matches '%s' (run the model once, or load it, "
                           "before attaching)",
                           op, pattern);
    return count;
}

/* ------------------------------------------------------------------- LoRA */

vikt__lora *vikt__lora_add(vikt_model *m, const char *op, const char *layer, vikt_tensor *w,
                           int64_t rank, float alpha, float dropout) {
    vikt__peft *p = peft_get(m, op);
    if (!p || grow(m, op, (void **)&p->lora, p->nlora, &p->lora_cap, sizeof *p->lora)) return NULL;
    int64_t out = w->shape[0], in = w->shape[1];
    /* A as PEFT: kaiming_uniform_(a=√5), i.e. U(±1/√in); B zeros, so the
     * adapted layer starts out computing exactly what the base does. */
    vikt_tensor *a = vikt__layer_param(m, op, layer, LORA_A, 2, (int64_t[]){rank, in},
                                       VIKT__FILL_UNIFORM, 1.0f / sqrtf((float)in));
    vikt_tensor *b = a ? vikt__layer_param(m, op, layer, LORA_B, 2, (int64_t[]){out, rank},
                                           VIKT__FILL_CONST, 0.0f)
                       : NULL;
    if (!b) return NULL;
    vikt__lora *l = &p->lora[p->nlora++];
    memset(l, 0, sizeof *l);
    strcpy(l->layer, layer); /* shorter than its weight's name, which fits */
    l->rank = rank;
    l->alpha = alpha;
    l->dropout = dropout;
    l->w = w;
    l->a = a;
    l->b = b;
    return l;
}

typedef struct lora_args {
    const char *op;
    int64_t rank;
    float alpha, dropout;
} lora_args;

static int attach_lora(vikt_model *m, const char *layer, vikt_tensor *w, void *ctx) {
    const lora_args *args = ctx;
    if (vikt__lora_find(m, layer))
        return vikt__fail(m, VIKT_ERR_STATE, "%s: '%s' already has a LoRA adapter", args->op,
                          layer);
    return vikt__lora_add(m, args->op, layer, w, args->rank, args->alpha, args->dropout)
               ? VIKT_OK
               : m->errcode;
}

int64_t vikt_lora_attach(vikt_model *m, const char *pattern, int64_t rank, float alpha,
                         float dropout) {
    static const char op[] = "vikt_lora_attach";
    if (!m) return VIKT_ERR_NULL;
    if (!pattern) return vikt__fail(m, VIKT_ERR_NULL, "%s: pattern is NULL", op);
    if (rank < 1 || !(alpha > 0.0f) || !isfinite(alpha) || !(dropout >= 0.0f && dropout < 1.0f))
        return vikt__fail(m, VIKT_ERR_ARG,
                          "%s: '%s' needs rank >= 1, finite alpha > 0 and 0 <= dropout < 1 "
                          "(got %lld, %g, %g)",
                          op, pattern, (long long)rank, (double)alpha, (double)dropout);
    int64_t nlora = m->peft ? m->peft->nlora : 0, nparams = m->nparams;
    lora_args args = {op, rank, alpha, dropout};
    int64_t count = attach_each(m, op, pattern, attach_lora, &args);
    if (count < 0) {
        vikt__peft_rollback(m, nlora, nparams);
        return count;
    }
    vikt__peft_freeze_base(m);
    return count;
}

/* W += sign·(alpha/r)·B·A for every adapter in the other state. */
static int64_t merge_all(vikt_model *m, const char *op, int merge) {
    if (!m) return VIKT_ERR_NULL;
    int64_t changed = 0;
    for (int64_t i = 0; m->peft && i < m->peft->nlora; i++) {
        vikt__lora *l = &m->peft->lora[i];
        if (l->merged == merge) continue;
        if (l->w->mask)
            return vikt__fail(m, VIKT_ERR_STATE,
                              "%s: '%s' is pruned; merging would fill its masked weights", op,
                              l->layer);
        int64_t out = l->w->shape[0], in = l->w->shape[1], r = l->rank;
        float s = (merge ? 1.0f : -1.0f) * l->alpha / (float)r;
        int rc = vikt__gemm(m, op, 0, 0, out, in, r, s, l->b->data, r, l->a->data, in, 1.0f,
                            l->w->data, in);
        if (rc) return rc;
        l->merged = merge;
        changed++;
    }
    return changed;
}

int64_t vikt_lora_merge(vikt_model *m) { return merge_all(m, "vikt_lora_merge", 1); }

int64_t vikt_lora_unmerge(vikt_model *m) { return merge_all(m, "vikt_lora_unmerge", 0); }

/* (alpha/r)·dropout(x)·Aᵀ·Bᵀ, of y's shape; a rank-1 x goes as one row. */
static vikt_tensor *lora_delta(vikt_model *m, const vikt__lora *l, vikt_tensor *x) {
    int64_t in = l->w->shape[1], out = l->w->shape[0];
    vikt_tensor *rows = x->rank == 1 ? vikt_reshape(m, x, 2, (int64_t[]){1, in}) : x;
    if (l->dropout > 0.0f) rows = vikt_dropout(m, rows, l->dropout);
    vikt_tensor *low = vikt_matmul_t(m, rows, l->a, 0, 1);
    vikt_tensor *d = vikt_scale(m, vikt_matmul_t(m, low, l->b, 0, 1), l->alpha / (float)l->rank);
    return x->rank == 1 ? vikt_reshape(m, d, 1, (int64_t[]){out}) : d;
}

/* -------------------------------------------------- bottleneck adapters */

static vikt_tensor *activate(vikt_model *m, vikt_tensor *h, int activation) {
    switch (activation) {
    case VIKT_ACT_GELU:
        return vikt_gelu(m, h);
    case VIKT_ACT_TANH:
        return vikt_tanh(m, h);
    default:
        return vikt_relu(m, h);
    }
}

/* h + up(act(down(h))) */
static vikt_tensor *bottleneck(vikt_model *m, const vikt__bottleneck *a, vikt_tensor *h) {
    if (!h) return NULL;
    int64_t out = h->shape[h->rank - 1];
    vikt_tensor *z = activate(m, vikt_dense(m, a->down, h, a->width), a->activation);
    return vikt_add(m, h, vikt_dense(m, a->up, z, out));
}

typedef struct adapter_args {
    const char *op;
    int64_t width;
    int activation;
} adapter_args;

static int attach_adapter(vikt_model *m, const char *layer, vikt_tensor *w, void *ctx) {
    const adapter_args *args = ctx;
    const char *op = args->op;
    if (adapter_find(m, layer))
        return vikt__fail(m, VIKT_ERR_STATE, "%s: '%s' already has an adapter", op, layer);
    vikt__peft *p = peft_get(m, op);
    if (!p || grow(m, op, (void **)&p->adapters, p->nadapters, &p->adapters_cap,
                   sizeof *p->adapters))
        return m->errcode;
    vikt__bottleneck a;
    memset(&a, 0, sizeof a);
    if (vikt__sub_name(m, op, layer, ADAPTER_DOWN, a.down) ||
        vikt__sub_name(m, op, layer, ADAPTER_UP, a.up))
        return m->errcode;
    int64_t out = w->shape[0], width = args->width;
    /* down as torch.nn.Linear; up zero, so the adapter starts as the identity. */
    float bound = 1.0f / sqrtf((float)out);
    if (!vikt__layer_param(m, op, a.down, "weight", 2, (int64_t[]){width, out},
                           VIKT__FILL_UNIFORM, bound) ||
        !vikt__layer_param(m, op, a.down, "bias", 1, (int64_t[]){width}, VIKT__FILL_UNIFORM,
                           bound) ||
        !vikt__layer_param(m, op, a.up, "weight", 2, (int64_t[]){out, width}, VIKT__FILL_CONST,
                           0.0f) ||
        !vikt__layer_param(m, op, a.up, "bias", 1, (int64_t[]){out}, VIKT__FILL_CONST, 0.0f))
        return m->errcode;
    strcpy(a.layer, layer);
    a.width = width;
    a.activation = args->activation;
    p->adapters[p->nadapters++] = a;
    return VIKT_OK;
}

int64_t vikt_adapter_attach(vikt_model *m, const char *pattern, int64_t bottleneck_width,
                            vikt_activation activation) {
    static const char op[] = "vikt_adapter_attach";
    if (!m) return VIKT_ERR_NULL;
    if (!pattern) return vikt__fail(m, VIKT_ERR_NULL, "%s: pattern is NULL", op);
    if (bottleneck_width < 1 || (int)activation < VIKT_ACT_RELU || (int)activation > VIKT_ACT_TANH)
        return vikt__fail(m, VIKT_ERR_ARG,
                          "%s: '%s' needs bottleneck >= 1 and a vikt_activation (got %lld, %d)",
                          op, pattern, (long long)bottleneck_width, (int)activation);
    int64_t nadapters = m->peft ? m->peft->nadapters : 0, nparams = m->nparams;
    adapter_args args = {op, bottleneck_width, (int)activation};
    int64_t count = attach_each(m, op, pattern, attach_adapter, &args);
    if (count < 0) {
        if (m->peft) m->peft->nadapters = nadapters;
        vikt__peft_rollback(m, m->peft ? m->peft->nlora : 0, nparams);
        return count;
    }
    vikt__peft_freeze_base(m);
    return count;
}

/* ------------------------------------------------------------ the hook */

vikt_tensor *vikt__peft_dense(vikt_model *m, const char *name, vikt_tensor *x, vikt_tensor *y) {
    if (!m->peft || !y) return y;
    const vikt__lora *l = vikt__lora_find(m, name);
    if (l && !l->merged) y = vikt_add(m, y, lora_delta(m, l, x));
    const vikt__bottleneck *a = adapter_find(m, name);
    return a ? bottleneck(m, a, y) : y;
}
