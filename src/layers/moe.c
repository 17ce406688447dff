/* Mixture of experts with a learned top-k router (Switch Transformer for
 * k = 1, Mixtral-style renormalized top-2 for k = 2).
 *
 * The router's choice is made in plain C on the forward values and is not
 * differentiated (as in those models); everything after it is built from
 * ops, so gradients reach the router through the gates and the auxiliary
 * loss, and reach only the experts that ran. Tokens are grouped by expert
 * with gather_rows, each expert runs once on its rows, and scatter_rows adds
 * the gated results back into token order. */
#include "../vikt_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char op_name[] = "vikt_moe";

/* The routing of one call, in the step arena. Selections are listed grouped
 * by expert (expert 0's tokens first, ascending within an expert), the order
 * the experts' outputs are concatenated in. */
typedef struct routing {
    int64_t tokens, experts, k;
    int32_t *first, *second;  /* [tokens] each token's best and second-best expert */
    int64_t *count;           /* [experts] selections of each expert */
    int32_t *token;           /* [tokens·k] the token of each selection */
    int32_t *gate;            /* [tokens·k] token·E + expert: its probability in flat probs */
    int32_t *pick_a, *pick_b; /* [tokens·k] k = 2: token·E + first / second choice */
    float *load;              /* [experts] E·f_e, f_e = fraction of first choices */
} routing;

/* "<name>.experts.<e>.<fc>" into buf (VIKT__NAME_MAX bytes). */
static int expert_name(vikt_model *m, const char *name, int64_t e, const char *fc, char *buf) {
    int n = snprintf(buf, VIKT__NAME_MAX, "%s.experts.%lld.%s", name, (long long)e, fc);
    if (n < 0 || n >= VIKT__NAME_MAX)
        return vikt__fail(m, VIKT_ERR_ARG,
                          "%s: the name '%s.experts.%lld.%s' is longer than %d bytes", op_name,
                          name, (long long)e, fc, VIKT__NAME_MAX - 1);
    return VIKT_OK;
}

/* Every expert's parameters exist after the first call, used or not, so the
 * parameter list (and an optimizer's state) does not change with routing.
 * Same names, shapes, order and initialization as vikt_dense would give. */
static int ensure_experts(vikt_model *m, const char *name, int64_t E, int64_t D, int64_t hidden) {
    for (int64_t e = 0; e < E; e++) {
        char fc1[VIKT__NAME_MAX], fc2[VIKT__NAME_MAX];
        if (expert_name(m, name, e, "fc1", fc1) || expert_name(m, name, e, "fc2", fc2))
            return m->errcode;
        float b1 = 1.0f / sqrtf((float)D), b2 = 1.0f / sqrtf((float)hidden);
        if (!vikt__layer_param(m, op_name, fc1, "weight", 2, (int64_t[]){hidden, D},
                               VIKT__FILL_UNIFORM, b1) ||
            !vikt__layer_param(m, op_name, fc1, "bias", 1, (int64_t[]){hidden}, VIKT__FILL_UNIFORM,
                               b1) ||
            !vikt__layer_param(m, op_name, fc2, "weight", 2, (int64_t[]){D, hidden},
                               VIKT__FILL_UNIFORM, b2) ||
            !vikt__layer_param(m, op_name, fc2, "bias", 1, (int64_t[]){D}, VIKT__FILL_UNIFORM, b2))
            return m->errcode;
    }
    return VIKT_OK;
}

static int check_args(vikt_model *m, const char *name, vikt_tensor *x, int64_t experts,
                      int64_t hidden, int top_k) {
    if (vikt__check_layer(m, op_name, name, x)) return m->errcode;
    char s[VIKT__SHAPE_STR];
    if (x->rank < 2 || x->shape[x->rank - 1] < 1 || x->numel < 1)
        return vikt__fail(m, VIKT_ERR_SHAPE,
                          "%s: '%s' needs input [..., D] of rank >= 2 with at least one token "
                          "and D >= 1, got %s",
                          op_name, name, vikt__shape_str(x, s));
    if (experts < 1 || hidden < 1 || (top_k != 1 && top_k != 2) || top_k > experts)
        return vikt__fail(m, VIKT_ERR_ARG,
                          "%s: '%s' needs experts >= 1, hidden >= 1 and top_k 1 or 2 (at most "
                          "experts); got experts %lld, hidden %lld, top_k %d (input %s)",
                          op_name, name, (long long)experts, (long long)hidden, top_k,
                          vikt__shape_str(x, s));
    int64_t tokens = x->numel / x->shape[x->rank - 1];
    if (tokens > INT32_MAX / experts)
        return vikt__fail(m, VIKT_ERR_ARG,
                          "%s: '%s' %lld tokens x %lld experts exceed int32 indexing", op_name,
                          name, (long long)tokens, (long long)experts);
    return VIKT_OK;
}

/* Best and second-best expert of each token; ties go to the lower index. */
static void choose(const float *probs, routing *r) {
    for (int64_t t = 0; t < r->tokens; t++) {
        const float *p = probs + t * r->experts;
        int32_t a = 0, b = -1;
        for (int32_t e = 1; e < (int32_t)r->experts; e++) {
            if (p[e] > p[a]) {
                b = a;
                a = e;
            } else if (b < 0 || p[e] > p[b]) {
                b = e;
            }
        }
        r->first[t] = a;
        r->second[t] = b;
    }
}

/* Group the selections by expert and work out gate indices and the load. */
static void group(routing *r) {
    int64_t E = r->experts, n = 0;
    memset(r->count, 0, (size_t)E * sizeof *r->count);
    memset(r->load, 0, (size_t)E * sizeof *r->load);
    for (int64_t e = 0; e < E; e++)
        for (int64_t t = 0; t < r->tokens; t++) {
            if (r->first[t] != e && (r->k < 2 || r->second[t] != e)) continue;
            r->token[n] = (int32_t)t;
            r->gate[n] = (int32_t)(t * E + e);
            if (r->k == 2) {
                r->pick_a[n] = (int32_t)(t * E + r->first[t]);
                r->pick_b[n] = (int32_t)(t * E + r->second[t]);
            }
            r->count[e]++;
            n++;
        }
    for (int64_t t = 0; t < r->tokens; t++) r->load[r->first[t]] += 1.0f;
    for (int64_t e = 0; e < E; e++) r->load[e] *= (float)E / (float)r->tokens;
}

/* Arena arrays for the routing; they live until the next step begins. */
static int route(vikt_model *m, const float *probs, routing *r) {
    size_t T = (size_t)r->tokens, S = (size_t)(r->tokens * r->k), E = (size_t)r->experts;
    r->first = vikt__arena_alloc(m, T * sizeof(int32_t));
    r->second = vikt__arena_alloc(m, T * sizeof(int32_t));
    r->count = vikt__arena_alloc(m, E * sizeof(int64_t));
    r->token = vikt__arena_alloc(m, S * sizeof(int32_t));
    r->gate = vikt__arena_alloc(m, S * sizeof(int32_t));
    r->pick_a = vikt__arena_alloc(m, S * sizeof(int32_t));
    r->pick_b = vikt__arena_alloc(m, S * sizeof(int32_t));
    r->load = vikt__arena_alloc(m, E * sizeof(float));
    if (!r->first || !r->second || !r->count || !r->token || !r->gate || !r->pick_a || !r->pick_b ||
        !r->load)
        return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for the routing", op_name);
    choose(probs, r);
    group(r);
    return VIKT_OK;
}

/* fc2(gelu(fc1(x))) for expert e. */
static vikt_tensor *expert(vikt_model *m, const char *name, int64_t e, vikt_tensor *x, int64_t D,
                           int64_t hidden) {
    char fc1[VIKT__NAME_MAX], fc2[VIKT__NAME_MAX];
    if (expert_name(m, name, e, "fc1", fc1) || expert_name(m, name, e, "fc2", fc2)) return NULL;
    return vikt_dense(m, fc2, vikt_gelu(m, vikt_dense(m, fc1, x, hidden)), D);
}

/* Every selected (token, expert) pair's expert output, grouped by expert:
 * [tokens·k, D]. Experts without tokens are not run. */
static vikt_tensor *run_experts(vikt_model *m, const char *name, vikt_tensor *xf, const routing *r,
                                int64_t D, int64_t hidden) {
    vikt_tensor **parts = vikt__arena_alloc(m, (size_t)r->experts * sizeof *parts);
    if (!parts) {
        vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", op_name);
        return NULL;
    }
    int nparts = 0;
    int64_t at = 0;
    for (int64_t e = 0; e < r->experts; e++) {
        if (!r->count[e]) continue;
        vikt_tensor *rows = vikt_gather_rows(m, xf, r->token + at, r->count[e]);
        parts[nparts++] = expert(m, name, e, rows, D, hidden);
        at += r->count[e];
    }
    return nparts == 1 ? parts[0] : vikt_concat(m, nparts, parts, 0);
}

/* Gate of each selection, [tokens·k, 1]: p_e (k = 1) or p_e / (p_a + p_b)
 * over the token's two choices (k = 2), from the probabilities as ops so
 * the router is trained through them. */
static vikt_tensor *gates(vikt_model *m, vikt_tensor *probs, const routing *r) {
    int64_t S = r->tokens * r->k;
    vikt_tensor *flat = vikt_reshape(m, probs, 2, (int64_t[]){r->tokens * r->experts, 1});
    vikt_tensor *g = vikt_gather_rows(m, flat, r->gate, S);
    if (r->k == 1) return g;
    vikt_tensor *pair = vikt_add(m, vikt_gather_rows(m, flat, r->pick_a, S),
                                 vikt_gather_rows(m, flat, r->pick_b, S));
    return vikt_div(m, g, pair);
}

/* E·Σ_e f_e·P_e with P the mean probability per expert; f is a constant. */
static vikt_tensor *balance_loss(vikt_model *m, vikt_tensor *probs, const routing *r) {
    vikt_tensor *load = vikt_input(m, 1, (int64_t[]){r->experts}, r->load);
    return vikt_sum(m, vikt_mul(m, vikt_mean_axis(m, probs, 0, 0), load));
}

vikt_tensor *vikt_moe(vikt_model *m, const char *name, vikt_tensor *x, int64_t experts,
                      int64_t hidden, int top_k, vikt_tensor **aux_loss) {
    if (aux_loss) *aux_loss = NULL;
    if (!m || check_args(m, name, x, experts, hidden, top_k)) return NULL;
    int64_t D = x->shape[x->rank - 1];
    routing r;
    memset(&r, 0, sizeof r);
    r.tokens = x->numel / D;
    r.experts = experts;
    r.k = top_k;
    vikt_tensor *w =
        vikt__layer_param(m, op_name, name, "router.weight", 2, (int64_t[]){experts, D},
                          VIKT__FILL_UNIFORM, 1.0f / sqrtf((float)D));
    if (!w || ensure_experts(m, name, experts, D, hidden)) return NULL;

    vikt_tensor *xf = vikt_reshape(m, x, 2, (int64_t[]){r.tokens, D});
    vikt_tensor *probs = vikt_softmax(m, vikt_matmul_t(m, xf, w, 0, 1));
    if (!probs || route(m, probs->data, &r)) return NULL;

    vikt_tensor *outs = run_experts(m, name, xf, &r, D, hidden);
    vikt_tensor *mixed = vikt_mul(m, outs, gates(m, probs, &r));
    vikt_tensor *y = vikt_scatter_rows(m, mixed, r.token, r.tokens);
    int64_t shape[VIKT_MAX_RANK];
    for (int i = 0; i < x->rank; i++) shape[i] = x->shape[i];
    y = vikt_reshape(m, y, x->rank, shape);
    if (!y) return NULL;
    if (aux_loss) {
        *aux_loss = balance_loss(m, probs, &r);
        if (!*aux_loss) return NULL;
    }
    return y;
}
