/* Elastic weight consolidation (Kirkpatrick et al. 2017): a diagonal Fisher
 * estimate from squared gradients, an anchor θ*, and the penalty
 * λ/2·Σ F(θ − θ*)² as an op on the tape. See @ref ewc_guide in vikt.h.
 *
 * Layout: one allocation holds the struct, the tracked parameters, their
 * offsets into the flat arrays, the running Fisher sum (double: a sum over
 * tens of thousands of samples keeps its low bits) and the consolidated
 * F and θ* (float, like the parameters). Nothing else is ever allocated, so
 * accumulating, consolidating and penalizing cannot run out of memory
 * (the penalty's output and tape record come from the step arena). */
#include "vikt_internal.h"

#include <limits.h>
#include <string.h>

struct vikt_ewc {
    vikt_model *model;
    int nparams;
    int consolidated;   /* F and θ* are set */
    int64_t total;      /* scalar parameters tracked */
    int64_t pending;    /* accumulate calls since the last consolidation */
    size_t bytes;       /* of the one allocation */
    vikt_tensor **params; /* nparams, creation order */
    int64_t *offset;    /* nparams: first element of each in the flat arrays */
    double *sum;        /* total: Σ g² since the last consolidation */
    float *fisher;      /* total: F */
    float *anchor;      /* total: θ* */
};

static size_t round_up(size_t n) { return (n + 63) & ~(size_t)63; }

/* ------------------------------------------------------------ lifecycle */

int vikt_ewc_create(vikt_model *m, vikt_ewc **out) {
    static const char op[] = "vikt_ewc_create";
    if (out) *out = NULL;
    if (!m || !out) return VIKT_ERR_NULL;
    if (m->nparams == 0)
        return vikt__fail(m, VIKT_ERR_STATE,
                          "%s: the model has no parameters yet; create them first "
                          "(a layer does on its first forward pass)", op);
    if (m->nparams > INT_MAX)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: %lld parameter tensors; at most %d", op,
                          (long long)m->nparams, INT_MAX);
    int64_t total = 0;
    for (int64_t i = 0; i < m->nparams; i++) total += m->params[i]->numel;
    size_t n = (size_t)m->nparams;
    if ((uint64_t)total > (SIZE_MAX / 4) / (sizeof(double) + 2 * sizeof(float)))
        return vikt__fail(m, VIKT_ERR_NOMEM, "%s: %lld values do not fit in memory", op,
                          (long long)total);
    size_t t = (size_t)total;
    size_t at_params = round_up(sizeof(vikt_ewc));
    size_t at_offset = at_params + round_up(n * sizeof(vikt_tensor *));
    size_t at_sum = at_offset + round_up(n * sizeof(int64_t));
    size_t at_fisher = at_sum + round_up(t * sizeof(double));
    size_t at_anchor = at_fisher + round_up(t * sizeof(float));
    size_t bytes = at_anchor + round_up(t * sizeof(float));
    unsigned char *block = vikt__alloc(m, bytes);
    if (!block)
        return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for %lld parameter values", op,
                          (long long)total);
    memset(block, 0, bytes);
    vikt_ewc *e = (vikt_ewc *)(void *)block;
    e->model = m;
    e->nparams = (int)n;
    e->total = total;
    e->bytes = bytes;
    e->params = (vikt_tensor **)(void *)(block + at_params);
    e->offset = (int64_t *)(void *)(block + at_offset);
    e->sum = (double *)(void *)(block + at_sum);
    e->fisher = (float *)(void *)(block + at_fisher);
    e->anchor = (float *)(void *)(block + at_anchor);
    int64_t off = 0;
    for (int i = 0; i < e->nparams; i++) {
        e->params[i] = m->params[i];
        e->offset[i] = off;
        off += m->params[i]->numel;
    }
    *out = e;
    return VIKT_OK;
}

void vikt_ewc_destroy(vikt_ewc *ewc) {
    if (ewc) vikt__free(ewc->model, ewc, ewc->bytes);
}

/* --------------------------------------------------------------- Fisher */

/* A parameter's gradient when it contributes to the Fisher: trainable and
 * reached by a backward pass. */
static const float *fisher_grad(vikt_tensor *p) {
    return p->requires_grad ? p->grad : NULL;
}

int vikt_ewc_accumulate(vikt_ewc *ewc) {
    static const char op[] = "vikt_ewc_accumulate";
    if (!ewc) return VIKT_ERR_NULL;
    vikt_model *m = ewc->model;
    if (m->errcode)
        return vikt__fail(m, VIKT_ERR_STATE, "%s: the model holds an error", op);
    /* Check first, so a bad gradient leaves the sum as it was. */
    for (int i = 0; i < ewc->nparams; i++) {
        vikt_tensor *p = ewc->params[i];
        const float *g = fisher_grad(p);
        for (int64_t j = 0; g && j < p->numel; j++)
            if (!isfinite(g[j]))
                return vikt__fail(m, VIKT_ERR_ARG, "%s: gradient of '%s' is %g at element %lld",
                                  op, p->name, (double)g[j], (long long)j);
    }
    for (int i = 0; i < ewc->nparams; i++) {
        vikt_tensor *p = ewc->params[i];
        const float *g = fisher_grad(p);
        double *s = ewc->sum + ewc->offset[i];
        for (int64_t j = 0; g && j < p->numel; j++) s[j] += (double)g[j] * g[j];
    }
    ewc->pending++;
    return VIKT_OK;
}

int vikt_ewc_consolidate(vikt_ewc *ewc, float gamma) {
    static const char op[] = "vikt_ewc_consolidate";
    if (!ewc) return VIKT_ERR_NULL;
    vikt_model *m = ewc->model;
    if (!(gamma >= 0.0f && gamma <= 1.0f))
        return vikt__fail(m, VIKT_ERR_ARG, "%s: gamma is %g; it must be in [0, 1]", op,
                          (double)gamma);
    if (ewc->pending == 0)
        return vikt__fail(m, VIKT_ERR_STATE,
                          "%s: nothing accumulated since the last consolidation; call "
                          "vikt_ewc_accumulate after a backward pass of the task's loss", op);
    double inv = 1.0 / (double)ewc->pending;
    /* Before the first consolidation F is zero, so gamma changes nothing. */
    for (int i = 0; i < ewc->nparams; i++) {
        vikt_tensor *p = ewc->params[i];
        int64_t o = ewc->offset[i];
        for (int64_t j = 0; j < p->numel; j++) {
            ewc->fisher[o + j] = (float)((double)gamma * ewc->fisher[o + j] + ewc->sum[o + j] * inv);
            ewc->sum[o + j] = 0.0;
        }
        memcpy(ewc->anchor + o, p->data, (size_t)p->numel * sizeof(float));
    }
    ewc->pending = 0;
    ewc->consolidated = 1;
    return VIKT_OK;
}

int64_t vikt_ewc_pending(const vikt_ewc *ewc) { return ewc ? ewc->pending : VIKT_ERR_NULL; }

static int64_t find_offset(const vikt_ewc *ewc, const vikt_tensor *param) {
    if (!ewc || !param) return -1;
    for (int i = 0; i < ewc->nparams; i++)
        if (ewc->params[i] == param) return ewc->offset[i];
    return -1;
}

const float *vikt_ewc_fisher(const vikt_ewc *ewc, const vikt_tensor *param) {
    int64_t o = find_offset(ewc, param);
    return o < 0 ? NULL : ewc->fisher + o;
}

const float *vikt_ewc_anchor(const vikt_ewc *ewc, const vikt_tensor *param) {
    int64_t o = find_offset(ewc, param);
    return o < 0 ? NULL : ewc->anchor + o;
}

/* -------------------------------------------------------------- penalty */

/* The op's inputs are the tracked parameters; args->saved is the state and
 * f[0] is λ. */
static int penalty_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                         vikt__args *args, int64_t *shape, int *rank) {
    (void)m, (void)op, (void)in, (void)n, (void)args, (void)shape;
    *rank = 0;
    return VIKT_OK;
}

static int penalty_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                       vikt_tensor *out) {
    (void)m;
    const vikt_ewc *ewc = args->saved;
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *f = ewc->fisher + ewc->offset[i], *a = ewc->anchor + ewc->offset[i];
        const float *x = in[i]->data;
        for (int64_t j = 0; j < in[i]->numel; j++) {
            double d = (double)x[j] - a[j];
            total += (double)f[j] * d * d;
        }
    }
    out->data[0] = (float)(0.5 * (double)args->f[0] * total);
    return VIKT_OK;
}

static int penalty_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                       vikt_tensor *out) {
    (void)m;
    const vikt_ewc *ewc = args->saved;
    float scale = out->grad[0] * args->f[0];
    for (int i = 0; i < n; i++) {
        float *g = vikt__grad(in[i]);
        if (!g) continue;
        const float *f = ewc->fisher + ewc->offset[i], *a = ewc->anchor + ewc->offset[i];
        const float *x = in[i]->data;
        for (int64_t j = 0; j < in[i]->numel; j++) g[j] += scale * f[j] * (x[j] - a[j]);
    }
    return VIKT_OK;
}

static const vikt__op penalty_op = {"vikt_ewc_penalty", penalty_shape, penalty_fwd,
                                    penalty_bwd, 0};

vikt_tensor *vikt_ewc_penalty(vikt_ewc *ewc, float lambda) {
    if (!ewc) return NULL;
    vikt_model *m = ewc->model;
    if (!(lambda >= 0.0f) || !isfinite(lambda)) {
        vikt__fail(m, VIKT_ERR_ARG, "vikt_ewc_penalty: lambda is %g; it must be finite and >= 0",
                   (double)lambda);
        return NULL;
    }
    if (!ewc->consolidated) {
        vikt__fail(m, VIKT_ERR_STATE,
                   "vikt_ewc_penalty: no anchor yet; call vikt_ewc_consolidate at the end of "
                   "the first task");
        return NULL;
    }
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.f[0] = lambda;
    args.saved = ewc;
    return vikt__apply(m, &penalty_op, ewc->params, ewc->nparams, &args);
}

/* ------------------------------------------------------------- datasets */

static int check_dataset(vikt_ewc *ewc, const char *op, const vikt_dataset *ds,
                         vikt_loss_kind loss, int64_t batch_size) {
    vikt_model *m = ewc->model;
    if (ds->model != m)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: the dataset belongs to another model", op);
    if (loss != VIKT_LOSS_CROSS_ENTROPY && loss != VIKT_LOSS_MSE &&
        loss != VIKT_LOSS_BCE_WITH_LOGITS)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: unknown loss kind %d", op, (int)loss);
    int ce = loss == VIKT_LOSS_CROSS_ENTROPY;
    if (ce ? !ds->samples->labels : !ds->samples->targets)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: the loss needs %s and the dataset has none", op,
                          ce ? "class labels" : "float targets");
    if (batch_size < 1)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: batch_size is %lld; it must be >= 1", op,
                          (long long)batch_size);
    if (m->errcode) return vikt__fail(m, VIKT_ERR_STATE, "%s: the model holds an error", op);
    return VIKT_OK;
}

/* One batch: forward, loss, backward, accumulate; gradients cleared first. */
static int accumulate_batch(vikt_ewc *ewc, vikt_dataset *ds, vikt_forward_fn forward, void *ud,
                            vikt_loss_kind kind, int64_t start, int64_t count) {
    vikt_model *m = ewc->model;
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *x = vikt_dataset_input(ds, start, count);
    vikt_tensor *pred = x ? forward(m, x, ud) : NULL;
    vikt_tensor *loss = NULL;
    if (pred && kind == VIKT_LOSS_CROSS_ENTROPY) {
        int32_t *labels = vikt__arena_alloc(m, (size_t)count * sizeof *labels);
        if (!labels)
            return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_ewc_accumulate_dataset: out of memory");
        if (vikt_dataset_copy_batch(ds, start, count, NULL, labels, NULL) == VIKT_OK)
            loss = vikt_cross_entropy_loss(m, pred, labels);
    } else if (pred) {
        vikt_tensor *target = vikt_dataset_target_input(ds, start, count);
        loss = kind == VIKT_LOSS_MSE ? vikt_mse_loss(m, pred, target)
                                     : vikt_bce_with_logits_loss(m, pred, target);
    }
    if (!loss) {
        if (!m->errcode)
            vikt__fail(m, VIKT_ERR_STATE, "vikt_ewc_accumulate_dataset: the forward function "
                                          "returned NULL without recording an error");
        return m->errcode;
    }
    int err = vikt_backward(m, loss);
    return err ? err : vikt_ewc_accumulate(ewc);
}

int64_t vikt_ewc_accumulate_dataset(vikt_ewc *ewc, vikt_dataset *ds, vikt_forward_fn forward,
                                    void *ud, vikt_loss_kind loss, int64_t batch_size) {
    static const char op[] = "vikt_ewc_accumulate_dataset";
    if (!ewc || !ds || !forward) return VIKT_ERR_NULL;
    int err = check_dataset(ewc, op, ds, loss, batch_size);
    if (err) return err;
    vikt_model *m = ewc->model;
    int was_training = m->training, had_grad = m->grad_enabled;
    m->training = 0;
    m->grad_enabled = 1;
    int64_t calls = 0;
    for (int64_t start = 0; !err && start < ds->n; start += batch_size) {
        int64_t count = ds->n - start < batch_size ? ds->n - start : batch_size;
        err = accumulate_batch(ewc, ds, forward, ud, loss, start, count);
        if (!err) calls++;
    }
    vikt_zero_grad(m);
    m->training = was_training;
    m->grad_enabled = had_grad;
    return err ? err : calls;
}
