/* Attention family: the ops permute, gather_rows, scatter_rows, causal_mask
 * and the layers attention, transformer block and mixture of experts.
 *
 *  - PyTorch parity: test/fixtures/layers_attn.h (tools/gen_layer_fixtures_attn.py)
 *    holds inputs, parameters, float64 reference outputs and every gradient;
 *    compared at rtol 1e-4 / atol 1e-5.
 *  - Gradient checks (vt_gradcheck) of every op and layer w.r.t. inputs and
 *    parameters, on odd sizes.
 *  - Semantics: values of the ops, causality, only the routed experts run.
 *  - No allocation in a steady-state step; error cases. */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/layers_attn.h"

#define RTOL 1e-4
#define ATOL 1e-5
#define GC_ATOL 1e-4
#define GC_RTOL 1e-3

/* The projection of the fixtures' loss L = Σ out ⊙ R. */
static float projection(int64_t i) {
    return (float)(0.5 + 0.5 * sin(0.91 * (double)i + 0.3));
}

/* ------------------------------------------------------------ fixtures */

static vikt_tensor *run_case(vikt_model *m, const la_case *c, vikt_tensor *x, vikt_tensor **aux) {
    switch (c->kind) {
    case LA_ATTENTION:
        return vikt_attention(m, c->layer, x, c->heads, c->causal);
    case LA_BLOCK:
        return vikt_transformer_block(m, c->layer, x, c->heads, c->mlp_hidden, c->causal);
    default:
        return vikt_moe(m, c->layer, x, c->experts, c->hidden, c->top_k, aux);
    }
}

/* |got - want| <= ATOL + RTOL·|want| element by element; returns the worst
 * ratio of error to allowance (<= 1 passes) for the record. */
static double compare(const char *what, const char *tensor, const float *got, const float *want,
                      int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]), allow = ATOL + RTOL * fabs(want[i]);
        if (!(err <= allow))
            fail_msg("%s: %s[%lld] = %.9g, PyTorch %.9g (|diff| %.3g)", what, tensor, (long long)i,
                     (double)got[i], (double)want[i], err);
        worst = err / allow > worst ? err / allow : worst;
    }
    return worst;
}

static int64_t numel_of(const la_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->shape[i];
    return n;
}

static void fixture_case(const la_case *c) {
    vikt_model *m = vt_model(5);
    vikt_tensor *x = NULL;
    const la_tensor *tx = &c->tensors[0];
    assert_int_equal(vikt_tensor_create(m, tx->rank, tx->shape, tx->value, 1, &x), VIKT_OK);
    for (int i = 1; i < c->ntensors; i++) {
        const la_tensor *t = &c->tensors[i];
        vikt_tensor *p = vikt_param(m, t->name, t->rank, t->shape, VIKT_INIT_ZEROS);
        assert_non_null(p);
        assert_int_equal(vikt_tensor_copy_in(p, t->value, numel_of(t)), VIKT_OK);
    }
    vikt_step_begin(m);
    vikt_tensor *aux = NULL;
    vikt_tensor *y = run_case(m, c, x, &aux);
    if (!y) fail_msg("%s: %s", c->name, vikt_model_errmsg(m));
    /* The layer found every parameter by its PyTorch-style name. */
    assert_int_equal(vikt_param_count(m), c->ntensors - 1);
    assert_int_equal(vikt_tensor_numel(y), numel_of(tx));

    float r[512];
    assert_true(vikt_tensor_numel(y) <= 512);
    for (int64_t i = 0; i < vikt_tensor_numel(y); i++) r[i] = projection(i);
    vikt_tensor *loss = vikt_sum(m, vikt_mul(m, y, vikt_input(m, tx->rank, tx->shape, r)));
    if (c->kind == LA_MOE) loss = vikt_add(m, loss, vikt_scale(m, aux, c->aux_weight));
    assert_int_equal(vikt_backward(m, loss), VIKT_OK);

    double worst = compare(c->name, "out", vikt_tensor_data(y), c->out, numel_of(tx));
    if (c->kind == LA_MOE) {
        double w = compare(c->name, "aux", vikt_tensor_data(aux), &c->aux, 1);
        worst = w > worst ? w : worst;
    }
    for (int i = 0; i < c->ntensors; i++) {
        const la_tensor *t = &c->tensors[i];
        vikt_tensor *v = i == 0 ? x : vikt_param_find(m, t->name);
        char label[128];
        snprintf(label, sizeof label, "grad %s", t->name);
        double w = compare(c->name, label, vikt_tensor_grad(v), t->grad, numel_of(t));
        worst = w > worst ? w : worst;
    }
    if (getenv("VT_VERBOSE")) print_message("%s: worst error / allowance = %.3g\n", c->name, worst);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static const la_case *find_case(const char *name) {
    for (int i = 0; i < LA_NCASES; i++)
        if (!strcmp(la_cases[i].name, name)) return &la_cases[i];
    fail_msg("no fixture %s", name);
    return NULL;
}

static void torch_attention_causal(void **state) {
    (void)state;
    fixture_case(find_case("attention_causal"));
}
static void torch_attention_full(void **state) {
    (void)state;
    fixture_case(find_case("attention_full"));
}
static void torch_block_causal(void **state) {
    (void)state;
    fixture_case(find_case("block_causal"));
}
static void torch_moe_top1(void **state) {
    (void)state;
    fixture_case(find_case("moe_top1"));
}
static void torch_moe_top2(void **state) {
    (void)state;
    fixture_case(find_case("moe_top2"));
}

/* --------------------------------------------------------- op semantics */

static void permute_values(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    float a[24];
    for (int i = 0; i < 24; i++) a[i] = (float)i;
    vikt_tensor *x = vikt_input(m, 3, (int64_t[]){2, 3, 4}, a);
    vikt_tensor *y = vikt_permute(m, x, (const int[]){2, 0, 1});
    assert_non_null(y);
    int64_t shape[4];
    assert_int_equal(vikt_tensor_shape(y, shape), 3);
    assert_true(shape[0] == 4 && shape[1] == 2 && shape[2] == 3);
    const float *v = vikt_tensor_data(y);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                assert_float_equal(v[(k * 2 + i) * 3 + j], a[(i * 3 + j) * 4 + k], 0);
    /* Rank 0 needs no perm; rank 1 is the identity. */
    vikt_tensor *s = vikt_permute(m, vikt_full(m, 0, NULL, 3.0f), NULL);
    assert_non_null(s);
    assert_float_equal(vikt_tensor_data(s)[0], 3.0f, 0);
    assert_non_null(vikt_permute(m, vikt_input(m, 1, (int64_t[]){5}, a), (const int[]){0}));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void gather_scatter_values(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    float a[15];
    for (int i = 0; i < 15; i++) a[i] = (float)i;
    vikt_tensor *x = vikt_input(m, 2, (int64_t[]){5, 3}, a);
    int32_t idx[4] = {4, 0, 4, 2};
    vikt_tensor *g = vikt_gather_rows(m, x, idx, 4);
    assert_non_null(g);
    assert_int_equal(vikt_tensor_dim(g, 0), 4);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            assert_float_equal(vikt_tensor_data(g)[i * 3 + j], a[idx[i] * 3 + j], 0);
    /* Scatter adds rows that share a destination and zero-fills the rest. */
    vikt_tensor *s = vikt_scatter_rows(m, g, idx, 6);
    assert_non_null(s);
    assert_int_equal(vikt_tensor_dim(s, 0), 6);
    const float *v = vikt_tensor_data(s);
    for (int j = 0; j < 3; j++) {
        assert_float_equal(v[0 * 3 + j], a[0 * 3 + j], 0);
        assert_float_equal(v[1 * 3 + j], 0, 0);
        assert_float_equal(v[2 * 3 + j], a[2 * 3 + j], 0);
        assert_float_equal(v[3 * 3 + j], 0, 0);
        assert_float_equal(v[4 * 3 + j], 2 * a[4 * 3 + j], 0);
        assert_float_equal(v[5 * 3 + j], 0, 0);
    }
    /* The index array is copied: changing it afterwards changes nothing. */
    vikt_tensor *w = vikt_param(m, "w", 2, (int64_t[]){5, 3}, VIKT_INIT_ONES);
    vikt_tensor *gw = vikt_gather_rows(m, w, idx, 4);
    idx[0] = 1;
    assert_int_equal(vikt_backward(m, vikt_sum(m, gw)), VIKT_OK);
    const float *grad = vikt_tensor_grad(w);
    float want[5] = {1, 0, 1, 0, 2};
    for (int r = 0; r < 5; r++) assert_float_equal(grad[r * 3], want[r], 0);
    /* Empty selections. */
    vikt_tensor *none = vikt_gather_rows(m, x, NULL, 0);
    assert_non_null(none);
    assert_int_equal(vikt_tensor_numel(none), 0);
    assert_int_equal(vikt_tensor_dim(none, 1), 3);
    vikt_tensor *zeros = vikt_scatter_rows(m, none, NULL, 2);
    assert_non_null(zeros);
    for (int i = 0; i < 6; i++) assert_float_equal(vikt_tensor_data(zeros)[i], 0, 0);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void causal_mask_values(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    float a[2 * 9];
    vt_fill(a, 18, 3, -2, 2);
    vikt_tensor *x = NULL;
    assert_int_equal(vikt_tensor_create(m, 3, (int64_t[]){2, 3, 3}, a, 1, &x), VIKT_OK);
    vikt_tensor *y = vikt_causal_mask(m, x);
    assert_non_null(y);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                float v = vikt_tensor_data(y)[(b * 3 + i) * 3 + j];
                if (j <= i)
                    assert_float_equal(v, a[(b * 3 + i) * 3 + j], 0);
                else
                    assert_true(isinf(v) && v < 0);
            }
    /* After softmax the first query attends only to itself; masked scores get
     * exactly zero gradient, kept ones a non-zero one. */
    vikt_tensor *p = vikt_softmax(m, y);
    assert_float_equal(vikt_tensor_data(p)[0], 1.0f, 0);
    float r[18];
    for (int i = 0; i < 18; i++) r[i] = projection(i);
    vikt_tensor *loss = vikt_sum(m, vikt_mul(m, p, vikt_input(m, 3, (int64_t[]){2, 3, 3}, r)));
    assert_int_equal(vikt_backward(m, loss), VIKT_OK);
    const float *g = vikt_tensor_grad(x);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (j > i) assert_true(g[(b * 3 + i) * 3 + j] == 0.0f);
    assert_true(g[(0 * 3 + 2) * 3 + 1] != 0.0f);
    vikt_tensor_destroy(x);
    vikt_model_destroy(m);
}

/* ------------------------------------------------- op gradient checks */

typedef struct op_ctx {
    int op;
    int perm[4];
    const int32_t *index;
    int64_t n;
} op_ctx;

enum { G_PERMUTE, G_GATHER, G_SCATTER, G_MASK_SOFTMAX };

static vikt_tensor *build_op(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    const op_ctx *c = ctx;
    switch (c->op) {
    case G_PERMUTE:
        return vikt_permute(m, in[0], c->perm);
    case G_GATHER:
        return vikt_gather_rows(m, in[0], c->index, c->n);
    case G_SCATTER:
        return vikt_scatter_rows(m, in[0], c->index, c->n);
    default:
        return vikt_softmax(m, vikt_causal_mask(m, in[0]));
    }
}

static void check_op(const char *what, const op_ctx *c, int rank, const int64_t *shape) {
    static float data[512];
    vt_grad_input in = {.rank = rank, .data = data, .requires_grad = 1};
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= in.shape[i] = shape[i];
    assert_true(n <= 512);
    vt_fill(data, n, (uint32_t)n, -2, 2);
    vt_gradcheck(what, 1, &in, build_op, (void *)c, GC_ATOL, GC_RTOL);
}

static void gradcheck_permute(void **state) {
    (void)state;
    op_ctx c = {.op = G_PERMUTE, .perm = {2, 0, 1}};
    check_op("permute [2,3,4] (2,0,1)", &c, 3, (int64_t[]){2, 3, 4});
    op_ctx c4 = {.op = G_PERMUTE, .perm = {3, 1, 0, 2}};
    check_op("permute [2,3,4,5] (3,1,0,2)", &c4, 4, (int64_t[]){2, 3, 4, 5});
    op_ctx heads = {.op = G_PERMUTE, .perm = {0, 2, 1, 3}};
    check_op("permute [2,5,3,2] (0,2,1,3)", &heads, 4, (int64_t[]){2, 5, 3, 2});
    op_ctx t2 = {.op = G_PERMUTE, .perm = {1, 0}};
    check_op("permute [3,7] (1,0)", &t2, 2, (int64_t[]){3, 7});
}

static void gradcheck_gather_scatter(void **state) {
    (void)state;
    /* Repeated and skipped rows: gradients accumulate and stay zero. */
    static const int32_t idx[7] = {4, 0, 4, 2, 1, 4, 3};
    op_ctx g = {.op = G_GATHER, .index = idx, .n = 7};
    check_op("gather_rows [5,3] 7 rows", &g, 2, (int64_t[]){5, 3});
    op_ctx g1 = {.op = G_GATHER, .index = idx, .n = 5};
    check_op("gather_rows [6] 5 rows", &g1, 1, (int64_t[]){6});
    op_ctx g3 = {.op = G_GATHER, .index = idx, .n = 4};
    check_op("gather_rows [5,2,3] 4 rows", &g3, 3, (int64_t[]){5, 2, 3});
    static const int32_t to[6] = {2, 0, 2, 5, 5, 1};
    op_ctx s = {.op = G_SCATTER, .index = to, .n = 7};
    check_op("scatter_rows [6,3] into 7 rows", &s, 2, (int64_t[]){6, 3});
    op_ctx s3 = {.op = G_SCATTER, .index = to, .n = 6};
    check_op("scatter_rows [6,2,2] into 6 rows", &s3, 3, (int64_t[]){6, 2, 2});
}

static void gradcheck_causal_mask(void **state) {
    (void)state;
    /* Checked through softmax: the mask's −∞ would make Σ out⊙R infinite. */
    op_ctx c = {.op = G_MASK_SOFTMAX};
    check_op("softmax(causal_mask) [5,5]", &c, 2, (int64_t[]){5, 5});
    check_op("softmax(causal_mask) [2,3,4,4]", &c, 4, (int64_t[]){2, 3, 4, 4});
    check_op("softmax(causal_mask) [3,1,1]", &c, 3, (int64_t[]){3, 1, 1});
}

/* ---------------------------------------------- layer gradient checks */

typedef struct layer_ctx {
    int kind;
    int64_t heads, mlp_hidden, experts, hidden;
    int causal, top_k;
} layer_ctx;

/* The layer's output; for the mixture of experts with the auxiliary loss
 * appended, so both are checked. */
static vikt_tensor *build_layer(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    const layer_ctx *c = ctx;
    if (c->kind == LA_ATTENTION) return vikt_attention(m, "attn", in[0], c->heads, c->causal);
    if (c->kind == LA_BLOCK)
        return vikt_transformer_block(m, "blk", in[0], c->heads, c->mlp_hidden, c->causal);
    vikt_tensor *aux = NULL;
    vikt_tensor *y = vikt_moe(m, "moe", in[0], c->experts, c->hidden, c->top_k, &aux);
    vikt_tensor *parts[2] = {vikt_reshape(m, y, 1, (int64_t[]){-1}),
                             vikt_reshape(m, aux, 1, (int64_t[]){1})};
    return vikt_concat(m, 2, parts, 0);
}

/* Storage for gradcheck inputs: one buffer per input. */
static float gc_data[VT_MAX_INPUTS][512];

static vt_grad_input gc_input(int k, const char *param, int rank, const int64_t *shape, float lo,
                              float hi) {
    vt_grad_input in = {.rank = rank, .data = gc_data[k], .requires_grad = 1, .param = param};
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= in.shape[i] = shape[i];
    assert_true(n <= 512);
    vt_fill(gc_data[k], n, 101u + (uint32_t)k * 7919u, lo, hi);
    return in;
}

static void gradcheck_attention_case(int64_t N, int64_t T, int64_t D, int64_t H, int causal) {
    const int64_t DD[2] = {D, D}, Dv[1] = {D};
    vt_grad_input in[8] = {
        gc_input(0, NULL, 3, (int64_t[]){N, T, D}, -1, 1),
        gc_input(1, "attn.q.weight", 2, DD, -0.6f, 0.6f),
        gc_input(2, "attn.k.weight", 2, DD, -0.6f, 0.6f),
        gc_input(3, "attn.v.weight", 2, DD, -0.6f, 0.6f),
        gc_input(4, "attn.out.weight", 2, DD, -0.6f, 0.6f),
        gc_input(5, "attn.q.bias", 1, Dv, -0.3f, 0.3f),
        gc_input(6, "attn.v.bias", 1, Dv, -0.3f, 0.3f),
        gc_input(7, "attn.out.bias", 1, Dv, -0.3f, 0.3f),
    };
    layer_ctx c = {.kind = LA_ATTENTION, .heads = H, .causal = causal};
    char what[96];
    snprintf(what, sizeof what, "attention [%lld,%lld,%lld] heads %lld causal %d", (long long)N,
             (long long)T, (long long)D, (long long)H, causal);
    vt_gradcheck(what, 8, in, build_layer, &c, GC_ATOL, GC_RTOL);
}

static void gradcheck_attention(void **state) {
    (void)state;
    gradcheck_attention_case(2, 3, 6, 3, 1);
    gradcheck_attention_case(2, 3, 6, 3, 0);
    gradcheck_attention_case(1, 4, 6, 2, 1);
    gradcheck_attention_case(3, 1, 4, 1, 1); /* one token: softmax of one score */
}

static void gradcheck_block(void **state) {
    (void)state;
    const int64_t D = 4, H = 5;
    vt_grad_input in[8] = {
        gc_input(0, NULL, 3, (int64_t[]){2, 3, D}, -1, 1),
        gc_input(1, "blk.ln1.weight", 1, (int64_t[]){D}, 0.5f, 1.5f),
        gc_input(2, "blk.ln2.bias", 1, (int64_t[]){D}, -0.3f, 0.3f),
        gc_input(3, "blk.attn.q.weight", 2, (int64_t[]){D, D}, -0.6f, 0.6f),
        gc_input(4, "blk.attn.v.bias", 1, (int64_t[]){D}, -0.3f, 0.3f),
        gc_input(5, "blk.mlp.fc1.weight", 2, (int64_t[]){H, D}, -0.6f, 0.6f),
        gc_input(6, "blk.mlp.fc2.weight", 2, (int64_t[]){D, H}, -0.6f, 0.6f),
        gc_input(7, "blk.mlp.fc2.bias", 1, (int64_t[]){D}, -0.3f, 0.3f),
    };
    layer_ctx causal = {.kind = LA_BLOCK, .heads = 2, .mlp_hidden = H, .causal = 1};
    vt_gradcheck("transformer_block [2,3,4] heads 2 mlp 5 causal", 8, in, build_layer, &causal,
                 GC_ATOL, GC_RTOL);
    layer_ctx full = {.kind = LA_BLOCK, .heads = 1, .mlp_hidden = H, .causal = 0};
    vt_gradcheck("transformer_block [2,3,4] heads 1 mlp 5", 8, in, build_layer, &full, GC_ATOL,
                 GC_RTOL);
}

/* The smallest logit gap that decides the routing (first vs second; for
 * k = 2 also second vs third), and whether every expert gets a token. */
static double routing_margin(const float *x, const float *w, int64_t tokens, int64_t D, int64_t E,
                             int k, int *all_used) {
    double margin = INFINITY;
    int used[8] = {0};
    for (int64_t t = 0; t < tokens; t++) {
        double s[8];
        int order[8];
        for (int64_t e = 0; e < E; e++) {
            s[e] = 0;
            for (int64_t d = 0; d < D; d++) s[e] += (double)x[t * D + d] * w[e * D + d];
            order[e] = (int)e;
        }
        for (int i = 0; i < E; i++) /* selection sort, descending */
            for (int j = i + 1; j < E; j++)
                if (s[order[j]] > s[order[i]]) {
                    int tmp = order[i];
                    order[i] = order[j];
                    order[j] = tmp;
                }
        for (int r = 0; r < k && r + 1 < E; r++)
            margin = fmin(margin, s[order[r]] - s[order[r + 1]]);
        for (int r = 0; r < k; r++) used[order[r]] = 1;
    }
    *all_used = 1;
    for (int64_t e = 0; e < E; e++) *all_used &= used[e];
    return margin;
}

/* Finite differences step inputs by up to 1e-2, moving a logit gap by up to
 * ~1.2e-2 here (|w| <= 0.6, |x| <= 1); keep every deciding gap well above
 * that, so no step flips a choice, and pick data that uses every expert. */
static void gradcheck_moe_case(int top_k) {
    const int64_t N = 2, T = 3, D = 5, E = 3, HID = 4, tokens = N * T;
    vt_grad_input in[7];
    int found = 0;
    for (uint32_t seed = 0; seed < 500 && !found; seed++) {
        vt_fill(gc_data[0], tokens * D, 11u + seed, -1, 1);
        vt_fill(gc_data[1], E * D, 977u + seed, -0.6f, 0.6f);
        int all;
        found = routing_margin(gc_data[0], gc_data[1], tokens, D, E, top_k, &all) > 0.05 && all;
    }
    assert_true(found);
    in[0] = (vt_grad_input){.rank = 3, .shape = {N, T, D}, .data = gc_data[0], .requires_grad = 1};
    in[1] = (vt_grad_input){.rank = 2,
                            .shape = {E, D},
                            .data = gc_data[1],
                            .requires_grad = 1,
                            .param = "moe.router.weight"};
    in[2] = gc_input(2, "moe.experts.0.fc1.weight", 2, (int64_t[]){HID, D}, -0.6f, 0.6f);
    in[3] = gc_input(3, "moe.experts.1.fc1.bias", 1, (int64_t[]){HID}, -0.4f, 0.4f);
    in[4] = gc_input(4, "moe.experts.2.fc2.weight", 2, (int64_t[]){D, HID}, -0.6f, 0.6f);
    in[5] = gc_input(5, "moe.experts.0.fc2.bias", 1, (int64_t[]){D}, -0.4f, 0.4f);
    in[6] = gc_input(6, "moe.experts.1.fc2.weight", 2, (int64_t[]){D, HID}, -0.6f, 0.6f);
    layer_ctx c = {.kind = LA_MOE, .experts = E, .hidden = HID, .top_k = top_k};
    vt_gradcheck(top_k == 1 ? "moe [2,3,5] E 3 top-1 (+aux)" : "moe [2,3,5] E 3 top-2 (+aux)", 7,
                 in, build_layer, &c, GC_ATOL, GC_RTOL);
}

static void gradcheck_moe(void **state) {
    (void)state;
    gradcheck_moe_case(1);
    gradcheck_moe_case(2);
}

/* ------------------------------------------------------ layer semantics */

/* Position t's output does not depend on later positions when causal, and
 * does without the mask. */
static void attention_is_causal(void **state) {
    (void)state;
    vikt_model *m = vt_model(9);
    float a[1 * 5 * 4], b[20];
    vt_fill(a, 20, 4, -1, 1);
    memcpy(b, a, sizeof a);
    for (int d = 0; d < 4; d++) b[4 * 4 + d] += 0.5f; /* change the last token only */
    for (int causal = 1; causal >= 0; causal--) {
        vikt_tensor *ya =
            vikt_attention(m, "attn", vikt_input(m, 3, (int64_t[]){1, 5, 4}, a), 2, causal);
        vikt_tensor *yb =
            vikt_attention(m, "attn", vikt_input(m, 3, (int64_t[]){1, 5, 4}, b), 2, causal);
        assert_non_null(ya);
        assert_non_null(yb);
        double diff_before = 0;
        for (int i = 0; i < 16; i++)
            diff_before += fabs(vikt_tensor_data(ya)[i] - vikt_tensor_data(yb)[i]);
        if (causal)
            assert_true(diff_before == 0.0);
        else
            assert_true(diff_before > 1e-4);
    }
    assert_int_equal(vikt_param_count(m), 8);
    vikt_model_destroy(m);
}

/* Fill a parameter of the MoE with the given value. */
static void set_param(vikt_model *m, const char *name, float value) {
    vikt_tensor *p = vikt_param_find(m, name);
    assert_non_null(p);
    assert_int_equal(vikt_tensor_fill(p, value), VIKT_OK);
}

static int all_zero(const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (g[i] != 0.0f) return 0;
    return 1;
}

/* Expert 3's router row makes it every token's last choice: its parameters
 * exist (created on the first call), but it is never computed — NaN weights
 * leave the output finite — and it gets exactly zero gradient, while every
 * expert that ran gets a non-zero one. */
static void moe_runs_only_selected_experts(void **state) {
    (void)state;
    for (int k = 1; k <= 2; k++) {
        vikt_model *m = vt_model(21);
        const int64_t D = 5, E = 4, tokens = 7;
        float x[7 * 5];
        vt_fill(x, tokens * D, 8, 0.2f, 1.0f); /* positive features */
        vikt_tensor *xt = vikt_input(m, 2, (int64_t[]){tokens, D}, x);
        assert_non_null(vikt_moe(m, "moe", xt, E, 6, k, NULL));
        assert_int_equal(vikt_param_count(m), 1 + 4 * E);
        float w[4 * 5];
        vt_fill(w, E * D, 9, -0.3f, 0.3f);
        for (int d = 0; d < D; d++) w[3 * D + d] = -1.0f; /* logit_3 = -Σx < every other */
        assert_int_equal(vikt_tensor_copy_in(vikt_param_find(m, "moe.router.weight"), w, E * D),
                         VIKT_OK);
        set_param(m, "moe.experts.3.fc1.weight", NAN);
        set_param(m, "moe.experts.3.fc2.bias", NAN);

        vikt_step_begin(m);
        vikt_tensor *aux = NULL;
        vikt_tensor *y =
            vikt_moe(m, "moe", vikt_input(m, 2, (int64_t[]){tokens, D}, x), E, 6, k, &aux);
        assert_non_null(y);
        for (int64_t i = 0; i < tokens * D; i++) assert_true(isfinite(vikt_tensor_data(y)[i]));
        assert_int_equal(vikt_backward(m, vikt_add(m, vikt_sum(m, y), aux)), VIKT_OK);
        int ran = 0;
        for (int64_t p = 0; p < vikt_param_count(m); p++) {
            vikt_tensor *t = vikt_param_at(m, p);
            const char *name = vikt_tensor_name(t);
            int zero = all_zero(vikt_tensor_grad(t), vikt_tensor_numel(t));
            if (!strncmp(name, "moe.experts.3.", 14)) {
                if (!zero) fail_msg("top-%d: %s has a gradient but its expert never ran", k, name);
            } else if (zero) {
                /* An unchosen expert 0..2 is possible in principle; count the others. */
                continue;
            } else {
                ran++;
            }
        }
        /* Router weight and every parameter of the experts that ran. */
        assert_true(ran >= 1 + 4 * k);
        assert_int_equal(vikt_model_errcode(m), VIKT_OK);
        vikt_model_destroy(m);
    }
}

/* One expert routed with probability 1: the layer is that expert's MLP,
 * and the balance loss is E·f·P = 1. */
static void moe_single_expert_is_its_mlp(void **state) {
    (void)state;
    vikt_model *m = vt_model(4);
    float x[3 * 2 * 5];
    vt_fill(x, 30, 2, -1, 1);
    vikt_tensor *xt = vikt_input(m, 3, (int64_t[]){3, 2, 5}, x);
    vikt_tensor *aux = NULL;
    vikt_tensor *y = vikt_moe(m, "moe", xt, 1, 4, 1, &aux);
    vikt_tensor *want = vikt_dense(m, "moe.experts.0.fc2",
                                   vikt_gelu(m, vikt_dense(m, "moe.experts.0.fc1", xt, 4)), 5);
    assert_non_null(y);
    assert_non_null(want);
    assert_int_equal(vikt_tensor_rank(y), 3);
    for (int i = 0; i < 30; i++)
        assert_float_equal(vikt_tensor_data(y)[i], vikt_tensor_data(want)[i], 1e-6);
    assert_int_equal(vikt_tensor_rank(aux), 0);
    assert_float_equal(vikt_tensor_data(aux)[0], 1.0f, 1e-6);
    assert_int_equal(vikt_param_count(m), 5);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------- steady state */

/* One training step through all three layers and the ops; after the first
 * step, identical steps make no allocator call. */
static void steady_state_allocates_nothing(void **state) {
    (void)state;
    vt_alloc_reset();
    vikt_model *m = vt_model(13);
    float data[2 * 5 * 8];
    vt_fill(data, 80, 6, -1, 1);
    vikt_tensor *x = NULL;
    assert_int_equal(vikt_tensor_create(m, 3, (int64_t[]){2, 5, 8}, data, 1, &x), VIKT_OK);
    int64_t after_first = 0;
    for (int step = 0; step < 4; step++) {
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *aux = NULL;
        vikt_tensor *h = vikt_transformer_block(m, "block0", x, 2, 16, 1);
        h = vikt_attention(m, "attn", h, 4, 0);
        h = vikt_moe(m, "moe", h, 4, 8, 2, &aux);
        vikt_tensor *loss = vikt_add(m, vikt_mean(m, vikt_square(m, h)), vikt_scale(m, aux, 0.01f));
        assert_int_equal(vikt_backward(m, loss), VIKT_OK);
        if (step == 0)
            after_first = vt_stats.calls;
        else
            assert_int_equal(vt_stats.calls, after_first);
    }
    vikt_tensor_destroy(x);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

/* The Nth allocator call of a first step (parameters created, arena grown)
 * fails, for every N the step makes: the model reports VIKT_ERR_NOMEM, no
 * crash, nothing leaks (cmocka checks on destroy). */
static void out_of_memory_is_reported(void **state) {
    (void)state;
    float data[2 * 3 * 4];
    vt_fill(data, 24, 2, -1, 1);
    int completed = 0;
    for (int64_t n = 1; n < 1000 && !completed; n++) {
        vt_alloc_reset();
        vikt_model *m = vt_model(3);
        int64_t start = vt_stats.calls;
        vt_stats.fail_at = start + n;
        vikt_step_begin(m);
        vikt_tensor *x = vikt_input(m, 3, (int64_t[]){2, 3, 4}, data);
        vikt_tensor *aux = NULL;
        vikt_tensor *h = vikt_transformer_block(m, "b", x, 2, 6, 1);
        h = vikt_moe(m, "moe", h, 3, 5, 2, &aux);
        int rc = vikt_backward(m, vikt_add(m, vikt_sum(m, h), aux));
        if (vt_stats.calls < start + n) {
            assert_int_equal(rc, VIKT_OK); /* the step made fewer than n calls */
            completed = 1;
            if (getenv("VT_VERBOSE"))
                print_message("first step: %lld allocator calls\n", (long long)n - 1);
        } else {
            if (vikt_model_errcode(m) != VIKT_ERR_NOMEM)
                fail_msg("failing call %lld: error %d \"%s\"", (long long)n, vikt_model_errcode(m),
                         vikt_model_errmsg(m));
        }
        vt_stats.fail_at = 0;
        vikt_model_destroy(m);
        assert_int_equal(vt_stats.live, 0);
    }
    assert_true(completed);
}

/* ------------------------------------------------------------- errors */

static void op_errors(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    float a[24] = {0};
    vikt_tensor *x = vikt_input(m, 3, (int64_t[]){2, 3, 4}, a);
    vikt_tensor *rows = vikt_input(m, 2, (int64_t[]){5, 3}, a);

    assert_null(vikt_permute(m, x, (const int[]){0, 1, 1}));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_permute: axis 1 appears twice", "2x3x4");
    assert_null(vikt_permute(m, x, (const int[]){0, 3, 1}));
    vt_expect_error(m, VIKT_ERR_ARG, "perm[1] = 3", "2x3x4");
    assert_null(vikt_permute(m, x, (const int[]){-1, 0, 1}));
    vt_expect_error(m, VIKT_ERR_ARG, "perm[0] = -1", "2x3x4");
    assert_null(vikt_permute(m, x, NULL));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_permute", "perm is NULL");
    assert_null(vikt_permute(m, NULL, (const int[]){0}));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_permute", NULL);

    assert_null(vikt_gather_rows(m, rows, (const int32_t[]){0, 4, 7, 1}, 4));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gather_rows: index 7 at position 2 is outside 0..4",
                    "5x3");
    assert_null(vikt_gather_rows(m, rows, (const int32_t[]){-1}, 1));
    vt_expect_error(m, VIKT_ERR_ARG, "index -1 at position 0", "5x3");
    assert_null(vikt_gather_rows(m, rows, NULL, 2));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_gather_rows: index is NULL", "5x3");
    assert_null(vikt_gather_rows(m, rows, (const int32_t[]){0}, -1));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gather_rows: n = -1", "5x3");
    assert_null(vikt_gather_rows(m, vikt_full(m, 0, NULL, 1), (const int32_t[]){0}, 1));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_gather_rows: needs rank >= 1", "scalar");

    assert_null(vikt_scatter_rows(m, rows, (const int32_t[]){0, 1, 2, 3, 4}, 4));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_scatter_rows: index 4 at position 4 is outside 0..3",
                    "5x3");
    assert_null(vikt_scatter_rows(m, rows, (const int32_t[]){0, 0, 0, 0, 0}, -2));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_scatter_rows: rows = -2", "5x3");
    assert_null(vikt_scatter_rows(m, rows, NULL, 5));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_scatter_rows: index is NULL", "5x3");

    assert_null(vikt_causal_mask(m, x));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_causal_mask", "2x3x4");
    assert_null(vikt_causal_mask(m, vikt_input(m, 1, (int64_t[]){4}, a)));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_causal_mask", "4");
    assert_null(vikt_causal_mask(m, NULL));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_causal_mask", NULL);
    vikt_model_destroy(m);
}

static void layer_errors(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    float a[80] = {0};
    vikt_tensor *x = vikt_input(m, 3, (int64_t[]){2, 5, 8}, a);
    vikt_tensor *flat = vikt_input(m, 1, (int64_t[]){8}, a);

    assert_null(vikt_attention(m, "attn", x, 3, 0));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_attention: 'attn' heads = 3", "2x5x8");
    assert_null(vikt_attention(m, "attn", x, 0, 0));
    vt_expect_error(m, VIKT_ERR_ARG, "heads = 0", "2x5x8");
    assert_null(vikt_attention(m, "attn", flat, 2, 0));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_attention: 'attn' needs input [N, T, D]", "8");
    assert_null(vikt_attention(m, "attn", vikt_input(m, 2, (int64_t[]){5, 8}, a), 2, 0));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_attention", "5x8");
    assert_null(vikt_attention(m, "attn", NULL, 2, 0));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_attention", NULL);
    assert_null(vikt_attention(m, "", x, 2, 0));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_attention", "name");

    assert_null(vikt_transformer_block(m, "b", x, 3, 16, 0));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_transformer_block: 'b'", "heads 3");
    assert_null(vikt_transformer_block(m, "b", x, 2, 0, 0));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_transformer_block", "mlp_hidden 0");
    assert_null(vikt_transformer_block(m, "b", flat, 2, 16, 0));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_transformer_block", "[N, T, D]");

    vikt_tensor *aux = x; /* must be reset to NULL on failure */
    assert_null(vikt_moe(m, "moe", x, 4, 8, 3, &aux));
    assert_null(aux);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_moe: 'moe'", "top_k 3");
    assert_null(vikt_moe(m, "moe", x, 1, 8, 2, NULL));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_moe", "experts 1, hidden 8, top_k 2");
    assert_null(vikt_moe(m, "moe", x, 0, 8, 1, NULL));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_moe", "experts 0");
    assert_null(vikt_moe(m, "moe", x, 4, 0, 1, NULL));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_moe", "hidden 0");
    assert_null(vikt_moe(m, "moe", flat, 4, 8, 1, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_moe: 'moe' needs input [..., D] of rank >= 2", "8");
    assert_null(vikt_moe(m, "moe", NULL, 4, 8, 1, NULL));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_moe", NULL);
    /* A parameter made beforehand with another shape is an error, not reused. */
    assert_non_null(vikt_param(m, "bad.router.weight", 2, (int64_t[]){3, 8}, VIKT_INIT_ZEROS));
    assert_null(vikt_moe(m, "bad", x, 4, 8, 1, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "bad.router.weight", NULL);
    /* None of the failures above created a parameter (but the one made here). */
    assert_int_equal(vikt_param_count(m), 1);
    vikt_model_destroy(m);
}

/* The attention core's own buffers: the weights P kept for backward and the
 * score gradient of backward. With T = 600 each is larger than an arena
 * chunk, so each is an allocator call of its own; failing every call in
 * turn must hit both, each reported as VIKT_ERR_NOMEM naming it. */
static void attention_buffers_out_of_memory(void **state) {
    (void)state;
    enum { T = 600, D = 4 };
    static float data[T * D];
    vt_fill(data, T * D, 8, -1, 1);
    int completed = 0, saw_weights = 0, saw_scores = 0;
    for (int64_t n = 1; n < 200 && !completed; n++) {
        vt_alloc_reset();
        vikt_model *m = vt_model(4);
        int64_t start = vt_stats.calls;
        vt_stats.fail_at = start + n;
        vikt_tensor *x = vikt_input(m, 3, (int64_t[]){1, T, D}, data);
        vikt_tensor_set_requires_grad(x, 1);
        int rc = vikt_backward(m, vikt_sum(m, vikt_attention(m, "a", x, 2, 1)));
        if (vt_stats.calls < start + n) {
            assert_int_equal(rc, VIKT_OK);
            completed = 1;
        } else {
            const char *msg = vikt_model_errmsg(m);
            if (vikt_model_errcode(m) != VIKT_ERR_NOMEM)
                fail_msg("failing call %lld: error %d \"%s\"", (long long)n,
                         vikt_model_errcode(m), msg);
            saw_weights |= strstr(msg, "vikt_attention: out of memory for the attention weights") != NULL;
            saw_scores |= strstr(msg, "vikt_attention: out of memory for a 600x600 score gradient") != NULL;
        }
        vt_stats.fail_at = 0;
        vikt_model_destroy(m);
        assert_int_equal(vt_stats.live, 0);
    }
    assert_true(completed);
    assert_true(saw_weights);
    assert_true(saw_scores);
}

/* The attention core deals its (sample, head) pairs to the threads, each
 * product whole on one: output and gradients are the same bytes with 1 and 3
 * threads (a shape above the size where it goes parallel). */
static void attention_bytes(int threads, float *out, float *grad) {
    enum { N = 3, T = 64, D = 64 };
    static float xs[N * T * D];
    vt_fill(xs, N * T * D, 12, -1, 1);
    vikt_model *m = vt_model(6);
    if (vikt_set_num_threads(m, threads) != VIKT_OK) { /* a build without threads */
        vikt_model_clear_error(m);
        assert_int_equal(vikt_set_num_threads(m, 1), VIKT_OK);
    }
    vikt_tensor *x = vikt_input(m, 3, (int64_t[]){N, T, D}, xs);
    assert_int_equal(vikt_tensor_set_requires_grad(x, 1), VIKT_OK);
    vikt_tensor *y = vikt_attention(m, "a", x, 4, 1);
    assert_non_null(y);
    assert_int_equal(vikt_backward(m, vikt_sum(m, vikt_square(m, y))), VIKT_OK);
    memcpy(out, vikt_tensor_data(y), sizeof(float) * N * T * D);
    memcpy(grad, vikt_tensor_grad(x), sizeof(float) * N * T * D);
    vikt_model_destroy(m);
}

static void attention_same_bytes_any_thread_count(void **state) {
    (void)state;
    enum { COUNT = 3 * 64 * 64 };
    static float y1[COUNT], g1[COUNT], y3[COUNT], g3[COUNT];
    attention_bytes(1, y1, g1);
    attention_bytes(3, y3, g3);
    assert_memory_equal(y1, y3, sizeof y1);
    assert_memory_equal(g1, g3, sizeof g1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(torch_attention_causal),
        cmocka_unit_test(torch_attention_full),
        cmocka_unit_test(torch_block_causal),
        cmocka_unit_test(torch_moe_top1),
        cmocka_unit_test(torch_moe_top2),
        cmocka_unit_test(permute_values),
        cmocka_unit_test(gather_scatter_values),
        cmocka_unit_test(causal_mask_values),
        cmocka_unit_test(gradcheck_permute),
        cmocka_unit_test(gradcheck_gather_scatter),
        cmocka_unit_test(gradcheck_causal_mask),
        cmocka_unit_test(gradcheck_attention),
        cmocka_unit_test(gradcheck_block),
        cmocka_unit_test(gradcheck_moe),
        cmocka_unit_test(attention_is_causal),
        cmocka_unit_test(moe_runs_only_selected_experts),
        cmocka_unit_test(moe_single_expert_is_its_mlp),
        cmocka_unit_test(steady_state_allocates_nothing),
        cmocka_unit_test(out_of_memory_is_reported),
        cmocka_unit_test(attention_buffers_out_of_memory),
        cmocka_unit_test(attention_same_bytes_any_thread_count),
        cmocka_unit_test(op_errors),
        cmocka_unit_test(layer_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
