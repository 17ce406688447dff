/* Layer and batch normalization as single ops with closed-form gradients.
 *
 * Both normalize a group of M values, x̂ = (x − μ)·r with r = 1/√(σ² + ε), and
 * scale and shift it, y = γ·x̂ + β. With g = γ·dy, the gradient through the
 * batch statistics is
 *
 *     dx = r·(g − mean(g) − x̂·mean(g·x̂)),   dγ += Σ dy·x̂,   dβ += Σ dy.
 *
 * Statistics are two-pass (the mean first, then the mean squared deviation)
 * with double accumulators: the one-pass E[x²] − E[x]² loses every digit when
 * the mean is large next to the spread. The per-group μ and r are kept in the
 * arena for backward, which rebuilds x̂ from them. */
#include "../vikt_internal.h"

#include <string.h>

/* Sums run in four interleaved double accumulators, added as (0+1)+(2+3) at
 * the end: one accumulator made every sum a chain of dependent additions
 * (4 cycles each), which bounded layer norm at D = 64; the fixed order keeps
 * the result the same on every run, ISA and thread count. */
typedef struct {
    double s[4];
} sum4;

static double sum4_total(const sum4 *a) { return (a->s[0] + a->s[1]) + (a->s[2] + a->s[3]); }

/* Add x[0..len) (minus shift, squared when square) to a. */
static void sum4_add(sum4 *a, const float *x, int64_t len, double shift, int square) {
    int64_t i = 0;
    if (square) {
        for (; i + 4 <= len; i += 4)
            for (int k = 0; k < 4; k++) {
                double d = x[i + k] - shift;
                a->s[k] += d * d;
            }
        for (; i < len; i++) {
            double d = x[i] - shift;
            a->s[i & 3] += d * d;
        }
    } else {
        for (; i + 4 <= len; i += 4)
            for (int k = 0; k < 4; k++) a->s[k] += x[i + k];
        for (; i < len; i++) a->s[i & 3] += x[i];
    }
}

/* μ and 1/√(σ² + ε) of `runs` runs of `len` contiguous values, run r starting
 * at x + r·stride; σ² is biased and also returned in *var. */
static void moments(const float *x, int64_t runs, int64_t len, int64_t stride, double eps,
                    double *mean, double *rstd, double *var) {
    sum4 sum = {{0, 0, 0, 0}}, sq = {{0, 0, 0, 0}};
    double n = (double)(runs * len);
    for (int64_t r = 0; r < runs; r++) sum4_add(&sum, x + r * stride, len, 0.0, 0);
    double mu = sum4_total(&sum) / n;
    for (int64_t r = 0; r < runs; r++) sum4_add(&sq, x + r * stride, len, mu, 1);
    *var = sum4_total(&sq) / n;
    *mean = mu;
    *rstd = 1.0 / sqrt(*var + eps);
}

/* x̂ = (x − μ)·r, the difference taken in double. */
static inline float normalized(float x, double mu, double rs) {
    return (float)(((double)x - mu) * rs);
}

/* Two double arrays of n from the arena, for μ and r; NULL on failure. μ stays
 * in double because x − μ must not carry μ's float rounding: for a mean of
 * 1000 and a spread of 1 that alone would be an error of 3e-5 in x̂. */
static double *stats_buffer(vikt_model *m, const char *opname, int64_t n) {
    double *p = vikt__arena_alloc(m, (size_t)(2 * n) * sizeof(double));
    if (!p) vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for statistics", opname);
    return p;
}

/* Doubles of scratch from the arena, zeroed; NULL on failure. */
static double *double_scratch(vikt_model *m, const char *opname, int64_t n) {
    double *p = vikt__arena_alloc(m, (size_t)n * sizeof(double));
    if (!p)
        vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for gradient accumulators", opname);
    else
        memset(p, 0, (size_t)n * sizeof(double));
    return p;
}

/* An affine parameter must be [C] for the normalized size C. */
static int check_vector(vikt_model *m, const vikt__op *op, const vikt_tensor *x,
                        const vikt_tensor *v, const char *what, int64_t c) {
    if (v->rank == 1 && v->shape[0] == c) return VIKT_OK;
    char sx[VIKT__SHAPE_STR], sv[VIKT__SHAPE_STR];
    return vikt__fail(m, VIKT_ERR_SHAPE, "%s: %s %s does not fit input %s (needs [%lld])",
                      op->name, what, vikt__shape_str(v, sv), vikt__shape_str(x, sx),
                      (long long)c);
}

/* ------------------------------------------------------------ layer norm */

/* in: x [..., D], γ [D], β [D]. args: f[0] = eps; saved = [rows μ][rows r]. */

static int ln_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                    vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *x = in[0];
    char sx[VIKT__SHAPE_STR];
    if (x->rank < 1 || x->shape[x->rank - 1] < 1)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: needs [..., D] with D >= 1, got %s", op->name,
                          vikt__shape_str(x, sx));
    if (!(args->f[0] > 0.0f) || isinf(args->f[0]))
        return vikt__fail(m, VIKT_ERR_ARG, "%s: eps must be finite and > 0, got %g (input %s)",
                          op->name, (double)args->f[0], vikt__shape_str(x, sx));
    int64_t D = x->shape[x->rank - 1];
    if (check_vector(m, op, x, in[1], "weight", D) || check_vector(m, op, x, in[2], "bias", D))
        return m->errcode;
    *rank = x->rank;
    for (int i = 0; i < x->rank; i++) shape[i] = x->shape[i];
    return VIKT_OK;
}

static int ln_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                  vikt_tensor *out) {
    (void)n;
    int64_t D = in[0]->shape[in[0]->rank - 1], rows = in[0]->numel / D;
    double *stats = stats_buffer(m, "vikt_layer_norm", rows);
    if (!stats) return m->errcode;
    const float *gamma = in[1]->data, *beta = in[2]->data;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = in[0]->data + r * D;
        float *y = out->data + r * D;
        double mu, rs, var;
        moments(x, 1, D, D, args->f[0], &mu, &rs, &var);
        for (int64_t i = 0; i < D; i++) y[i] = normalized(x[i], mu, rs) * gamma[i] + beta[i];
        stats[r] = mu;
        stats[rows + r] = rs;
    }
    args->saved = stats;
    return VIKT_OK;
}

/* One row of layer norm's backward: Σ g and Σ g·x̂ (g = γ·dy) in four lanes,
 * value i in lane i & 3 as sum4_add, and dγ, dβ into acc when there. */
typedef struct {
    const float *x, *dy, *gamma;
    double mu, rs;
    double *acc;
    int64_t D;
    sum4 g, gx;
} ln_sums;

static inline void ln_sums_add(ln_sums *t, int64_t i, int lane) {
    float xh = normalized(t->x[i], t->mu, t->rs), g = t->dy[i] * t->gamma[i];
    t->g.s[lane] += g;
    t->gx.s[lane] += (double)g * xh;
    if (t->acc) t->acc[i] += (double)t->dy[i] * xh, t->acc[t->D + i] += t->dy[i];
}

static int ln_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                  vikt_tensor *out) {
    (void)n;
    const char *op = "vikt_layer_norm";
    float *gx = vikt__grad(in[0]), *gg = vikt__grad(in[1]), *gb = vikt__grad(in[2]);
    if (m->errcode) return m->errcode;
    int64_t D = in[0]->shape[in[0]->rank - 1], rows = in[0]->numel / D;
    /* γ and β sum over every row: accumulate in double, add once. */
    double *acc = gg || gb ? double_scratch(m, op, 2 * D) : NULL;
    if ((gg || gb) && !acc) return m->errcode;
    const double *stats = args->saved;
    const float *gamma = in[1]->data;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = in[0]->data + r * D, *dy = out->grad + r * D;
        double mu = stats[r], rs = stats[rows + r];
        ln_sums t = {x, dy, gamma, mu, rs, acc, D, {{0, 0, 0, 0}}, {{0, 0, 0, 0}}};
        int64_t q = 0;
        for (; q + 4 <= D; q += 4)
            for (int k = 0; k < 4; k++) ln_sums_add(&t, q + k, k);
        for (; q < D; q++) ln_sums_add(&t, q, (int)(q & 3));
        if (!gx) continue;
        float a = (float)(sum4_total(&t.g) / (double)D);
        float b = (float)(sum4_total(&t.gx) / (double)D), r32 = (float)rs;
        float *dx = gx + r * D;
        for (int64_t i = 0; i < D; i++)
            dx[i] += r32 * (dy[i] * gamma[i] - a - normalized(x[i], mu, rs) * b);
    }
    for (int64_t i = 0; acc && i < D; i++) {
        if (gg) gg[i] += (float)acc[i];
        if (gb) gb[i] += (float)acc[D + i];
    }
    return VIKT_OK;
}

static const vikt__op layer_norm_op = {"vikt_layer_norm", ln_shape, ln_fwd, ln_bwd, 0};

vikt_tensor *vikt__layer_norm(vikt_model *m, vikt_tensor *x, vikt_tensor *weight,
                              vikt_tensor *bias, float eps) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.f[0] = eps;
    vikt_tensor *in[3] = {x, weight, bias};
    return vikt__apply(m, &layer_norm_op, in, 3, &args);
}

/* ------------------------------------------------------------ batch norm */

/* in: x [N, C] or [N, C, H, W], γ, β, running mean, running var (all [C]).
 * args: i[0] = training, f[0] = momentum, f[1] = eps; saved = [C μ][C r].
 * x is seen as [N, C, S] with S = H·W (1 for rank 2); channel c's values are
 * the N runs of S at stride C·S. */

typedef struct {
    int64_t N, C, S, M; /* M = N·S values per channel */
} bn_geom;

static void bn_geometry(const vikt_tensor *x, bn_geom *g) {
    g->N = x->shape[0];
    g->C = x->shape[1];
    g->S = x->rank == 4 ? x->shape[2] * x->shape[3] : 1;
    g->M = g->N * g->S;
}

static int bn_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                    vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *x = in[0];
    char sx[VIKT__SHAPE_STR];
    if ((x->rank != 2 && x->rank != 4) || x->shape[1] < 1)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: needs [N, C] or [N, C, H, W] with C >= 1, got %s",
                          op->name, vikt__shape_str(x, sx));
    float momentum = args->f[0], eps = args->f[1];
    if (!(momentum >= 0.0f && momentum <= 1.0f) || !(eps > 0.0f) || isinf(eps))
        return vikt__fail(m, VIKT_ERR_ARG,
                          "%s: needs momentum in [0, 1] and finite eps > 0, got %g and %g "
                          "(input %s)",
                          op->name, (double)momentum, (double)eps, vikt__shape_str(x, sx));
    bn_geom g;
    bn_geometry(x, &g);
    static const char *const what[] = {"weight", "bias", "running_mean", "running_var"};
    for (int k = 1; k < 5; k++)
        if (check_vector(m, op, x, in[k], what[k - 1], g.C)) return m->errcode;
    if (args->i[0] && g.M < 2)
        return vikt__fail(m, VIKT_ERR_SHAPE,
                          "%s: training needs more than one value per channel, input is %s",
                          op->name, vikt__shape_str(x, sx));
    *rank = x->rank;
    for (int i = 0; i < x->rank; i++) shape[i] = x->shape[i];
    return VIKT_OK;
}

/* Channel c's batch statistics, and the running averages moved towards them
 * (the variance unbiased, as torch.nn.BatchNorm does). */
static void bn_batch_stats(const bn_geom *g, const float *x, int64_t c, double momentum,
                           double eps, float *rm, float *rv, double *mean, double *rstd) {
    double var;
    moments(x + c * g->S, g->N, g->S, g->C * g->S, eps, mean, rstd, &var);
    double unbiased = var * (double)g->M / (double)(g->M - 1);
    rm[c] = (float)((1.0 - momentum) * rm[c] + momentum * *mean);
    rv[c] = (float)((1.0 - momentum) * rv[c] + momentum * unbiased);
}

static int bn_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                  vikt_tensor *out) {
    (void)n;
    bn_geom g;
    bn_geometry(in[0], &g);
    double *stats = stats_buffer(m, "vikt_batch_norm", g.C);
    if (!stats) return m->errcode;
    int training = (int)args->i[0];
    const float *x = in[0]->data, *gamma = in[1]->data, *beta = in[2]->data;
    float *rm = in[3]->data, *rv = in[4]->data;
    for (int64_t c = 0; c < g.C; c++) {
        double mu, rs;
        if (training) {
            bn_batch_stats(&g, x, c, args->f[0], args->f[1], rm, rv, &mu, &rs);
        } else {
            mu = rm[c];
            rs = 1.0 / sqrt((double)rv[c] + (double)args->f[1]);
        }
        stats[c] = mu;
        stats[g.C + c] = rs;
        float scale = gamma[c], shift = beta[c];
        for (int64_t s = 0; s < g.N; s++) {
            const float *xs = x + (s * g.C + c) * g.S;
            float *ys = out->data + (s * g.C + c) * g.S;
            for (int64_t p = 0; p < g.S; p++) ys[p] = normalized(xs[p], mu, rs) * scale + shift;
        }
    }
    args->saved = stats;
    return VIKT_OK;
}

/* In evaluation mode μ and r are constants, so dx = γ·r·dy. */
static int bn_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                  vikt_tensor *out) {
    (void)n;
    float *gx = vikt__grad(in[0]), *gg = vikt__grad(in[1]), *gb = vikt__grad(in[2]);
    if (m->errcode) return m->errcode;
    bn_geom g;
    bn_geometry(in[0], &g);
    const double *stats = args->saved;
    const float *x = in[0]->data, *gamma = in[1]->data;
    for (int64_t c = 0; c < g.C; c++) {
        double mu = stats[c], rs = stats[g.C + c];
        double sum_dy = 0, sum_dy_xh = 0;
        for (int64_t s = 0; s < g.N; s++) {
            const float *xs = x + (s * g.C + c) * g.S, *dy = out->grad + (s * g.C + c) * g.S;
            for (int64_t p = 0; p < g.S; p++) {
                sum_dy += dy[p];
                sum_dy_xh += (double)dy[p] * normalized(xs[p], mu, rs);
            }
        }
        if (gg) gg[c] += (float)sum_dy_xh;
        if (gb) gb[c] += (float)sum_dy;
        if (!gx) continue;
        /* mean(g) = γ·Σdy/M and mean(g·x̂) = γ·Σdy·x̂/M; zero in eval mode. */
        float a = 0.0f, b = 0.0f, k = gamma[c] * (float)rs;
        if (args->i[0]) {
            a = (float)(sum_dy / (double)g.M);
            b = (float)(sum_dy_xh / (double)g.M);
        }
        for (int64_t s = 0; s < g.N; s++) {
            const float *xs = x + (s * g.C + c) * g.S, *dy = out->grad + (s * g.C + c) * g.S;
            float *dx = gx + (s * g.C + c) * g.S;
            for (int64_t p = 0; p < g.S; p++)
                dx[p] += k * (dy[p] - a - normalized(xs[p], mu, rs) * b);
        }
    }
    return VIKT_OK;
}

static const vikt__op batch_norm_op = {"vikt_batch_norm", bn_shape, bn_fwd, bn_bwd, 0};

vikt_tensor *vikt__batch_norm(vikt_model *m, vikt_tensor *x, vikt_tensor *weight,
                              vikt_tensor *bias, vikt_tensor *running_mean,
                              vikt_tensor *running_var, int training, float momentum, float eps) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = training != 0;
    args.f[0] = momentum;
    args.f[1] = eps;
    vikt_tensor *in[5] = {x, weight, bias, running_mean, running_var};
    return vikt__apply(m, &batch_norm_op, in, 5, &args);
}
