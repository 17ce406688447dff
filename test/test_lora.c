/* LoRA and bottleneck adapters: the model unchanged at attach, PyTorch
 * parity (tools/gen_lora_fixtures.py), gradient checks, only adapters
 * training while the base stays bitwise unchanged, trainable counts, merge
 * and unmerge within float32 rounding, adapters-only files (round trip,
 * names, PEFT prefix, every malformation), errors and out of memory. */
#define _POSIX_C_SOURCE 200809L

#include "support.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixtures/lora_fixtures.h"

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* ------------------------------------------------------------- helpers */

static float projection(int64_t i) { return (float)(0.5 + 0.5 * sin(0.91 * (double)i + 0.3)); }

static void expect_close(const char *what, const float *got, const float *want, int64_t n) {
    assert_non_null(got);
    for (int64_t i = 0; i < n; i++)
        if (fabsf(got[i] - want[i]) > 1e-5f + 1e-4f * fabsf(want[i]))
            fail_msg("%s[%lld]: got %.8g, PyTorch %.8g", what, (long long)i, (double)got[i],
                     (double)want[i]);
}

static float *copy_of(vikt_tensor *t) {
    int64_t n = vikt_tensor_numel(t);
    float *c = malloc((size_t)n * sizeof *c);
    memcpy(c, vikt_tensor_data(t), (size_t)n * sizeof *c);
    return c;
}

static void set_values(vikt_tensor *t, uint32_t seed, float lo, float hi) {
    assert_non_null(t);
    vt_fill(vikt_tensor_data(t), vikt_tensor_numel(t), seed, lo, hi);
}

/* A frozen parameter: no gradient buffer, or one the backward left at zero. */
static void expect_no_grad(vikt_tensor *t) {
    const float *g = vikt_tensor_grad(t);
    for (int64_t i = 0; g && i < vikt_tensor_numel(t); i++)
        if (g[i] != 0.0f) fail_msg("frozen '%s' got a gradient", vikt_tensor_name(t));
}

static vikt_tensor *param(vikt_model *m, const char *name) {
    vikt_tensor *t = vikt_param_find(m, name);
    if (!t) fail_msg("no parameter '%s'", name);
    return t;
}

/* A small MLP: fc1 (8 → 6), relu, fc2 (6 → 4). */
#define MLP_N 5
#define MLP_IN 8
static vikt_tensor *mlp(vikt_model *m, const float *x) {
    vikt_tensor *in = vikt_input(m, 2, SHAPE(MLP_N, MLP_IN), x);
    return vikt_dense(m, "fc2", vikt_relu(m, vikt_dense(m, "fc1", in, 6)), 4);
}

static void mlp_input(float *x) { vt_fill(x, MLP_N * MLP_IN, 3, -1.0f, 1.0f); }

/* The MLP's output for x, copied out (n floats). */
static void run_mlp(vikt_model *m, const float *x, float *y) {
    vikt_step_begin(m);
    vikt_tensor *out = mlp(m, x);
    if (!out) fail_msg("mlp: %s", vikt_model_errmsg(m));
    assert_int_equal(vikt_tensor_copy_out(out, y, MLP_N * 4), VIKT_OK);
}

static vikt_model *mlp_model(uint64_t seed) {
    vikt_model *m = vt_model(seed);
    float x[MLP_N * MLP_IN], y[MLP_N * 4];
    mlp_input(x);
    run_mlp(m, x, y);
    return m;
}

/* A transformer: embedding, one block, a head. */
#define TF_D 16
#define TF_T 4
static vikt_tensor *transformer(vikt_model *m, int64_t d, int64_t vocab) {
    int32_t ids[2 * TF_T];
    for (int i = 0; i < 2 * TF_T; i++) ids[i] = (int32_t)((i * 7 + 3) % vocab);
    vikt_tensor *h = vikt_embedding(m, "embed", ids, 2, SHAPE(2, TF_T), vocab, d);
    h = vikt_transformer_block(m, "b0", h, 4, 4 * d, 1);
    return vikt_dense(m, "head", h, 3);
}

/* --------------------------------------------------- unchanged at attach */

static void attach_leaves_the_forward_unchanged(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *before = transformer(m, TF_D, 11);
    assert_non_null(before);
    int64_t n = vikt_tensor_numel(before);
    float *y0 = copy_of(before);
    /* Every dense layer of the block gets LoRA, the MLP's output an adapter. */
    assert_int_equal(vikt_lora_attach(m, "b0", 4, 8.0f, 0.0f), 6);
    assert_int_equal(vikt_adapter_attach(m, "b0.mlp.fc2", 3, VIKT_ACT_GELU), 1);
    vikt_step_begin(m);
    vikt_tensor *after = transformer(m, TF_D, 11);
    assert_non_null(after);
    const float *y1 = vikt_tensor_data(after);
    for (int64_t i = 0; i < n; i++)
        if (y1[i] != y0[i]) fail_msg("y[%lld] %.9g became %.9g", (long long)i, y0[i], y1[i]);
    free(y0);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* Attached layers and their parameters: names, shapes, initialization. */
static void attach_creates_peft_parameters(void **state) {
    (void)state;
    vikt_model *m = vt_model(2);
    assert_non_null(transformer(m, TF_D, 11));
    assert_int_equal(vikt_lora_attach(m, "b0.attn", 4, 8.0f, 0.1f), 4);
    const char *proj[] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "b0.attn.%s.lora_A.weight", proj[i]);
        vikt_tensor *a = param(m, name);
        assert_int_equal(vikt_tensor_dim(a, 0), 4);
        assert_int_equal(vikt_tensor_dim(a, 1), TF_D);
        float bound = 1.0f / sqrtf((float)TF_D), lo = 1, hi = -1;
        for (int64_t k = 0; k < vikt_tensor_numel(a); k++) {
            float v = vikt_tensor_data(a)[k];
            lo = v < lo ? v : lo, hi = v > hi ? v : hi;
        }
        assert_true(lo >= -bound && hi <= bound && hi - lo > bound); /* spread, in range */
        snprintf(name, sizeof name, "b0.attn.%s.lora_B.weight", proj[i]);
        vikt_tensor *b = param(m, name);
        assert_int_equal(vikt_tensor_dim(b, 0), TF_D);
        assert_int_equal(vikt_tensor_dim(b, 1), 4);
        for (int64_t k = 0; k < vikt_tensor_numel(b); k++)
            assert_true(vikt_tensor_data(b)[k] == 0.0f);
        assert_true(vikt_tensor_requires_grad(a) && vikt_tensor_requires_grad(b));
    }
    /* The rest is frozen; the embedding and the MLP got no adapter. */
    assert_false(vikt_tensor_requires_grad(param(m, "b0.attn.q.weight")));
    assert_false(vikt_tensor_requires_grad(param(m, "b0.attn.q.bias")));
    assert_false(vikt_tensor_requires_grad(param(m, "embed.weight")));
    assert_false(vikt_tensor_requires_grad(param(m, "head.weight")));
    assert_null(vikt_param_find(m, "embed.lora_A.weight"));
    assert_null(vikt_param_find(m, "b0.mlp.fc1.lora_A.weight"));
    /* A head unfrozen by hand trains too (PEFT's modules_to_save). */
    assert_int_equal(vikt_param_freeze(m, "head", 0), 2);
    assert_int_equal(vikt_model_num_trainable(m), 4 * (4 * TF_D * 2) + 3 * TF_D + 3);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------ PyTorch parity */

static vikt_tensor *loss_of(vikt_model *m, vikt_tensor *y) {
    int64_t n = vikt_tensor_numel(y), shape[4];
    int rank = vikt_tensor_shape(y, shape);
    float *r = malloc((size_t)n * sizeof *r);
    for (int64_t i = 0; i < n; i++) r[i] = projection(i);
    vikt_tensor *loss = vikt_sum(m, vikt_mul(m, y, vikt_input(m, rank, shape, r)));
    free(r);
    return loss;
}

static vikt_model *fixture_base(vikt_tensor **x) {
    vikt_model *m = vt_model(3);
    vikt_tensor *w = vikt_param(m, "fc.weight", 2, SHAPE(LORA_OUT, LORA_IN), VIKT_INIT_ZEROS);
    vikt_tensor *b = vikt_param(m, "fc.bias", 1, SHAPE(LORA_OUT), VIKT_INIT_ZEROS);
    assert_int_equal(vikt_tensor_copy_in(w, lora_w, LORA_OUT * LORA_IN), VIKT_OK);
    assert_int_equal(vikt_tensor_copy_in(b, lora_b, LORA_OUT), VIKT_OK);
    assert_int_equal(vikt_tensor_create(m, 3, SHAPE(LORA_N, LORA_T, LORA_IN), lora_x, 1, x),
                     VIKT_OK);
    return m;
}

static void lora_matches_pytorch(void **state) {
    (void)state;
    vikt_tensor *x;
    vikt_model *m = fixture_base(&x);
    assert_int_equal(vikt_lora_attach(m, "fc", LORA_R, LORA_ALPHA, 0.0f), 1);
    vikt_tensor *a = param(m, "fc.lora_A.weight"), *b = param(m, "fc.lora_B.weight");
    assert_int_equal(vikt_tensor_copy_in(a, lora_a, LORA_R * LORA_IN), VIKT_OK);
    assert_int_equal(vikt_tensor_copy_in(b, lora_bb, LORA_OUT * LORA_R), VIKT_OK);
    vikt_step_begin(m);
    vikt_tensor *y = vikt_dense(m, "fc", x, LORA_OUT);
    assert_int_equal(vikt_backward(m, loss_of(m, y)), VIKT_OK);
    expect_close("y", vikt_tensor_data(y), lora_y, LORA_N * LORA_T * LORA_OUT);
    expect_close("dx", vikt_tensor_grad(x), lora_dx, LORA_N * LORA_T * LORA_IN);
    expect_close("dA", vikt_tensor_grad(a), lora_da, LORA_R * LORA_IN);
    expect_close("dB", vikt_tensor_grad(b), lora_dbb, LORA_OUT * LORA_R);
    /* The frozen base gets no gradient. */
    expect_no_grad(param(m, "fc.weight"));
    expect_no_grad(param(m, "fc.bias"));
    vikt_model_destroy(m);
}

static void adapter_matches_pytorch(void **state) {
    (void)state;
    vikt_tensor *x;
    vikt_model *m = fixture_base(&x);
    assert_int_equal(vikt_adapter_attach(m, "fc", ADAPTER_WIDTH, VIKT_ACT_RELU), 1);
    vikt_tensor *dw = param(m, "fc.adapter.down.weight"), *db = param(m, "fc.adapter.down.bias"),
                *uw = param(m, "fc.adapter.up.weight"), *ub = param(m, "fc.adapter.up.bias");
    for (int64_t i = 0; i < vikt_tensor_numel(uw); i++) assert_true(vikt_tensor_data(uw)[i] == 0);
    for (int64_t i = 0; i < vikt_tensor_numel(ub); i++) assert_true(vikt_tensor_data(ub)[i] == 0);
    vikt_tensor_copy_in(dw, adapter_down_w, ADAPTER_WIDTH * LORA_OUT);
    vikt_tensor_copy_in(db, adapter_down_b, ADAPTER_WIDTH);
    vikt_tensor_copy_in(uw, adapter_up_w, LORA_OUT * ADAPTER_WIDTH);
    vikt_tensor_copy_in(ub, adapter_up_b, LORA_OUT);
    vikt_step_begin(m);
    vikt_tensor *y = vikt_dense(m, "fc", x, LORA_OUT);
    assert_int_equal(vikt_backward(m, loss_of(m, y)), VIKT_OK);
    expect_close("z", vikt_tensor_data(y), adapter_z, LORA_N * LORA_T * LORA_OUT);
    expect_close("dx", vikt_tensor_grad(x), adapter_dx, LORA_N * LORA_T * LORA_IN);
    expect_close("d down.weight", vikt_tensor_grad(dw), adapter_ddown_w, ADAPTER_WIDTH * LORA_OUT);
    expect_close("d up.weight", vikt_tensor_grad(uw), adapter_dup_w, LORA_OUT * ADAPTER_WIDTH);
    expect_close("d up.bias", vikt_tensor_grad(ub), adapter_dup_b, LORA_OUT);
    expect_no_grad(param(m, "fc.weight"));
    expect_no_grad(param(m, "fc.bias"));
    vikt_model_destroy(m);
}

/* ---------------------------------------------------------- gradcheck */

typedef struct gc_ctx {
    int lora; /* else a bottleneck adapter */
    int attached;
} gc_ctx;

static vikt_tensor *build_adapted(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    gc_ctx *c = ctx;
    if (!c->attached) {
        c->attached = 1;
        int64_t rc = c->lora ? vikt_lora_attach(m, "fc", 2, 3.0f, 0.25f)
                             : vikt_adapter_attach(m, "fc", 3, VIKT_ACT_TANH);
        assert_int_equal(rc, 1);
        /* The inputs were set; keep them (attach uses existing A and B) and
         * check the base's gradient as well. */
        assert_int_equal(vikt_param_freeze(m, "fc", 0), c->lora ? 4 : 6);
    }
    return vikt_dense(m, "fc", in[0], 4);
}

static void gradients_check(void **state) {
    (void)state;
    float x[2 * 3 * 5], w[4 * 5], b[4], a[2 * 5], bb[4 * 2];
    vt_fill(x, 30, 1, -1, 1), vt_fill(w, 20, 2, -0.5f, 0.5f), vt_fill(b, 4, 3, -0.5f, 0.5f);
    vt_fill(a, 10, 4, -0.5f, 0.5f), vt_fill(bb, 8, 5, -0.5f, 0.5f);
    vt_grad_input lora_in[5] = {
        {3, {2, 3, 5}, x, 1, NULL},
        {2, {4, 5}, w, 1, "fc.weight"},
        {1, {4}, b, 1, "fc.bias"},
        {2, {2, 5}, a, 1, "fc.lora_A.weight"},
        {2, {4, 2}, bb, 1, "fc.lora_B.weight"},
    };
    gc_ctx lc = {1, 0};
    /* With dropout 0.25 (the checker reseeds, so each evaluation drops the same). */
    vt_gradcheck("lora dense", 5, lora_in, build_adapted, &lc, 2e-3, 2e-3);

    float dw[3 * 4], db[3], uw[4 * 3], ub[4];
    vt_fill(dw, 12, 6, -0.5f, 0.5f), vt_fill(db, 3, 7, -0.5f, 0.5f);
    vt_fill(uw, 12, 8, -0.5f, 0.5f), vt_fill(ub, 4, 9, -0.5f, 0.5f);
    vt_grad_input ad_in[7] = {
        {3, {2, 3, 5}, x, 1, NULL},
        {2, {4, 5}, w, 1, "fc.weight"},
        {1, {4}, b, 1, "fc.bias"},
        {2, {3, 4}, dw, 1, "fc.adapter.down.weight"},
        {1, {3}, db, 1, "fc.adapter.down.bias"},
        {2, {4, 3}, uw, 1, "fc.adapter.up.weight"},
        {1, {4}, ub, 1, "fc.adapter.up.bias"},
    };
    gc_ctx ac = {0, 0};
    vt_gradcheck("bottleneck adapter", 7, ad_in, build_adapted, &ac, 2e-3, 2e-3);
}

/* --------------------------------------------- only the adapters train */

static void only_adapters_change(void **state) {
    (void)state;
    vikt_model *m = vt_model(4);
    vikt_tensor *out = transformer(m, TF_D, 11);
    assert_non_null(out);
    int64_t base_tensors = vikt_param_count(m);
    float *base[64];
    assert_true(base_tensors <= 64);
    for (int64_t i = 0; i < base_tensors; i++) base[i] = copy_of(vikt_param_at(m, i));
    assert_int_equal(vikt_lora_attach(m, "b0.attn.q", 2, 4.0f, 0.1f), 1);
    assert_int_equal(vikt_lora_attach(m, "b0.attn.v", 2, 4.0f, 0.1f), 1);
    assert_int_equal(vikt_adapter_attach(m, "b0.mlp.fc2", 4, VIKT_ACT_RELU), 1);
    int64_t adapter_numel = 2 * (2 * TF_D * 2) + (4 * TF_D + 4) + (TF_D * 4 + TF_D);
    assert_int_equal(vikt_model_num_trainable(m), adapter_numel);
    vikt_optimizer *opt;
    assert_int_equal(vikt_adam_create(m, 1e-2f, &opt), VIKT_OK);
    float targets[2 * TF_T * 3];
    vt_fill(targets, 2 * TF_T * 3, 11, -1, 1);
    float first = 0, last = 0;
    int64_t calls = 0;
    for (int step = 0; step < 30; step++) {
        if (step == 2) calls = vt_stats.calls; /* the adapters allocate nothing per step */
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *y = transformer(m, TF_D, 11);
        vikt_tensor *loss =
            vikt_mse_loss(m, y, vikt_input(m, 3, SHAPE(2, TF_T, 3), targets));
        assert_int_equal(vikt_backward(m, loss), VIKT_OK);
        assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
        if (step == 0) first = vikt_tensor_data(loss)[0];
        last = vikt_tensor_data(loss)[0];
    }
    assert_int_equal(vt_stats.calls, calls);
    assert_true(last < first);
    for (int64_t i = 0; i < base_tensors; i++) {
        vikt_tensor *t = vikt_param_at(m, i);
        if (memcmp(base[i], vikt_tensor_data(t), (size_t)vikt_tensor_numel(t) * sizeof(float)))
            fail_msg("the frozen '%s' changed", vikt_tensor_name(t));
        free(base[i]);
    }
    /* B and up left zero; they trained. */
    const char *moved[] = {"b0.attn.q.lora_B.weight", "b0.attn.v.lora_B.weight",
                           "b0.mlp.fc2.adapter.up.weight"};
    for (int k = 0; k < 3; k++) {
        vikt_tensor *t = param(m, moved[k]);
        int nonzero = 0;
        for (int64_t i = 0; i < vikt_tensor_numel(t); i++) nonzero |= vikt_tensor_data(t)[i] != 0;
        if (!nonzero) fail_msg("'%s' did not train", moved[k]);
    }
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

/* A ~1M-parameter model, r = 4 on the attention projections: a few thousand. */
static void trainable_counts(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    assert_non_null(transformer(m, 256, 1000));
    int64_t total = vikt_model_num_params(m);
    /* embed 256000; attn 4·(256·256+256); ln 2·512; mlp 256·1024·2+1024+256; head 771 */
    assert_int_equal(total, 256000 + 263168 + 1024 + 525568 + 771);
    assert_int_equal(vikt_lora_attach(m, "b0.attn", 4, 8.0f, 0.0f), 4);
    int64_t lora = 4 * (4 * 256 + 256 * 4);
    assert_int_equal(vikt_model_num_trainable(m), lora);
    assert_int_equal(vikt_model_num_params(m), total + lora);
    print_message("      %lld of %lld parameters trainable (%.2f%%)\n", (long long)lora,
                  (long long)(total + lora), 100.0 * (double)lora / (double)(total + lora));
    char summary[4096];
    assert_true(vikt_model_summary(m, summary, sizeof summary) < (int64_t)sizeof summary);
    assert_non_null(strstr(summary, "b0.attn.q.lora_A.weight"));
    assert_non_null(strstr(summary, "8192 trainable"));
    vikt_model_destroy(m);
}

/* ------------------------------------------------------ merge / unmerge */

/* |got − want| within n_ops float32 roundings of the magnitude mag. */
static void expect_rounding(const char *what, const float *got, const float *want,
                            const double *mag, int64_t n, double n_ops) {
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)got[i] - (double)want[i]) > n_ops * FLT_EPSILON * mag[i] + 1e-30)
            fail_msg("%s[%lld]: %.9g vs %.9g (allowed %.3g)", what, (long long)i, got[i], want[i],
                     n_ops * FLT_EPSILON * mag[i]);
}


/* max |a - b| in double. (A plain loop: aarch64 gcc 12 crashes vectorizing
 * an fmax reduction of this shape, an internal compiler error.) */
static double max_abs_diff(const float *a, const float *b, int n) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > worst || d != d) worst = d;
    }
    return worst;
}
static void merge_and_unmerge(void **state) {
    (void)state;
    vikt_model *m = mlp_model(6);
    float x[MLP_N * MLP_IN], y_base[MLP_N * 4], y_unmerged[MLP_N * 4], y_merged[MLP_N * 4],
        y_back[MLP_N * 4];
    mlp_input(x);
    run_mlp(m, x, y_base);
    assert_int_equal(vikt_lora_attach(m, "", 3, 6.0f, 0.0f), 2);
    set_values(param(m, "fc1.lora_B.weight"), 1, -0.5f, 0.5f);
    set_values(param(m, "fc2.lora_B.weight"), 2, -0.5f, 0.5f);
    vikt_tensor *w2 = param(m, "fc2.weight");
    float *w2_before = copy_of(w2), *w1_before = copy_of(param(m, "fc1.weight"));
    run_mlp(m, x, y_unmerged);
    assert_int_equal(vikt_lora_merge(m), 2);
    assert_int_equal(vikt_lora_merge(m), 0); /* already merged */
    assert_true(memcmp(w2_before, vikt_tensor_data(w2), 24 * sizeof(float)) != 0);
    run_mlp(m, x, y_merged);
    assert_int_equal(vikt_lora_unmerge(m), 2);
    assert_int_equal(vikt_lora_unmerge(m), 0);
    run_mlp(m, x, y_back);

    /* W after unmerge: one rounding of W + ΔW, one of its difference, and the
     * rounding of ΔW's r-term sums; |W| + |s|·|B|·|A| bounds them all. */
    const char *layer[2] = {"fc1", "fc2"};
    const float *wb[2] = {w1_before, w2_before};
    int64_t outs[2] = {6, 4}, ins[2] = {MLP_IN, 6};
    for (int l = 0; l < 2; l++) {
        char name[32];
        snprintf(name, sizeof name, "%s.lora_A.weight", layer[l]);
        const float *a = vikt_tensor_data(param(m, name));
        snprintf(name, sizeof name, "%s.lora_B.weight", layer[l]);
        const float *b = vikt_tensor_data(param(m, name));
        snprintf(name, sizeof name, "%s.weight", layer[l]);
        const float *w = vikt_tensor_data(param(m, name));
        double mag[64];
        for (int64_t i = 0; i < outs[l]; i++)
            for (int64_t j = 0; j < ins[l]; j++) {
                double s = 0;
                for (int k = 0; k < 3; k++) s += fabs(b[i * 3 + k]) * fabs(a[k * ins[l] + j]);
                mag[i * ins[l] + j] = fabs(wb[l][i * ins[l] + j]) + 2.0 * s;
            }
        expect_rounding(layer[l], w, wb[l], mag, outs[l] * ins[l], 2 + 3);
    }
    /* The outputs: a relative bound from the sum of magnitudes of the whole
     * computation (K terms each, two layers), measured on the output scale. */
    static const float zeros[MLP_N * 4];
    double scale = max_abs_diff(y_unmerged, zeros, MLP_N * 4);
    double mag[MLP_N * 4];
    for (int i = 0; i < MLP_N * 4; i++) mag[i] = 4.0 * scale + 1.0;
    expect_rounding("merged y", y_merged, y_unmerged, mag, MLP_N * 4, 2.0 * (MLP_IN + 6 + 3));
    expect_rounding("unmerged y", y_back, y_unmerged, mag, MLP_N * 4, 2.0 * (MLP_IN + 6 + 3));
    /* And the adapters matter: far outside that bound from the base alone. */
    double far = max_abs_diff(y_unmerged, y_base, MLP_N * 4);
    assert_true(far > 1e-2);
    free(w1_before), free(w2_before);
    vikt_model_destroy(m);
}

/* Dropout acts in training mode only; evaluation computes the full update. */
static void dropout_only_in_training(void **state) {
    (void)state;
    vikt_model *m = mlp_model(7);
    assert_int_equal(vikt_lora_attach(m, "fc1", 2, 2.0f, 0.5f), 1);
    set_values(param(m, "fc1.lora_B.weight"), 3, -1, 1);
    float x[MLP_N * MLP_IN], train[MLP_N * 4], eval[MLP_N * 4], want[MLP_N * 4];
    mlp_input(x);
    run_mlp(m, x, train);
    vikt_set_training(m, 0);
    run_mlp(m, x, eval);
    /* The same update without dropout, by hand from ops (the layer's own
     * fused op sums in another order: equal to rounding). */
    vikt_step_begin(m);
    vikt_tensor *in = vikt_input(m, 2, SHAPE(MLP_N, MLP_IN), x);
    vikt_tensor *h = vikt_add(m, vikt_matmul_t(m, in, param(m, "fc1.weight"), 0, 1),
                              param(m, "fc1.bias"));
    vikt_tensor *low = vikt_matmul_t(m, in, param(m, "fc1.lora_A.weight"), 0, 1);
    h = vikt_add(m, h,
                 vikt_scale(m, vikt_matmul_t(m, low, param(m, "fc1.lora_B.weight"), 0, 1), 1.0f));
    vikt_tensor *y = vikt_dense(m, "fc2", vikt_relu(m, h), 4);
    assert_int_equal(vikt_tensor_copy_out(y, want, MLP_N * 4), VIKT_OK);
    expect_close("eval", eval, want, MLP_N * 4);
    assert_true(max_abs_diff(train, eval, MLP_N * 4) > 1e-2);
    vikt_model_destroy(m);
}

/* A rank-1 input goes through the adapters as the row it is. */
static void rank1_input(void **state) {
    (void)state;
    vikt_model *m = mlp_model(14);
    assert_int_equal(vikt_lora_attach(m, "fc1", 2, 2.0f, 0.0f), 1);
    assert_int_equal(vikt_adapter_attach(m, "fc1", 3, VIKT_ACT_TANH), 1);
    set_values(param(m, "fc1.lora_B.weight"), 21, -1, 1);
    set_values(param(m, "fc1.adapter.up.weight"), 22, -1, 1);
    float x[MLP_N * MLP_IN], rows[MLP_N * 6];
    mlp_input(x);
    vikt_step_begin(m);
    vikt_tensor *all = vikt_dense(m, "fc1", vikt_input(m, 2, SHAPE(MLP_N, MLP_IN), x), 6);
    assert_int_equal(vikt_tensor_copy_out(all, rows, MLP_N * 6), VIKT_OK);
    vikt_tensor *one = vikt_dense(m, "fc1", vikt_input(m, 1, SHAPE(MLP_IN), x + 2 * MLP_IN), 6);
    assert_non_null(one);
    assert_int_equal(vikt_tensor_rank(one), 1);
    expect_close("row 2", vikt_tensor_data(one), rows + 2 * 6, 6);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------------- files */

static char tmp_dir[64];

static const char *tmp_file(const char *name, char *buf, size_t size) {
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "%s/vikt-lora-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        assert_non_null(mkdtemp(tmp_dir));
    }
    snprintf(buf, size, "%s/%s", tmp_dir, name);
    return buf;
}

/* A safetensors file written here from a JSON header and raw float32 data. */
static void write_st(const char *path, const char *json, const float *data, size_t nfloats) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t len = strlen(json);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(len >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(json, 1, len, f);
    if (nfloats) fwrite(data, sizeof(float), nfloats, f);
    fclose(f);
}

static void adapters_round_trip(void **state) {
    (void)state;
    char base_path[128], lora_path[128];
    tmp_file("base.safetensors", base_path, sizeof base_path);
    tmp_file("lora.safetensors", lora_path, sizeof lora_path);
    vikt_model *m = mlp_model(8);
    assert_int_equal(vikt_save(m, base_path), VIKT_OK);
    assert_int_equal(vikt_lora_attach(m, "fc1", 2, 4.0f, 0.0f), 1);
    assert_int_equal(vikt_lora_attach(m, "fc2", 3, 1.5f, 0.125f), 1);
    set_values(param(m, "fc1.lora_B.weight"), 4, -1, 1);
    set_values(param(m, "fc2.lora_B.weight"), 5, -1, 1);
    assert_int_equal(vikt_lora_save(m, lora_path), VIKT_OK);
    vikt_set_training(m, 0);
    float x[MLP_N * MLP_IN], want[MLP_N * 4], got[MLP_N * 4];
    mlp_input(x);
    run_mlp(m, x, want);

    /* Only the adapters, with PEFT's names and the configuration. */
    size_t n;
    unsigned char *bytes = vt_read_file(lora_path, &n);
    const char *header = (const char *)bytes + 8;
    assert_non_null(strstr(header, "\"fc1.lora_A.weight\""));
    assert_non_null(strstr(header, "\"fc2.lora_B.weight\""));
    assert_non_null(strstr(header, "\"vikt.lora.fc1\":\"rank=2 alpha=0x1p+2 dropout=0x0p+0\""));
    assert_non_null(strstr(header, "\"vikt.lora.fc2\":\"rank=3 alpha=0x1.8p+0 dropout=0x1p-3\""));
    assert_null(strstr(header, "\"fc1.weight\""));
    free(bytes);

    /* Into a fresh copy of the base. */
    vikt_model *fresh = vt_model(99);
    assert_int_equal(vikt_load(fresh, base_path, VIKT_LOAD_STRICT), VIKT_OK);
    assert_int_equal(vikt_lora_load(fresh, lora_path), 2);
    assert_int_equal(vikt_model_num_trainable(fresh), vikt_model_num_trainable(m));
    assert_false(vikt_tensor_requires_grad(param(fresh, "fc1.weight")));
    vikt_set_training(fresh, 0);
    run_mlp(fresh, x, got);
    assert_memory_equal(got, want, sizeof want);
    /* Again over the attached adapters: same ranks, values replaced. */
    set_values(param(fresh, "fc2.lora_A.weight"), 6, -1, 1);
    assert_int_equal(vikt_lora_load(fresh, lora_path), 2);
    run_mlp(fresh, x, got);
    assert_memory_equal(got, want, sizeof want);
    /* A merged model saves the same adapters. */
    assert_int_equal(vikt_lora_merge(m), 2);
    assert_int_equal(vikt_lora_save(m, lora_path), VIKT_OK);
    vikt_model *third = vt_model(5);
    assert_int_equal(vikt_load(third, base_path, VIKT_LOAD_STRICT), VIKT_OK);
    assert_int_equal(vikt_lora_load(third, lora_path), 2);
    vikt_set_training(third, 0);
    run_mlp(third, x, got);
    assert_memory_equal(got, want, sizeof want);
    vikt_model_destroy(third);
    vikt_model_destroy(fresh);
    vikt_model_destroy(m);
    unlink(base_path);
    unlink(lora_path);
}

/* A file in PEFT's layout: "base_model.model." names, float32. */
static void loads_peft_names(void **state) {
    (void)state;
    char path[128];
    tmp_file("peft.safetensors", path, sizeof path);
    vikt_model *m = mlp_model(9);
    float data[1 * MLP_IN + 6 * 1];
    for (int i = 0; i < 14; i++) data[i] = (float)(i + 1) / 8.0f;
    write_st(path,
             "{\"__metadata__\":{\"format\":\"pt\",\"vikt.lora.fc1\":\"rank=1 alpha=0x1p+1 dropout=0x0p+0\"},"
             "\"base_model.model.fc1.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,8],"
             "\"data_offsets\":[0,32]},"
             "\"base_model.model.fc1.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[6,1],"
             "\"data_offsets\":[32,56]}}",
             data, 14);
    assert_int_equal(vikt_lora_load(m, path), 1);
    assert_memory_equal(vikt_tensor_data(param(m, "fc1.lora_A.weight")), data, 8 * sizeof(float));
    assert_memory_equal(vikt_tensor_data(param(m, "fc1.lora_B.weight")), data + 8,
                        6 * sizeof(float));
    vikt_model_destroy(m);
    unlink(path);
}

/* A load that fails leaves the model exactly as it was. */
static void expect_load_error(vikt_model *m, const char *path, int err, const char *needle) {
    int64_t nparams = vikt_param_count(m), trainable = vikt_model_num_trainable(m);
    assert_int_equal(vikt_lora_load(m, path), err);
    vt_expect_error(m, err, "vikt_lora_load", needle);
    assert_int_equal(vikt_param_count(m), nparams);
    assert_int_equal(vikt_model_num_trainable(m), trainable);
}

static void load_errors(void **state) {
    (void)state;
    char path[128], good[128];
    tmp_file("bad.safetensors", path, sizeof path);
    tmp_file("good.safetensors", good, sizeof good);
    float zeros[64] = {0};
    vikt_model *src = mlp_model(10);
    assert_int_equal(vikt_lora_attach(src, "", 2, 2.0f, 0.0f), 2);
    assert_int_equal(vikt_lora_save(src, good), VIKT_OK);

    vikt_model *m = mlp_model(10);
    assert_int_equal(vikt_lora_load(NULL, good), VIKT_ERR_NULL);
    assert_int_equal(vikt_lora_load(m, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_lora_load", "path");
    tmp_file("absent.safetensors", path, sizeof path);
    expect_load_error(m, path, VIKT_ERR_IO, "absent.safetensors");
    tmp_file("bad.safetensors", path, sizeof path);
    /* A whole model, not adapters. */
    assert_int_equal(vikt_save(src, path), VIKT_OK);
    expect_load_error(m, path, VIKT_ERR_FORMAT, "no LoRA adapter");
    /* A layer the model lacks. */
    vikt_model *small = vt_model(1);
    float x[MLP_N * MLP_IN];
    mlp_input(x);
    vikt_step_begin(small);
    assert_non_null(vikt_dense(small, "fc1", vikt_input(small, 2, SHAPE(MLP_N, MLP_IN), x), 6));
    expect_load_error(small, good, VIKT_ERR_NOT_FOUND, "fc2");
    assert_null(vikt_param_find(small, "fc1.lora_A.weight")); /* fc1 was not attached either */
    vikt_model_destroy(small);
    /* Rank mismatch with an attached adapter, and a merged one. */
    assert_int_equal(vikt_lora_attach(m, "fc2", 3, 2.0f, 0.0f), 1);
    expect_load_error(m, good, VIKT_ERR_SHAPE, "rank 3");
    vikt_model *merged = mlp_model(10);
    assert_int_equal(vikt_lora_attach(merged, "fc1", 2, 2.0f, 0.0f), 1);
    assert_int_equal(vikt_lora_merge(merged), 1);
    expect_load_error(merged, good, VIKT_ERR_STATE, "unmerge");
    vikt_model_destroy(merged);
    vikt_model_destroy(m);
    m = mlp_model(10);
    /* Shapes that do not fit the layer or the rank. */
    write_st(path,
             "{\"__metadata__\":{\"vikt.lora.fc1\":\"rank=1 alpha=0x1p+1 dropout=0x0p+0\"},"
             "\"fc1.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,7],\"data_offsets\":[0,28]},"
             "\"fc1.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[6,1],\"data_offsets\":[28,52]}}",
             zeros, 13);
    expect_load_error(m, path, VIKT_ERR_SHAPE, "1x8");
    write_st(path,
             "{\"__metadata__\":{\"vikt.lora.fc1\":\"rank=2 alpha=0x1p+1 dropout=0x0p+0\"},"
             "\"fc1.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]},"
             "\"fc1.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[6,1],\"data_offsets\":[32,56]}}",
             zeros, 14);
    expect_load_error(m, path, VIKT_ERR_SHAPE, "2x8");
    /* A weight without a bias is no dense layer (an embedding, a router). */
    assert_non_null(vikt_param(m, "embed.weight", 2, SHAPE(6, 8), VIKT_INIT_ZEROS));
    write_st(path,
             "{\"__metadata__\":{\"vikt.lora.embed\":\"rank=1 alpha=0x1p+1 dropout=0x0p+0\"},"
             "\"embed.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]},"
             "\"embed.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[6,1],\"data_offsets\":[32,56]}}",
             zeros, 14);
    expect_load_error(m, path, VIKT_ERR_NOT_FOUND, "embed");
    assert_int_equal(vikt_lora_attach(m, "embed", 1, 1, 0), VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_lora_attach", "embed");
    /* A tensor missing, one too many, a bad configuration. */
    write_st(path,
             "{\"__metadata__\":{\"vikt.lora.fc1\":\"rank=1 alpha=0x1p+1 dropout=0x0p+0\"},"
             "\"fc1.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]}}",
             zeros, 8);
    expect_load_error(m, path, VIKT_ERR_FORMAT, "lora_B.weight");
    write_st(path,
             "{\"__metadata__\":{\"vikt.lora.fc1\":\"rank=1 alpha=0x1p+1 dropout=0x0p+0\"},"
             "\"fc1.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]},"
             "\"fc1.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[6,1],\"data_offsets\":[32,56]},"
             "\"extra\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[56,60]}}",
             zeros, 15);
    expect_load_error(m, path, VIKT_ERR_FORMAT, "extra");
    /* Decimal spellings (the format before the hexadecimal one, with '.' or
     * the ',' of a comma-decimal locale) are refused as any other text. */
    const char *configs[] = {"rank=0 alpha=0x1p+1 dropout=0x0p+0", "rank=1 alpha=-0x1p+1 dropout=0x0p+0",
                             "rank=1 alpha=0x1p+1 dropout=0x1p+0", "rank=1 alpha=0x1p+1",
                             "rank=1 alpha=0x1p+1 dropout=0x0p+0 x", "r=1",
                             "rank=1 alpha=2 dropout=0", "rank=1 alpha=1.5 dropout=0x0p+0",
                             "rank=1 alpha=1,5 dropout=0x0p+0", "rank=01 alpha=0x1p+1 dropout=0x0p+0",
                             "rank=1 alpha=0x1P+1 dropout=0x0p+0", "rank=1 alpha=inf dropout=0x0p+0",
                             "rank=1 alpha=0x1p+1  dropout=0x0p+0",
                             "rank=99999999999999999999 alpha=0x1p+1 dropout=0x0p+0"};
    for (int i = 0; i < (int)(sizeof configs / sizeof *configs); i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"__metadata__\":{\"vikt.lora.fc1\":\"%s\"},"
                 "\"fc1.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]},"
                 "\"fc1.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[6,1],"
                 "\"data_offsets\":[32,56]}}",
                 configs[i]);
        write_st(path, json, zeros, 14);
        expect_load_error(m, path, VIKT_ERR_FORMAT, "vikt.lora.fc1");
    }
    /* A corrupted value: the CRC32C catches it before anything changes. */
    size_t n;
    unsigned char *bytes = vt_read_file(good, &n);
    bytes[n - 1] ^= 0x40;
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    free(bytes);
    expect_load_error(m, path, VIKT_ERR_FORMAT, NULL);
    assert_null(vikt_param_find(m, "fc1.lora_A.weight"));
    vikt_model_destroy(m);
    vikt_model_destroy(src);
    unlink(path);
    unlink(good);
}

static void attach_errors(void **state) {
    (void)state;
    assert_int_equal(vikt_lora_attach(NULL, "fc1", 2, 1, 0), VIKT_ERR_NULL);
    assert_int_equal(vikt_adapter_attach(NULL, "fc1", 2, VIKT_ACT_RELU), VIKT_ERR_NULL);
    assert_int_equal(vikt_lora_merge(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_lora_unmerge(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_lora_save(NULL, "x"), VIKT_ERR_NULL);
    vikt_model *m = mlp_model(11);
    int64_t nparams = vikt_param_count(m);
    assert_int_equal(vikt_lora_attach(m, NULL, 2, 1, 0), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_lora_attach", "pattern");
    assert_int_equal(vikt_lora_attach(m, "fc1", 0, 1, 0), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_lora_attach", "rank >= 1");
    assert_int_equal(vikt_lora_attach(m, "fc1", 2, 0, 0), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_lora_attach", "alpha");
    assert_int_equal(vikt_lora_attach(m, "fc1", 2, NAN, 0), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_lora_attach", NULL);
    assert_int_equal(vikt_lora_attach(m, "fc1", 2, 1, 1.0f), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_lora_attach", "dropout");
    /* A prefix is a module path: "fc" is not "fc1". */
    assert_int_equal(vikt_lora_attach(m, "fc", 2, 1, 0), VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_lora_attach", "'fc'");
    assert_int_equal(vikt_adapter_attach(m, "fc3", 2, VIKT_ACT_RELU), VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_adapter_attach", "fc3");
    assert_int_equal(vikt_adapter_attach(m, "fc1", 0, VIKT_ACT_RELU), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_adapter_attach", "bottleneck");
    assert_int_equal(vikt_adapter_attach(m, "fc1", 2, (vikt_activation)7), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_adapter_attach", NULL);
    assert_int_equal(vikt_lora_save(m, "unused"), VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_lora_save", "no LoRA");
    assert_int_equal(vikt_param_count(m), nparams);
    assert_int_equal(vikt_model_num_trainable(m), vikt_model_num_params(m)); /* nothing frozen */
    /* An existing A of another shape, then attaching twice: all or nothing. */
    assert_non_null(vikt_param(m, "fc2.lora_A.weight", 2, SHAPE(5, 6), VIKT_INIT_ZEROS));
    nparams = vikt_param_count(m);
    assert_int_equal(vikt_lora_attach(m, "", 2, 1, 0), VIKT_ERR_SHAPE);
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_lora_attach", "fc2.lora_A.weight");
    assert_int_equal(vikt_param_count(m), nparams);
    assert_null(vikt_param_find(m, "fc1.lora_A.weight"));
    assert_int_equal(vikt_lora_attach(m, "fc1", 2, 1, 0), 1);
    assert_int_equal(vikt_lora_attach(m, "fc1", 2, 1, 0), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_lora_attach", "already");
    assert_int_equal(vikt_adapter_attach(m, "fc1", 2, VIKT_ACT_RELU), 1);
    assert_int_equal(vikt_adapter_attach(m, "fc1", 2, VIKT_ACT_RELU), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_adapter_attach", "already");
    /* An adapter's own projections are not dense layers to adapt. */
    assert_int_equal(vikt_lora_attach(m, "fc1.adapter", 2, 1, 0), VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_lora_attach", NULL);
    assert_int_equal(vikt_lora_save(m, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_lora_save", "path");
    vikt_model_destroy(m);
}

/* A pruned weight cannot take a merge. */
static void merge_refuses_pruned(void **state) {
    (void)state;
    vikt_model *m = mlp_model(12);
    assert_int_equal(vikt_prune_magnitude(m, "fc1.weight", 0.5, VIKT_PRUNE_PER_TENSOR), 1);
    assert_int_equal(vikt_lora_attach(m, "fc1", 2, 1, 0), 1);
    float *w = copy_of(param(m, "fc1.weight"));
    assert_int_equal(vikt_lora_merge(m), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_lora_merge", "pruned");
    assert_memory_equal(w, vikt_tensor_data(param(m, "fc1.weight")), 48 * sizeof(float));
    free(w);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------ out of memory */

static void out_of_memory(void **state) {
    (void)state;
    char base_path[128], lora_path[128];
    tmp_file("oom-base.safetensors", base_path, sizeof base_path);
    tmp_file("oom-lora.safetensors", lora_path, sizeof lora_path);
    vikt_model *src = mlp_model(13);
    assert_int_equal(vikt_save(src, base_path), VIKT_OK);
    assert_int_equal(vikt_lora_attach(src, "", 2, 2.0f, 0.0f), 2);
    set_values(param(src, "fc2.lora_B.weight"), 9, -1, 1);
    assert_int_equal(vikt_lora_save(src, lora_path), VIKT_OK);
    for (int op = 0; op < 5; op++) {
        int done = 0;
        for (int64_t n = 1; n < 500 && !done; n++) {
            vikt_model *m = vt_model(13);
            assert_int_equal(vikt_load(m, base_path, VIKT_LOAD_STRICT), VIKT_OK);
            if (op >= 3) assert_int_equal(vikt_lora_attach(m, "", 2, 2.0f, 0.0f), 2);
            int64_t nparams = vikt_param_count(m), trainable = vikt_model_num_trainable(m);
            vt_stats.fail_at = vt_stats.calls + n;
            int64_t rc = op == 0   ? vikt_lora_attach(m, "", 2, 2.0f, 0.0f)
                         : op == 1 ? vikt_adapter_attach(m, "", 3, VIKT_ACT_RELU)
                         : op == 2 ? vikt_lora_load(m, lora_path)
                         : op == 3 ? vikt_lora_save(m, lora_path)
                                   : vikt_lora_merge(m);
            vt_stats.fail_at = 0;
            if (rc >= 0) {
                done = 1;
            } else {
                assert_int_equal(rc, VIKT_ERR_NOMEM);
                vt_expect_error(m, VIKT_ERR_NOMEM, NULL, NULL);
                assert_int_equal(vikt_param_count(m), nparams);
                assert_int_equal(vikt_model_num_trainable(m), trainable);
            }
            vikt_model_destroy(m);
        }
        if (!done) fail_msg("op %d never succeeded", op);
    }
    vikt_model_destroy(src);
    unlink(base_path);
    unlink(lora_path);
    rmdir(tmp_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(attach_leaves_the_forward_unchanged),
        cmocka_unit_test(attach_creates_peft_parameters),
        cmocka_unit_test(lora_matches_pytorch),
        cmocka_unit_test(adapter_matches_pytorch),
        cmocka_unit_test(gradients_check),
        cmocka_unit_test(only_adapters_change),
        cmocka_unit_test(trainable_counts),
        cmocka_unit_test(merge_and_unmerge),
        cmocka_unit_test(dropout_only_in_training),
        cmocka_unit_test(rank1_input),
        cmocka_unit_test(adapters_round_trip),
        cmocka_unit_test(loads_peft_names),
        cmocka_unit_test(load_errors),
        cmocka_unit_test(attach_errors),
        cmocka_unit_test(merge_refuses_pruned),
        cmocka_unit_test(out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
