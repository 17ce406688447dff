/* 2-D max and average pooling over [N, C, H, W], without padding and with
 * floor rounding (torch.nn.MaxPool2d / AvgPool2d defaults). Every (n, c)
 * plane is pooled on its own, so the loops run over N·C planes. */
#include "../vikt_internal.h"

#include <math.h>
#include <string.h>

/* args: i[0] = kernel, i[1] = stride (0 is replaced by kernel in the shape
 * check). */

typedef struct {
    int64_t planes, H, W, Ho, Wo, k, s;
} pool_geom;

static void geometry(const vikt_tensor *x, const vikt__args *args, pool_geom *g) {
    g->planes = x->shape[0] * x->shape[1];
    g->H = x->shape[2], g->W = x->shape[3];
    g->k = args->i[0], g->s = args->i[1];
    g->Ho = (g->H - g->k) / g->s + 1;
    g->Wo = (g->W - g->k) / g->s + 1;
}

static int pool_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                      vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *x = in[0];
    char sx[VIKT__SHAPE_STR];
    int64_t k = args->i[0], s = args->i[1];
    if (k < 1 || s < 0)
        return vikt__fail(m, VIKT_ERR_ARG,
                          "%s: needs kernel >= 1 and stride >= 0 (got %lld, %lld) for input %s",
                          op->name, (long long)k, (long long)s, vikt__shape_str(x, sx));
    if (s == 0) args->i[1] = s = k;
    if (x->rank != 4 || x->shape[2] < k || x->shape[3] < k)
        return vikt__fail(m, VIKT_ERR_SHAPE,
                          "%s: needs [N, C, H, W] with H and W >= kernel %lld, got %s", op->name,
                          (long long)k, vikt__shape_str(x, sx));
    pool_geom g;
    geometry(x, args, &g);
    *rank = 4;
    shape[0] = x->shape[0], shape[1] = x->shape[1], shape[2] = g.Ho, shape[3] = g.Wo;
    return VIKT_OK;
}

/* ------------------------------------------------------------------- max */

/* Does v beat the current best b? The first maximum wins ties, and a NaN
 * wins (the first one), so NaN propagates as in PyTorch. */
static inline int beats(float v, float b) { return v > b || (isnan(v) && !isnan(b)); }

/* Offset in the plane of the window's first maximum. */
static int64_t window_argmax(const pool_geom *g, const float *plane, int64_t oh, int64_t ow) {
    int64_t best = oh * g->s * g->W + ow * g->s;
    for (int64_t i = 0; i < g->k; i++) {
        const float *row = plane + (oh * g->s + i) * g->W + ow * g->s;
        for (int64_t j = 0; j < g->k; j++)
            if (beats(row[j], plane[best])) best = (oh * g->s + i) * g->W + ow * g->s + j;
    }
    return best;
}

/* The common 2x2, stride 2 window of one output row, unrolled: the same
 * comparisons in the same order as window_argmax. Without NaN the choice is
 * made with selects, not branches: after ReLU half the inputs are 0 and the
 * comparisons are coin flips a branch predictor loses. */
static void row_argmax_2x2(const pool_geom *g, const float *plane, int64_t oh, float *y,
                           int64_t *at) {
    const int64_t top = 2 * oh * g->W;
    const float *r0 = plane + top, *r1 = r0 + g->W;
    for (int64_t ow = 0; ow < g->Wo; ow++) {
        int64_t c = 2 * ow;
        float v0 = r0[c], v1 = r0[c + 1], v2 = r1[c], v3 = r1[c + 1];
        float b = v0;
        int64_t best = top + c;
        if ((v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)) {
            if (beats(v1, b)) b = v1, best = top + c + 1;
            if (beats(v2, b)) b = v2, best = top + g->W + c;
            if (beats(v3, b)) b = v3, best = top + g->W + c + 1;
        } else {
            int t = v1 > b;
            best = t ? top + c + 1 : best, b = t ? v1 : b;
            t = v2 > b;
            best = t ? top + g->W + c : best, b = t ? v2 : b;
            t = v3 > b;
            best = t ? top + g->W + c + 1 : best, b = t ? v3 : b;
        }
        y[ow] = b;
        if (at) at[ow] = best;
    }
}

/* Planes are independent: with more than one thread, large inputs are cut
 * into contiguous ranges of planes, one per task of the model's pool (each
 * plane computed the same way whatever the range, so the same bits). */
typedef struct {
    pool_geom g;
    int tasks;
    const float *x, *dy;
    float *y, *gx;
    int64_t *at;
} pool_job;

/* Inputs below this many values stay on one thread. */
#define POOL_PARALLEL_MIN ((int64_t)1 << 16)

static int pool_tasks(const vikt_model *m, const pool_geom *g) {
    int n = vikt_num_threads(m);
    if (n <= 1 || !m->pool || g->planes < 2 || g->planes * g->H * g->W < POOL_PARALLEL_MIN)
        return 1;
    return g->planes < n ? (int)g->planes : n;
}

static void max_fwd_task(void *arg, int t) {
    const pool_job *j = arg;
    const pool_geom *g = &j->g;
    int fast = g->k == 2 && g->s == 2;
    for (int64_t p = g->planes * t / j->tasks; p < g->planes * (t + 1) / j->tasks; p++) {
        const float *plane = j->x + p * g->H * g->W;
        float *y = j->y + p * g->Ho * g->Wo;
        int64_t *a = j->at ? j->at + p * g->Ho * g->Wo : NULL;
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            if (fast) {
                row_argmax_2x2(g, plane, oh, y + oh * g->Wo, a ? a + oh * g->Wo : NULL);
                continue;
            }
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                int64_t best = window_argmax(g, plane, oh, ow);
                y[oh * g->Wo + ow] = plane[best];
                if (a) a[oh * g->Wo + ow] = best;
            }
        }
    }
}

/* Forward keeps each output's source offset in its plane (arena) when the
 * op is recorded, so backward is a scatter: finding the maximum again cost
 * as much as the forward pass (a third of the CNN bench step). */
static int max_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                   vikt_tensor *out) {
    (void)n;
    pool_job j;
    geometry(in[0], args, &j.g);
    j.at = NULL;
    if (m->grad_enabled && in[0]->requires_grad) {
        j.at = vikt__arena_alloc(m, (size_t)out->numel * sizeof *j.at);
        if (!j.at)
            return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_max_pool2d: out of memory for %lld indices",
                              (long long)out->numel);
    }
    j.tasks = pool_tasks(m, &j.g);
    j.x = in[0]->data, j.y = out->data;
    vikt__pool_run(m->pool, j.tasks, max_fwd_task, &j);
    args->saved = j.at;
    return VIKT_OK;
}

static void max_bwd_task(void *arg, int t) {
    const pool_job *j = arg;
    const pool_geom *g = &j->g;
    int64_t per_plane = g->Ho * g->Wo;
    for (int64_t p = g->planes * t / j->tasks; p < g->planes * (t + 1) / j->tasks; p++) {
        const float *dy = j->dy + p * per_plane;
        const int64_t *a = j->at + p * per_plane;
        float *dplane = j->gx + p * g->H * g->W;
        for (int64_t o = 0; o < per_plane; o++) dplane[a[o]] += dy[o];
    }
}

static int max_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                   vikt_tensor *out) {
    (void)n;
    pool_job j;
    j.gx = vikt__grad(in[0]);
    if (!j.gx) return m->errcode;
    geometry(in[0], args, &j.g);
    j.tasks = pool_tasks(m, &j.g);
    j.at = args->saved, j.dy = out->grad;
    vikt__pool_run(m->pool, j.tasks, max_bwd_task, &j);
    return VIKT_OK;
}

static const vikt__op max_pool_op = {"vikt_max_pool2d", pool_shape, max_fwd, max_bwd, 0};

/* --------------------------------------------------------------- average */

static int avg_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                   vikt_tensor *out) {
    (void)m, (void)n;
    pool_geom g;
    geometry(in[0], args, &g);
    float count = (float)(g.k * g.k);
    for (int64_t p = 0; p < g.planes; p++) {
        const float *plane = in[0]->data + p * g.H * g.W;
        float *y = out->data + p * g.Ho * g.Wo;
        for (int64_t oh = 0; oh < g.Ho; oh++)
            for (int64_t ow = 0; ow < g.Wo; ow++) {
                float acc = 0.0f;
                for (int64_t i = 0; i < g.k; i++) {
                    const float *row = plane + (oh * g.s + i) * g.W + ow * g.s;
                    for (int64_t j = 0; j < g.k; j++) acc += row[j];
                }
                y[oh * g.Wo + ow] = acc / count; /* divided, as PyTorch does */
            }
    }
    return VIKT_OK;
}

static int avg_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                   vikt_tensor *out) {
    (void)n;
    float *gx = vikt__grad(in[0]);
    if (!gx) return m->errcode;
    pool_geom g;
    geometry(in[0], args, &g);
    float count = (float)(g.k * g.k);
    for (int64_t p = 0; p < g.planes; p++) {
        const float *dy = out->grad + p * g.Ho * g.Wo;
        float *dplane = gx + p * g.H * g.W;
        for (int64_t oh = 0; oh < g.Ho; oh++)
            for (int64_t ow = 0; ow < g.Wo; ow++) {
                float d = dy[oh * g.Wo + ow] / count;
                for (int64_t i = 0; i < g.k; i++) {
                    float *row = dplane + (oh * g.s + i) * g.W + ow * g.s;
                    for (int64_t j = 0; j < g.k; j++) row[j] += d;
                }
            }
    }
    return VIKT_OK;
}

static const vikt__op avg_pool_op = {"vikt_avg_pool2d", pool_shape, avg_fwd, avg_bwd, 0};

static vikt_tensor *pool(vikt_model *m, const vikt__op *op, vikt_tensor *x, int64_t kernel,
                         int64_t stride) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = kernel;
    args.i[1] = stride;
    return vikt__apply(m, op, &x, 1, &args);
}

vikt_tensor *vikt_max_pool2d(vikt_model *m, vikt_tensor *x, int64_t kernel, int64_t stride) {
    return pool(m, &max_pool_op, x, kernel, stride);
}

vikt_tensor *vikt_avg_pool2d(vikt_model *m, vikt_tensor *x, int64_t kernel, int64_t stride) {
    return pool(m, &avg_pool_op, x, kernel, stride);
}
