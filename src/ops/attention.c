/* Ops attention needs beyond the general ones: the causal mask, and the
 * fused per-head core of vikt_attention. */
#include "../vikt_internal.h"

#include <math.h>
#include <string.h>

static int mask_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                      vikt__args *args, int64_t *shape, int *rank) {
    (void)n, (void)args;
    const vikt_tensor *a = in[0];
    char s[VIKT__SHAPE_STR];
    if (a->rank < 2 || a->shape[a->rank - 1] != a->shape[a->rank - 2])
        return vikt__fail(m, VIKT_ERR_SHAPE,
                          "%s: needs rank >= 2 with equal last two dimensions [..., T, T], got %s",
                          op->name, vikt__shape_str(a, s));
    *rank = a->rank;
    for (int i = 0; i < a->rank; i++) shape[i] = a->shape[i];
    return VIKT_OK;
}

/* Each [T, T] block: query row i keeps keys j <= i. Forward writes −∞ above
 * the diagonal (softmax then gives those keys weight 0); backward passes the
 * gradient through the kept part only. */
static void mask_blocks(const vikt_tensor *a, const float *src, float *dst, int backward) {
    int64_t T = a->shape[a->rank - 1];
    int64_t blocks = T ? a->numel / (T * T) : 0;
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t i = 0; i < T; i++) {
            const float *s = src + (b * T + i) * T;
            float *d = dst + (b * T + i) * T;
            for (int64_t j = 0; j < T; j++) {
                if (backward)
                    d[j] += j <= i ? s[j] : 0.0f;
                else
                    d[j] = j <= i ? s[j] : -INFINITY;
            }
        }
}

static int mask_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                    vikt_tensor *out) {
    (void)m, (void)n, (void)args;
    mask_blocks(in[0], in[0]->data, out->data, 0);
    return VIKT_OK;
}

static int mask_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                    vikt_tensor *out) {
    (void)n, (void)args;
    float *ga = vikt__grad(in[0]);
    if (!ga) return m->errcode;
    mask_blocks(in[0], out->grad, ga, 1);
    return VIKT_OK;
}

static const vikt__op causal_mask_op = {"vikt_causal_mask", mask_shape, mask_fwd, mask_bwd, 1};

vikt_tensor *vikt_causal_mask(vikt_model *m, vikt_tensor *scores) {
    return vikt__apply(m, &causal_mask_op, &scores, 1, NULL);
}

/* ------------------------------------------------------- attention core */

/* The core of multi-head self-attention on projected q, k, v [N, T, D] with
 * H heads of width dh = D/H: per sample n and head h, with Q_h the columns
 * h·dh … (h+1)·dh−1 of q[n] (and K_h, V_h likewise),
 *
 *     P = softmax(Q_h·K_hᵀ/√dh [causal: key j <= query i])   [T, T]
 *     ctx[n][:, h·dh …] = P·V_h
 *
 * One op instead of head splits, a scaled product, a mask, a softmax and a
 * head merge: every product reads the heads in place (a row stride of D) and
 * writes ctx the same way, so no head is copied; masked scores are never
 * exponentiated; only P [N·H, T, T] is kept for backward. As a chain of
 * general ops this was 12 copies per layer and four T×T tensors with their
 * gradients. Backward, with dC = ctx's gradient of the head:
 *
 *     dP = dC·V_hᵀ;  dV_h += Pᵀ·dC;  dS = P ⊙ (dP − rowsum(dP ⊙ P))/√dh
 *     dQ_h += dS·K_h;  dK_h += dSᵀ·Q_h
 *
 * args: i[0] = H, i[1] = causal; saved = P (arena). */

typedef struct {
    int64_t N, T, D, H, dh;
    float scale;
    int causal;
} attn_geom;

static void attn_geometry(const vikt_tensor *q, const vikt__args *args, attn_geom *g) {
    g->N = q->shape[0], g->T = q->shape[1], g->D = q->shape[2];
    g->H = args->i[0], g->causal = args->i[1] != 0;
    g->dh = g->D / g->H;
    g->scale = 1.0f / sqrtf((float)g->dh);
}

static int attn_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                      vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    char sq[VIKT__SHAPE_STR], sk[VIKT__SHAPE_STR], sv[VIKT__SHAPE_STR];
    const vikt_tensor *q = in[0];
    if (q->rank != 3 || !vikt__same_shape(q, in[1]) || !vikt__same_shape(q, in[2]) ||
        args->i[0] < 1 || q->shape[2] % args->i[0] != 0)
        return vikt__fail(m, VIKT_ERR_SHAPE,
                          "%s: q, k, v must be one shape [N, T, D] with D divisible by %lld heads, "
                          "got %s, %s, %s",
                          op->name, (long long)args->i[0], vikt__shape_str(q, sq),
                          vikt__shape_str(in[1], sk), vikt__shape_str(in[2], sv));
    /* The probabilities P [N, H, T, T] must be addressable. */
    int64_t p_numel;
    if (vikt__check_shape(m, op->name, 4, (int64_t[]){q->shape[0], args->i[0], q->shape[1], q->shape[1]},
                          &p_numel))
        return m->errcode;
    *rank = 3;
    for (int i = 0; i < 3; i++) shape[i] = q->shape[i];
    return VIKT_OK;
}

/* Row i of the scores in place → probabilities over keys 0..len−1, zeros
 * after (the masked keys). Sums in double, as vikt_softmax. */
static void softmax_row(float *s, int64_t len, int64_t T) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < len; j++) mx = s[j] > mx ? s[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j < len; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < len; j++) s[j] *= inv;
    for (int64_t j = len; j < T; j++) s[j] = 0.0f;
}

/* dP → dS in place: dS_ij = P_ij·(dP_ij − Σ_j' dP_ij'·P_ij')·scale. */
static void softmax_grad_rows(float *d, const float *p, const attn_geom *g) {
    for (int64_t i = 0; i < g->T; i++) {
        float *di = d + i * g->T;
        const float *pi = p + i * g->T;
        int64_t len = g->causal ? i + 1 : g->T;
        double dot = 0;
        for (int64_t j = 0; j < len; j++) dot += (double)di[j] * pi[j];
        for (int64_t j = 0; j < len; j++) di[j] = pi[j] * (di[j] - (float)dot) * g->scale;
        for (int64_t j = len; j < g->T; j++) di[j] = 0.0f;
    }
}

/* The (sample, head) pairs are independent: each reads and writes its own
 * columns of q, k, v, ctx and their gradients and its own block of P. They
 * are dealt to the model's threads (pair p to task p mod tasks), each
 * product computed whole by one task, so the bits do not depend on the
 * thread count. */
typedef struct {
    vikt_model *m;
    attn_geom g;
    int tasks;
    const float *q, *k, *v, *dctx;
    float *P, *ctx, *gq, *gk, *gv;
    float *dS; /* one T×T scratch per task (backward) */
} attn_job;

/* Pairs below this many multiply-adds in all stay on one thread. */
#define ATTN_PARALLEL_MIN ((int64_t)1 << 20)

static int attn_tasks(vikt_model *m, const attn_geom *g) {
    int64_t pairs = g->N * g->H, fmas = 2 * pairs * g->T * g->T * g->dh;
    int n = vikt_num_threads(m);
    if (n <= 1 || !m->pool || fmas < ATTN_PARALLEL_MIN) return 1;
    return pairs < n ? (int)pairs : n;
}

/* The three product shapes of forward and backward, reserved for every task. */
static int attn_reserve(vikt_model *m, const attn_geom *g, int tasks) {
    const char *op = "vikt_attention";
    int64_t T = g->T, dh = g->dh;
    return vikt__gemm_reserve(m, op, tasks, 0, 1, T, T, dh) ||
                   vikt__gemm_reserve(m, op, tasks, 0, 0, T, dh, T) ||
                   vikt__gemm_reserve(m, op, tasks, 1, 0, T, dh, T)
               ? m->errcode
               : VIKT_OK;
}

static void attn_fwd_task(void *arg, int t) {
    const attn_job *j = arg;
    const attn_geom *g = &j->g;
    int64_t TT = g->T * g->T;
    for (int64_t pair = t; pair < g->N * g->H; pair += j->tasks) {
        int64_t s = pair / g->H, h = pair % g->H, at = s * g->T * g->D + h * g->dh;
        float *p = j->P + pair * TT;
        vikt__gemm_on(j->m, t, 0, 1, g->T, g->T, g->dh, g->scale, j->q + at, g->D, j->k + at,
                      g->D, 0.0f, p, g->T);
        for (int64_t i = 0; i < g->T; i++) softmax_row(p + i * g->T, g->causal ? i + 1 : g->T, g->T);
        vikt__gemm_on(j->m, t, 0, 0, g->T, g->dh, g->T, 1.0f, p, g->T, j->v + at, g->D, 0.0f,
                      j->ctx + at, g->D);
    }
}

static int attn_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                    vikt_tensor *out) {
    (void)n;
    attn_job j;
    attn_geometry(in[0], args, &j.g);
    j.m = m;
    j.tasks = attn_tasks(m, &j.g);
    if (attn_reserve(m, &j.g, j.tasks)) return m->errcode;
    j.P = vikt__arena_alloc(m, (size_t)(j.g.N * j.g.H * j.g.T * j.g.T) * sizeof(float));
    if (!j.P)
        return vikt__fail(m, VIKT_ERR_NOMEM,
                          "vikt_attention: out of memory for the attention weights [%lld, %lld, "
                          "%lld, %lld]",
                          (long long)j.g.N, (long long)j.g.H, (long long)j.g.T, (long long)j.g.T);
    j.q = in[0]->data, j.k = in[1]->data, j.v = in[2]->data, j.ctx = out->data;
    vikt__pool_run(m->pool, j.tasks, attn_fwd_task, &j);
    args->saved = j.P;
    return VIKT_OK;
}

static void attn_bwd_task(void *arg, int t) {
    const attn_job *j = arg;
    const attn_geom *g = &j->g;
    int64_t TT = g->T * g->T;
    float *dS = j->dS ? j->dS + t * TT : NULL;
    for (int64_t pair = t; pair < g->N * g->H; pair += j->tasks) {
        int64_t s = pair / g->H, h = pair % g->H, at = s * g->T * g->D + h * g->dh;
        const float *p = j->P + pair * TT, *dC = j->dctx + at;
        if (j->gv)
            vikt__gemm_on(j->m, t, 1, 0, g->T, g->dh, g->T, 1.0f, p, g->T, dC, g->D, 1.0f,
                          j->gv + at, g->D);
        if (!dS) continue;
        vikt__gemm_on(j->m, t, 0, 1, g->T, g->T, g->dh, 1.0f, dC, g->D, j->v + at, g->D, 0.0f, dS,
                      g->T);
        softmax_grad_rows(dS, p, g);
        if (j->gq)
            vikt__gemm_on(j->m, t, 0, 0, g->T, g->dh, g->T, 1.0f, dS, g->T, j->k + at, g->D, 1.0f,
                          j->gq + at, g->D);
        if (j->gk)
            vikt__gemm_on(j->m, t, 1, 0, g->T, g->dh, g->T, 1.0f, dS, g->T, j->q + at, g->D, 1.0f,
                          j->gk + at, g->D);
    }
}

static int attn_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                    vikt_tensor *out) {
    (void)n;
    attn_job j;
    j.gq = vikt__grad(in[0]), j.gk = vikt__grad(in[1]), j.gv = vikt__grad(in[2]);
    if (m->errcode) return m->errcode;
    attn_geometry(in[0], args, &j.g);
    j.m = m;
    j.tasks = attn_tasks(m, &j.g);
    if (attn_reserve(m, &j.g, j.tasks)) return m->errcode;
    int64_t TT = j.g.T * j.g.T;
    j.dS = NULL;
    if (j.gq || j.gk) {
        j.dS = vikt__arena_alloc(m, (size_t)(j.tasks * TT) * sizeof(float));
        if (!j.dS)
            return vikt__fail(m, VIKT_ERR_NOMEM,
                              "vikt_attention: out of memory for a %lldx%lld score gradient",
                              (long long)j.g.T, (long long)j.g.T);
    }
    j.P = args->saved;
    j.q = in[0]->data, j.k = in[1]->data, j.v = in[2]->data, j.dctx = out->grad;
    j.ctx = NULL;
    vikt__pool_run(m->pool, j.tasks, attn_bwd_task, &j);
    return VIKT_OK;
}

static const vikt__op attention_op = {"vikt_attention", attn_shape, attn_fwd, attn_bwd, 0};

vikt_tensor *vikt__attention_core(vikt_model *m, vikt_tensor *q, vikt_tensor *k, vikt_tensor *v,
                                  int64_t heads, int causal) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = heads;
    args.i[1] = causal != 0;
    vikt_tensor *in[3] = {q, k, v};
    return vikt__apply(m, &attention_op, in, 3, &args);
}
