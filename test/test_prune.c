/* Magnitude pruning: thresholds against a sort done here, exact counts and
 * ties, which tensors a pattern selects, masks holding through 20 steps of
 * every optimizer, the cubic schedule against its formula, masks through
 * save and load (and malformed mask metadata), the report, removal, and
 * out of memory. */
#define _POSIX_C_SOURCE 200809L

#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static vikt_tensor *param_2d(vikt_model *m, const char *name, int64_t rows, int64_t cols,
                             uint32_t seed) {
    vikt_tensor *t = vikt_param(m, name, 2, (int64_t[]){rows, cols}, VIKT_INIT_ZEROS);
    assert_non_null(t);
    vt_fill(vikt_tensor_data(t), rows * cols, seed, -1.0f, 1.0f);
    return t;
}

static vikt_tensor *param_1d(vikt_model *m, const char *name, int64_t n, uint32_t seed) {
    vikt_tensor *t = vikt_param(m, name, 1, (int64_t[]){n}, VIKT_INIT_ZEROS);
    assert_non_null(t);
    vt_fill(vikt_tensor_data(t), n, seed, -1.0f, 1.0f);
    return t;
}

/* The reference: sort (tensor, index) by |w|, then tensor, then index. */
typedef struct entry {
    float mag;
    int tensor;
    int64_t index;
} entry;

static int by_magnitude(const void *pa, const void *pb) {
    const entry *a = pa, *b = pb;
    if (a->mag != b->mag) return a->mag < b->mag ? -1 : 1;
    if (a->tensor != b->tensor) return a->tensor < b->tensor ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Expected masks (1 kept) of n tensors pruned together by `count` values. */
static void reference_masks(vikt_tensor **ts, const float *const *before, int n, int64_t count,
                            uint8_t **want) {
    int64_t total = 0;
    for (int t = 0; t < n; t++) total += vikt_tensor_numel(ts[t]);
    entry *all = malloc((size_t)total * sizeof *all);
    int64_t k = 0;
    for (int t = 0; t < n; t++)
        for (int64_t i = 0; i < vikt_tensor_numel(ts[t]); i++)
            all[k++] = (entry){fabsf(before[t][i]), t, i};
    qsort(all, (size_t)total, sizeof *all, by_magnitude);
    for (int t = 0; t < n; t++) memset(want[t], 1, (size_t)vikt_tensor_numel(ts[t]));
    for (int64_t j = 0; j < count; j++) want[all[j].tensor][all[j].index] = 0;
    free(all);
}

/* The tensor's mask equals want, its masked values are +0.0f and the others
 * are as before. */
static void expect_pruned(vikt_tensor *t, const uint8_t *want, const float *before) {
    const uint8_t *mask = vikt_prune_mask(t);
    assert_non_null(mask);
    const float *x = vikt_tensor_data(t);
    for (int64_t i = 0; i < vikt_tensor_numel(t); i++) {
        assert_int_equal(mask[i], want[i]);
        if (want[i]) {
            assert_memory_equal(&x[i], &before[i], sizeof(float));
        } else {
            assert_true(x[i] == 0.0f && !signbit(x[i]));
        }
    }
}

static float *copy_of(vikt_tensor *t) {
    size_t bytes = (size_t)vikt_tensor_numel(t) * sizeof(float);
    float *c = malloc(bytes);
    memcpy(c, vikt_tensor_data(t), bytes);
    return c;
}

static int64_t masked_count(vikt_tensor *t) {
    const uint8_t *mask = vikt_prune_mask(t);
    int64_t n = 0;
    for (int64_t i = 0; mask && i < vikt_tensor_numel(t); i++) n += !mask[i];
    return n;
}

/* ----------------------------------------------------------- thresholds */

static void per_tensor_matches_a_sort(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w[2] = {param_2d(m, "a.weight", 6, 7, 11), param_2d(m, "b.weight", 5, 4, 12)};
    vikt_tensor *bias = param_1d(m, "a.bias", 6, 13);
    float *before[2] = {copy_of(w[0]), copy_of(w[1])}, *bias_before = copy_of(bias);
    assert_int_equal(vikt_prune_magnitude(m, NULL, 0.5, VIKT_PRUNE_PER_TENSOR), 2);
    /* 0.5·42 = 21 and 0.5·20 = 10 values. */
    int64_t counts[2] = {21, 10};
    for (int t = 0; t < 2; t++) {
        uint8_t want[42];
        uint8_t *wants[1] = {want};
        reference_masks(&w[t], (const float *const *)&before[t], 1, counts[t], wants);
        expect_pruned(w[t], want, before[t]);
        assert_int_equal(masked_count(w[t]), counts[t]);
    }
    assert_null(vikt_prune_mask(bias));
    assert_memory_equal(vikt_tensor_data(bias), bias_before, 6 * sizeof(float));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    free(before[0]), free(before[1]), free(bias_before);
    vikt_model_destroy(m);
}

static void global_matches_a_sort(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w[3] = {param_2d(m, "a.weight", 6, 7, 21), param_2d(m, "b.weight", 5, 4, 22),
                         vikt_param(m, "c.weight", 3, (int64_t[]){2, 3, 3}, VIKT_INIT_ZEROS)};
    vt_fill(vikt_tensor_data(w[2]), 18, 23, -3.0f, 3.0f); /* larger: pruned less */
    param_1d(m, "a.bias", 6, 24);
    float *before[3] = {copy_of(w[0]), copy_of(w[1]), copy_of(w[2])};
    assert_int_equal(vikt_prune_magnitude(m, NULL, 0.7, VIKT_PRUNE_GLOBAL), 3);
    uint8_t want0[42], want1[20], want2[18];
    uint8_t *wants[3] = {want0, want1, want2};
    reference_masks(w, (const float *const *)before, 3, 56, wants); /* round(0.7·80) */
    int64_t total = 0;
    for (int t = 0; t < 3; t++) {
        expect_pruned(w[t], wants[t], before[t]);
        total += masked_count(w[t]);
        free(before[t]);
    }
    assert_int_equal(total, 56);
    /* The tensors end at different sparsities: that is the point of global. */
    assert_true(masked_count(w[2]) * 80 < 56 * 18);
    vikt_model_destroy(m);
}

/* Equal magnitudes go by position (sign ignored), the count rounds half to
 * even, and across tensors the earlier parameter goes first. */
static void ties_and_rounding(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = vikt_param(m, "a", 2, (int64_t[]){2, 5}, VIKT_INIT_ONES);
    vikt_tensor *b = vikt_param(m, "b", 2, (int64_t[]){1, 2}, VIKT_INIT_ONES);
    for (int i = 0; i < 10; i += 2) vikt_tensor_data(a)[i] = -1.0f;
    assert_int_equal(vikt_prune_magnitude(m, "a", 0.35, VIKT_PRUNE_PER_TENSOR), 1);
    uint8_t want[10] = {0, 0, 0, 0, 1, 1, 1, 1, 1, 1}; /* 3.5 rounds to 4 */
    assert_memory_equal(vikt_prune_mask(a), want, 10);
    assert_null(vikt_prune_mask(b));
    vikt_prune_remove(m, NULL);
    vikt_tensor_fill(a, 1.0f);
    assert_int_equal(vikt_prune_magnitude(m, "a", 0.25, VIKT_PRUNE_PER_TENSOR), 1);
    assert_int_equal(masked_count(a), 2); /* 2.5 rounds to 2 */
    vikt_prune_remove(m, NULL);
    vikt_tensor_fill(a, 1.0f);
    /* Global over 12 equal values, 11 pruned: all of a, then b[0]. */
    assert_int_equal(vikt_prune_magnitude(m, NULL, 11.0 / 12, VIKT_PRUNE_GLOBAL), 2);
    assert_int_equal(masked_count(a), 10);
    assert_int_equal(vikt_prune_mask(b)[0], 0);
    assert_int_equal(vikt_prune_mask(b)[1], 1);
    /* Sparsity 1 and 0. */
    assert_int_equal(vikt_prune_magnitude(m, NULL, 1.0, VIKT_PRUNE_PER_TENSOR), 2);
    assert_int_equal(masked_count(b), 2);
    vikt_prune_remove(m, NULL);
    assert_int_equal(vikt_prune_magnitude(m, NULL, 0.0, VIKT_PRUNE_GLOBAL), 2);
    assert_non_null(vikt_prune_mask(a));
    assert_int_equal(masked_count(a), 0);
    vikt_model_destroy(m);
}

/* NaN is larger than every number; Inf is kept over finite values. */
static void nan_and_inf_are_kept(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = vikt_param(m, "a", 2, (int64_t[]){1, 5}, VIKT_INIT_ZEROS);
    float *x = vikt_tensor_data(a);
    x[0] = NAN, x[1] = 3.0f, x[2] = -INFINITY, x[3] = -0.5f, x[4] = 2.0f;
    vikt_prune_magnitude(m, NULL, 0.6, VIKT_PRUNE_PER_TENSOR);
    uint8_t want[5] = {1, 0, 1, 0, 0};
    assert_memory_equal(vikt_prune_mask(a), want, 5);
    vikt_prune_magnitude(m, NULL, 0.8, VIKT_PRUNE_PER_TENSOR);
    assert_int_equal(vikt_prune_mask(a)[0], 1);
    assert_int_equal(vikt_prune_mask(a)[2], 0);
    assert_true(isnan(x[0]));
    vikt_model_destroy(m);
}

/* Values already masked stay masked and count first, even where unmasked
 * values have since become zero; a lower target changes nothing. */
static void repruning_keeps_masks(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = vikt_param(m, "a", 2, (int64_t[]){2, 3}, VIKT_INIT_ZEROS);
    float *x = vikt_tensor_data(a);
    const float init[6] = {7, 8, 1, 2, 9, 3};
    memcpy(x, init, sizeof init);
    vikt_prune_magnitude(m, "a", 1.0 / 3, VIKT_PRUNE_PER_TENSOR);
    uint8_t first[6] = {1, 1, 0, 0, 1, 1};
    assert_memory_equal(vikt_prune_mask(a), first, 6);
    x[0] = 0.0f, x[1] = 0.0f; /* kept values that became zero, at lower indices */
    vikt_prune_magnitude(m, "a", 0.5, VIKT_PRUNE_PER_TENSOR);
    uint8_t second[6] = {0, 1, 0, 0, 1, 1};
    assert_memory_equal(vikt_prune_mask(a), second, 6);
    assert_int_equal(vikt_prune_magnitude(m, "a", 0.2, VIKT_PRUNE_GLOBAL), 1);
    assert_memory_equal(vikt_prune_mask(a), second, 6);
    x[5] = 0.5f;
    vikt_prune_magnitude(m, "a", 4.0 / 6, VIKT_PRUNE_GLOBAL);
    uint8_t third[6] = {0, 0, 0, 0, 1, 1}; /* x[1] = 0 < x[5] = 0.5 */
    assert_memory_equal(vikt_prune_mask(a), third, 6);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------------ selection */

static void patterns_select_weights(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *fc1w = param_2d(m, "fc1.weight", 4, 4, 1);
    vikt_tensor *fc1b = param_1d(m, "fc1.bias", 4, 2);
    vikt_tensor *fc10w = param_2d(m, "fc10.weight", 4, 4, 3);
    vikt_tensor *bnw = param_1d(m, "bn.weight", 4, 4);
    vikt_tensor *running = vikt_buffer(m, "bn.stats", 2, (int64_t[]){2, 2}, 0.5f);
    assert_int_equal(vikt_prune_magnitude(m, "fc1", 0.5, VIKT_PRUNE_PER_TENSOR), 1);
    assert_non_null(vikt_prune_mask(fc1w));
    assert_null(vikt_prune_mask(fc1b));
    assert_null(vikt_prune_mask(fc10w));
    assert_int_equal(vikt_prune_magnitude(m, "fc1.bias", 0.5, VIKT_PRUNE_PER_TENSOR), 1);
    assert_int_equal(masked_count(fc1b), 2);
    assert_int_equal(vikt_prune_magnitude(m, "bn", 0.5, VIKT_PRUNE_PER_TENSOR),
                     VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_prune_magnitude", "'bn'");
    assert_int_equal(vikt_prune_magnitude(m, "nope", 0.5, VIKT_PRUNE_PER_TENSOR),
                     VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "nope", NULL);
    assert_int_equal(vikt_prune_magnitude(m, "", 0.5, VIKT_PRUNE_GLOBAL), 2);
    assert_null(vikt_prune_mask(bnw));
    assert_null(vikt_prune_mask(running));
    assert_float_equal(vikt_tensor_data(running)[0], 0.5f, 0);
    int64_t zeros = -1, numel = -1;
    assert_int_equal(vikt_prune_count(m, NULL, &zeros, &numel), 2);
    assert_int_equal(numel, 32);
    assert_int_equal(zeros, 16);
    assert_int_equal(vikt_prune_count(m, "fc1.bias", &zeros, NULL), 1);
    assert_int_equal(zeros, 2);
    assert_int_equal(vikt_prune_count(m, "bn", NULL, NULL), VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_prune_count", NULL);
    /* A model without weights. */
    vikt_model *empty = vt_model(1);
    assert_int_equal(vikt_prune_magnitude(empty, NULL, 0.5, 0), VIKT_ERR_NOT_FOUND);
    vt_expect_error(empty, VIKT_ERR_NOT_FOUND, "rank >= 2", NULL);
    /* An empty weight is selected and gets no mask. */
    vikt_param(empty, "e", 2, (int64_t[]){0, 3}, VIKT_INIT_ZEROS);
    assert_int_equal(vikt_prune_magnitude(empty, NULL, 0.5, 0), 1);
    assert_null(vikt_prune_mask(vikt_param_find(empty, "e")));
    vikt_model_destroy(empty);
    vikt_model_destroy(m);
}

static void bad_arguments(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w = param_2d(m, "w", 3, 3, 1);
    float *before = copy_of(w);
    assert_int_equal(vikt_prune_magnitude(NULL, NULL, 0.5, 0), VIKT_ERR_NULL);
    const double bad[] = {-0.01, 1.01, NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(vikt_prune_magnitude(m, NULL, bad[i], 0), VIKT_ERR_ARG);
        vt_expect_error(m, VIKT_ERR_ARG, "vikt_prune_magnitude", "sparsity");
    }
    assert_int_equal(vikt_prune_magnitude(m, NULL, 0.5, (vikt_prune_scope)2), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "scope 2", NULL);
    assert_null(vikt_prune_mask(w));
    assert_memory_equal(vikt_tensor_data(w), before, 9 * sizeof(float));
    assert_null(vikt_prune_mask(NULL));
    assert_int_equal(vikt_prune_count(NULL, NULL, NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_prune_remove(NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_prune_report(NULL, NULL, 0), VIKT_ERR_NULL);
    assert_int_equal(vikt_prune_report(m, NULL, 5), VIKT_ERR_NULL);
    /* A step tensor has no mask, whatever its memory holds. */
    vikt_tensor *x = vikt_input(m, 1, (int64_t[]){2}, (float[]){0, 1});
    assert_null(vikt_prune_mask(x));
    free(before);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------------- training */

enum { N_IN = 6, N_HID = 8, N_OUT = 3, BATCH = 5 };

static float data_x[BATCH * N_IN];
static int32_t data_y[BATCH];

static int train_step(vikt_model *m, vikt_optimizer *opt) {
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *x = vikt_input(m, 2, (int64_t[]){BATCH, N_IN}, data_x);
    vikt_tensor *h = vikt_relu(m, vikt_dense(m, "fc1", x, N_HID));
    vikt_tensor *loss = vikt_cross_entropy_loss(m, vikt_dense(m, "fc2", h, N_OUT), data_y);
    if (vikt_backward(m, loss)) return -1;
    return vikt_optimizer_step(opt);
}

typedef struct optim_case {
    const char *what;
    vikt_optim_kind kind;
    float lr;
    vikt_optim_param keys[4];
    double values[4];
    int n;
} optim_case;

/* Every masked weight is +0.0f and has a zero gradient after the step. */
static void expect_masked_zero(vikt_model *m, const char *what) {
    for (int64_t k = 0; k < vikt_param_count(m); k++) {
        vikt_tensor *t = vikt_param_at(m, k);
        const uint8_t *mask = vikt_prune_mask(t);
        for (int64_t i = 0; mask && i < vikt_tensor_numel(t); i++) {
            if (mask[i]) continue;
            float v = vikt_tensor_data(t)[i];
            if (v != 0.0f || signbit(v) || vikt_tensor_grad(t)[i] != 0.0f)
                fail_msg("%s: %s[%lld] = %g (grad %g) under the mask", what, vikt_tensor_name(t),
                         (long long)i, (double)v, (double)vikt_tensor_grad(t)[i]);
        }
    }
}

/* Train 5 steps (so momentum and Adam state are non-zero everywhere), prune
 * 60 % globally, train 20 more: masked values stay exactly zero, kept ones
 * still train, and the steps after pruning allocate nothing. */
static void masks_hold_through_every_optimizer(void **state) {
    (void)state;
    vt_fill(data_x, BATCH * N_IN, 5, -1.0f, 1.0f);
    for (int i = 0; i < BATCH; i++) data_y[i] = i % N_OUT;
    const optim_case cases[] = {
        {"SGD momentum 0.9, weight decay 0.1, clip_norm", VIKT_OPTIM_SGD, 0.1f,
         {VIKT_OPT_MOMENTUM, VIKT_OPT_WEIGHT_DECAY, VIKT_OPT_NESTEROV, VIKT_OPT_CLIP_NORM},
         {0.9, 0.1, 1, 0.5}, 4},
        {"Adam, weight decay 0.1, amsgrad", VIKT_OPTIM_ADAM, 0.01f,
         {VIKT_OPT_WEIGHT_DECAY, VIKT_OPT_AMSGRAD}, {0.1, 1}, 2},
        {"AdamW, weight decay 0.5", VIKT_OPTIM_ADAMW, 0.01f, {VIKT_OPT_WEIGHT_DECAY}, {0.5}, 1},
        {"RMSProp centered, momentum 0.5, weight decay 0.1", VIKT_OPTIM_RMSPROP, 0.01f,
         {VIKT_OPT_CENTERED, VIKT_OPT_MOMENTUM, VIKT_OPT_WEIGHT_DECAY}, {1, 0.5, 0.1}, 3},
        {"AdaGrad, weight decay 0.1, clip_value", VIKT_OPTIM_ADAGRAD, 0.1f,
         {VIKT_OPT_WEIGHT_DECAY, VIKT_OPT_CLIP_VALUE}, {0.1, 0.05}, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        vikt_model *m = vt_model(7);
        vikt_optimizer *opt;
        assert_int_equal(vikt_optimizer_create(m, cases[c].kind, cases[c].lr, &opt), VIKT_OK);
        for (int i = 0; i < cases[c].n; i++)
            assert_int_equal(vikt_optimizer_set(opt, cases[c].keys[i], cases[c].values[i]),
                             VIKT_OK);
        for (int s = 0; s < 5; s++) assert_int_equal(train_step(m, opt), VIKT_OK);
        assert_int_equal(vikt_prune_magnitude(m, NULL, 0.6, VIKT_PRUNE_GLOBAL), 2);
        vikt_tensor *w1 = vikt_param_find(m, "fc1.weight"), *w2 = vikt_param_find(m, "fc2.weight");
        float *kept1 = copy_of(w1);
        uint8_t mask1[N_HID * N_IN];
        memcpy(mask1, vikt_prune_mask(w1), sizeof mask1);
        assert_int_equal(train_step(m, opt), VIKT_OK);
        int64_t calls = vt_stats.calls;
        for (int s = 1; s < 20; s++) {
            assert_int_equal(train_step(m, opt), VIKT_OK);
            expect_masked_zero(m, cases[c].what);
        }
        if (vt_stats.calls != calls)
            fail_msg("%s: %lld allocations in steady-state steps", cases[c].what,
                     (long long)(vt_stats.calls - calls));
        assert_memory_equal(vikt_prune_mask(w1), mask1, sizeof mask1);
        assert_int_equal(masked_count(w1) + masked_count(w2), 43); /* round(0.6·72) */
        int moved = 0;
        for (int i = 0; i < N_HID * N_IN; i++)
            moved += mask1[i] && vikt_tensor_data(w1)[i] != kept1[i];
        if (moved == 0) fail_msg("%s: the kept weights did not train", cases[c].what);
        free(kept1);
        vikt_optimizer_destroy(opt);
        vikt_model_destroy(m);
    }
}

/* Frozen parameters are pruned and stay pruned (and unchanged otherwise). */
static void frozen_parameters_are_pruned(void **state) {
    (void)state;
    vt_fill(data_x, BATCH * N_IN, 6, -1.0f, 1.0f);
    for (int i = 0; i < BATCH; i++) data_y[i] = (i + 1) % N_OUT;
    vikt_model *m = vt_model(8);
    vikt_optimizer *opt;
    vikt_adam_create(m, 0.01f, &opt);
    assert_int_equal(train_step(m, opt), VIKT_OK);
    assert_int_equal(vikt_param_freeze(m, "fc1", 1), 2);
    assert_int_equal(vikt_prune_magnitude(m, NULL, 0.5, VIKT_PRUNE_PER_TENSOR), 2);
    vikt_tensor *w1 = vikt_param_find(m, "fc1.weight");
    assert_int_equal(masked_count(w1), 24);
    float *after_prune = copy_of(w1);
    for (int s = 0; s < 5; s++) assert_int_equal(train_step(m, opt), VIKT_OK);
    assert_memory_equal(vikt_tensor_data(w1), after_prune, sizeof(float) * N_HID * N_IN);
    int64_t zeros;
    vikt_prune_count(m, "fc1.weight", &zeros, NULL);
    assert_int_equal(zeros, 24);
    free(after_prune);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

/* Dropping the masks keeps the zeros but lets them train again. */
static void remove_makes_pruning_permanent(void **state) {
    (void)state;
    vt_fill(data_x, BATCH * N_IN, 9, -1.0f, 1.0f);
    for (int i = 0; i < BATCH; i++) data_y[i] = i % N_OUT;
    vikt_model *m = vt_model(9);
    vikt_optimizer *opt;
    vikt_sgd_create(m, 0.1f, &opt);
    assert_int_equal(train_step(m, opt), VIKT_OK);
    assert_int_equal(vikt_prune_remove(m, NULL), 0);
    vikt_prune_magnitude(m, NULL, 0.5, VIKT_PRUNE_PER_TENSOR);
    assert_int_equal(vikt_prune_remove(m, "nope"), VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_prune_remove", "'nope'");
    assert_int_equal(vikt_prune_remove(m, "fc1.bias"), 0);
    assert_int_equal(vikt_prune_remove(m, "fc1"), 1);
    vikt_tensor *w1 = vikt_param_find(m, "fc1.weight");
    assert_null(vikt_prune_mask(w1));
    assert_non_null(vikt_prune_mask(vikt_param_find(m, "fc2.weight")));
    int64_t zeros;
    vikt_prune_count(m, "fc1", &zeros, NULL);
    assert_int_equal(zeros, 24);
    for (int s = 0; s < 3; s++) assert_int_equal(train_step(m, opt), VIKT_OK);
    vikt_prune_count(m, "fc1", &zeros, NULL);
    assert_true(zeros < 24);
    vikt_prune_count(m, "fc2", &zeros, NULL);
    assert_int_equal(zeros, 12);
    assert_int_equal(vikt_prune_remove(m, NULL), 1);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------------- schedule */

static double cubic(double si, double sf, double frac) {
    return sf + (si - sf) * pow(1.0 - frac, 3);
}

static void schedule_follows_the_formula(void **state) {
    (void)state;
    const double si = 0.1, sf = 0.9;
    const int64_t t0 = 10, dt = 5, n = 8;
    double s = -1;
    struct {
        int64_t step;
        int at;
        double frac; /* (t_j - t0) / (n·dt), or -1 for 0 sparsity */
    } cases[] = {{0, 0, -1},  {9, 0, -1},      {10, 1, 0},       {11, 0, 0},
                 {15, 1, 0.125}, {24, 0, 0.25}, {25, 1, 0.375}, {47, 0, 0.875},
                 {50, 1, 1.0}, {55, 0, 1.0},   {1000, 0, 1.0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = vikt_prune_schedule(NULL, cases[i].step, si, sf, t0, dt, n, &s);
        assert_int_equal(rc, cases[i].at);
        double want = cases[i].frac < 0 ? 0.0 : cubic(si, sf, cases[i].frac);
        if (fabs(s - want) > 1e-15)
            fail_msg("step %lld: %.17g, want %.17g", (long long)cases[i].step, s, want);
    }
    assert_int_equal(vikt_prune_schedule(NULL, 10, si, sf, t0, dt, n, &s), 1);
    assert_true(s == si);
    assert_int_equal(vikt_prune_schedule(NULL, 50, si, sf, t0, dt, n, &s), 1);
    assert_true(s == sf);

    vikt_model *m = vt_model(1);
    const struct {
        int64_t step, begin, every, count;
        double si, sf;
        const char *needle;
    } bad[] = {{0, 0, 1, 1, -0.1, 0.5, "initial"}, {0, 0, 1, 1, NAN, 0.5, "initial"},
               {0, 0, 1, 1, 0.5, 0.4, "final"},    {0, 0, 1, 1, 0.5, 1.5, "final"},
               {0, 0, 1, 1, 0.0, NAN, "final"},    {-1, 0, 1, 1, 0, 1, "step >= 0"},
               {0, -1, 1, 1, 0, 1, "begin"},       {0, 0, 0, 1, 0, 1, "every"},
               {0, 0, 1, 0, 0, 1, "count"},        {0, 5, INT64_MAX / 2, 2, 0, 1, "overflows"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = -7;
        assert_int_equal(vikt_prune_schedule(m, bad[i].step, bad[i].si, bad[i].sf, bad[i].begin,
                                             bad[i].every, bad[i].count, &s),
                         VIKT_ERR_ARG);
        vt_expect_error(m, VIKT_ERR_ARG, "vikt_prune_schedule", bad[i].needle);
        assert_true(s == -7);
        assert_int_equal(vikt_prune_schedule(NULL, bad[i].step, bad[i].si, bad[i].sf,
                                             bad[i].begin, bad[i].every, bad[i].count, &s),
                         VIKT_ERR_ARG);
    }
    assert_int_equal(vikt_prune_schedule(m, 0, 0, 1, 0, 1, 1, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "sparsity", NULL);
    assert_int_equal(vikt_prune_schedule(NULL, 0, 0, 1, 0, 1, 1, NULL), VIKT_ERR_NULL);
    vikt_model_destroy(m);
}

/* The schedule driving the pruning: at each pruning step the count is
 * exactly round(s_t·n), and the masks only grow. */
static void gradual_pruning(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w = param_2d(m, "w", 10, 10, 3);
    uint8_t last[100];
    memset(last, 1, sizeof last);
    int prunes = 0;
    for (int64_t step = 0; step < 40; step++) {
        double s;
        if (vikt_prune_schedule(m, step, 0.0, 0.8, 4, 3, 6, &s) != 1) continue;
        prunes++;
        assert_int_equal(vikt_prune_magnitude(m, NULL, s, VIKT_PRUNE_PER_TENSOR), 1);
        double x = s * 100, f = floor(x);
        int64_t want = (int64_t)f + (x - f > 0.5 || (x - f == 0.5 && ((int64_t)f & 1)));
        assert_int_equal(masked_count(w), want);
        const uint8_t *mask = vikt_prune_mask(w);
        for (int i = 0; i < 100; i++) assert_true(mask[i] <= last[i]);
        memcpy(last, mask, sizeof last);
        vt_fill(vikt_tensor_data(w), 100, (uint32_t)step, -1.0f, 1.0f); /* "training" */
    }
    assert_int_equal(prunes, 7);
    assert_int_equal(masked_count(w), 80);
    vikt_model_destroy(m);
}

/* ----------------------------------------------------------- save / load */

static char tmp_path[64];

static const char *tmp_file(void) {
    char dir[48];
    snprintf(dir, sizeof dir, "%s/vikt-prune-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(tmp_path, sizeof tmp_path, "%s/m.safetensors", dir);
    return tmp_path;
}

static void tmp_remove(void) {
    unlink(tmp_path);
    char *slash = strrchr(tmp_path, '/');
    *slash = '\0';
    rmdir(tmp_path);
}

/* The documented encoding, written independently of the library. */
static void base64_bitmap(const uint8_t *mask, int64_t n, char *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char bytes[64] = {0};
    int64_t nb = (n + 7) / 8;
    for (int64_t i = 0; i < n; i++) bytes[i / 8] |= (unsigned char)(mask[i] << (i % 8));
    int64_t o = 0;
    for (int64_t j = 0; j < nb; j += 3) {
        unsigned v = (unsigned)bytes[j] << 16 | (unsigned)bytes[j + 1] << 8 | bytes[j + 2];
        int64_t chars = nb - j >= 3 ? 4 : nb - j + 1;
        for (int c = 0; c < 4; c++) out[o++] = c < chars ? abc[(v >> (18 - 6 * c)) & 63] : '=';
    }
    out[o] = '\0';
}

static unsigned char *find_bytes(unsigned char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return hay + i;
    return NULL;
}

static vikt_model *pruned_model(void) {
    vikt_model *m = vt_model(4);
    param_2d(m, "fc1.weight", 4, 5, 31); /* 20 values: 3 bitmap bytes, no padding */
    param_1d(m, "fc1.bias", 4, 32);
    param_2d(m, "fc2.weight", 2, 5, 33); /* 10 values: 2 bytes, one '=' */
    assert_int_equal(vikt_prune_magnitude(m, NULL, 0.5, VIKT_PRUNE_PER_TENSOR), 2);
    return m;
}

/* A checkpoint carries the masks as vikt_save does, inside its metadata
 * CRC: a pruned run resumes pruned. */
static void masks_survive_checkpoints(void **state) {
    (void)state;
    const char *path = tmp_file();
    vikt_model *m = pruned_model();
    vikt_optimizer *opt;
    assert_int_equal(vikt_adam_create(m, 0.01f, &opt), VIKT_OK);
    assert_int_equal(vikt_checkpoint_save(m, opt, path), VIKT_OK);
    vikt_model *g = vt_model(7);
    vikt_optimizer *gopt;
    assert_int_equal(vikt_adam_create(g, 0.5f, &gopt), VIKT_OK);
    assert_int_equal(vikt_checkpoint_load(g, gopt, path), VIKT_OK);
    const char *names[2] = {"fc1.weight", "fc2.weight"};
    for (int t = 0; t < 2; t++) {
        vikt_tensor *a = vikt_param_find(m, names[t]), *b = vikt_param_find(g, names[t]);
        assert_non_null(vikt_prune_mask(b));
        assert_memory_equal(vikt_prune_mask(a), vikt_prune_mask(b), vikt_tensor_numel(a));
    }
    assert_null(vikt_prune_mask(vikt_param_find(g, "fc1.bias")));
    vikt_optimizer_destroy(gopt);
    vikt_model_destroy(g);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    tmp_remove();
}

static void masks_survive_save_and_load(void **state) {
    (void)state;
    const char *path = tmp_file();
    vikt_model *m = pruned_model();
    assert_int_equal(vikt_save(m, path), VIKT_OK);
    size_t n1, n2;
    unsigned char *first = vt_read_file(path, &n1);
    /* The metadata holds the documented bitmaps. */
    const char *names[2] = {"fc1.weight", "fc2.weight"};
    for (int t = 0; t < 2; t++) {
        vikt_tensor *w = vikt_param_find(m, names[t]);
        char want[128], enc[64];
        base64_bitmap(vikt_prune_mask(w), vikt_tensor_numel(w), enc);
        snprintf(want, sizeof want, "\"vikt.mask.%s\":\"%s\"", names[t], enc);
        if (!find_bytes(first, n1, want)) fail_msg("%s not in the file", want);
    }
    assert_null(find_bytes(first, n1, "vikt.mask.fc1.bias"));
    /* Same model, same bytes. */
    assert_int_equal(vikt_save(m, path), VIKT_OK);
    unsigned char *second = vt_read_file(path, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(first, second, n1);
    free(second);

    /* Into an empty model (created) and into a matching one (strict). */
    for (int into_empty = 0; into_empty < 2; into_empty++) {
        vikt_model *g = vt_model(5);
        if (!into_empty) {
            vikt_param(g, "fc1.weight", 2, (int64_t[]){4, 5}, VIKT_INIT_ONES);
            vikt_param(g, "fc1.bias", 1, (int64_t[]){4}, VIKT_INIT_ONES);
            vikt_param(g, "fc2.weight", 2, (int64_t[]){2, 5}, VIKT_INIT_ONES);
        }
        assert_int_equal(vikt_load(g, path, VIKT_LOAD_STRICT), VIKT_OK);
        for (int t = 0; t < 2; t++) {
            vikt_tensor *a = vikt_param_find(m, names[t]), *b = vikt_param_find(g, names[t]);
            assert_non_null(vikt_prune_mask(b));
            assert_memory_equal(vikt_prune_mask(a), vikt_prune_mask(b), vikt_tensor_numel(a));
        }
        assert_null(vikt_prune_mask(vikt_param_find(g, "fc1.bias")));
        /* Train: still exactly zero at the same positions. */
        vikt_optimizer *opt;
        vikt_optimizer_create(g, VIKT_OPTIM_SGD, 0.1f, &opt);
        vikt_optimizer_set(opt, VIKT_OPT_MOMENTUM, 0.9);
        vikt_optimizer_set(opt, VIKT_OPT_WEIGHT_DECAY, 0.1);
        for (int s = 0; s < 10; s++) {
            vikt_step_begin(g);
            vikt_zero_grad(g);
            vikt_tensor *x = vikt_input(g, 2, (int64_t[]){3, 5}, data_x);
            vikt_tensor *h = vikt_relu(g, vikt_dense(g, "fc1", x, 4));
            vikt_tensor *w2 = vikt_param_find(g, "fc2.weight");
            vikt_backward(g, vikt_add(g, vikt_sum(g, vikt_mul(g, h, h)),
                                      vikt_sum(g, vikt_mul(g, w2, w2))));
            assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
        }
        assert_int_equal(vikt_model_errcode(g), VIKT_OK);
        expect_masked_zero(g, "after load");
        vikt_optimizer_destroy(opt);
        vikt_model_destroy(g);
    }

    /* A file without masks drops the masks of what it loads; a partial load
     * keeps the masks of what it does not. */
    vikt_model *plain = vt_model(6);
    vikt_param(plain, "fc1.weight", 2, (int64_t[]){4, 5}, VIKT_INIT_ONES);
    vikt_param(plain, "fc1.bias", 1, (int64_t[]){4}, VIKT_INIT_ONES);
    assert_int_equal(vikt_save(plain, path), VIKT_OK);
    size_t n3;
    unsigned char *unpruned = vt_read_file(path, &n3);
    assert_null(find_bytes(unpruned, n3, "vikt.mask."));
    free(unpruned);
    assert_int_equal(vikt_load(m, path, VIKT_LOAD_PARTIAL), VIKT_OK);
    assert_null(vikt_prune_mask(vikt_param_find(m, "fc1.weight")));
    assert_float_equal(vikt_tensor_data(vikt_param_find(m, "fc1.weight"))[0], 1.0f, 0);
    assert_non_null(vikt_prune_mask(vikt_param_find(m, "fc2.weight")));
    vikt_model_destroy(plain);
    vikt_model_destroy(m);
    free(first);
    tmp_remove();
}

/* A file whose mask metadata is wrong fails with VIKT_ERR_FORMAT and
 * changes nothing. The edits keep the header's length. */
static void malformed_masks_are_rejected(void **state) {
    (void)state;
    const char *path = tmp_file();
    vikt_model *m = pruned_model();
    vikt_tensor *w2 = vikt_param_find(m, "fc2.weight");
    assert_int_equal(vikt_save(m, path), VIKT_OK);
    size_t n;
    unsigned char *file = vt_read_file(path, &n);
    tmp_remove();
    char enc[16];
    base64_bitmap(vikt_prune_mask(w2), 10, enc);
    assert_int_equal(strlen(enc), 4);
    assert_int_equal(enc[3], '=');
    const struct {
        const char *key, *value, *needle;
    } cases[] = {
        {"vikt.mask.fc2.weight", "A*A=", "base64 bitmap of 10"},
        {"vikt.mask.fc2.weight", "AAAA", "base64"},  /* no padding */
        {"vikt.mask.fc2.weight", "AA==", "base64"},  /* too much padding */
        {"vikt.mask.fc2.weight", "AAQ=", "base64"},  /* bit 10 of 10 set */
        {"vikt.mask.fc2.weight", "AAR=", "base64"},  /* non-zero bits after the data */
        {"vikt.mask.fc2.wXight", NULL, "names no tensor"},
        {"vikt.mask.fc1.bias\"\"", NULL, NULL},      /* not JSON any more */
    };
    vikt_model *g = pruned_model();
    vikt_tensor *g2 = vikt_param_find(g, "fc2.weight");
    vikt_tensor_data(g2)[0] = 42.0f; /* differs from the file */
    uint8_t mask_before[10];
    memcpy(mask_before, vikt_prune_mask(g2), 10);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        unsigned char *copy = malloc(n);
        memcpy(copy, file, n);
        char old[64];
        snprintf(old, sizeof old, "\"vikt.mask.fc2.weight\":\"%s\"", enc);
        unsigned char *at = find_bytes(copy, n, old);
        assert_non_null(at);
        char edit[64];
        snprintf(edit, sizeof edit, "\"%s\":\"%s\"", cases[c].key, cases[c].value ? cases[c].value : enc);
        assert_int_equal(strlen(edit), strlen(old));
        memcpy(at, edit, strlen(edit));
        int rc = vikt_load_buffer(g, copy, n, VIKT_LOAD_PARTIAL);
        assert_int_equal(rc, VIKT_ERR_FORMAT);
        vt_expect_error(g, VIKT_ERR_FORMAT, "<memory>", cases[c].needle);
        assert_float_equal(vikt_tensor_data(g2)[0], 42.0f, 0);
        assert_memory_equal(vikt_prune_mask(g2), mask_before, 10);
        free(copy);
    }
    /* A mask on a buffer. */
    vikt_model *b = vt_model(1);
    vikt_buffer(b, "fc2.weight", 2, (int64_t[]){2, 5}, 0.0f);
    vikt_param(b, "fc1.weight", 2, (int64_t[]){4, 5}, VIKT_INIT_ONES);
    vikt_param(b, "fc1.bias", 1, (int64_t[]){4}, VIKT_INIT_ONES);
    assert_int_equal(vikt_load_buffer(b, file, n, VIKT_LOAD_PARTIAL), VIKT_ERR_FORMAT);
    vt_expect_error(b, VIKT_ERR_FORMAT, "only a parameter has a mask", NULL);
    assert_null(vikt_prune_mask(vikt_param_find(b, "fc1.weight")));
    /* The unedited file loads. */
    assert_int_equal(vikt_load_buffer(g, file, n, VIKT_LOAD_STRICT), VIKT_OK);
    assert_float_equal(vikt_tensor_data(g2)[0], vikt_tensor_data(w2)[0], 0);
    vikt_model_destroy(b);
    vikt_model_destroy(g);
    vikt_model_destroy(m);
    free(file);
}

/* A file written by the Python generator (an independent encoder) loads
 * with the masks it describes. */
static void python_written_masks_load(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    assert_int_equal(vikt_load(m, "test/fuzz/corpus/vikt_masks", VIKT_LOAD_STRICT), VIKT_OK);
    const uint8_t want_t[2] = {0, 1}, want_w[6] = {1, 0, 1, 1, 0, 1};
    vikt_tensor *t = vikt_param_find(m, "t"), *w = vikt_param_find(m, "w");
    assert_non_null(vikt_prune_mask(t));
    assert_memory_equal(vikt_prune_mask(t), want_t, 2);
    assert_memory_equal(vikt_prune_mask(w), want_w, 6);
    const float w_data[6] = {1, 0, 3, 4, 0, 6};
    assert_memory_equal(vikt_tensor_data(w), w_data, sizeof w_data);
    vikt_model_destroy(m);
}

/* --------------------------------------------------------------- report */

static void report_table(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "enc.weight", 2, (int64_t[]){4, 5}, VIKT_INIT_ONES);
    vikt_param(m, "enc.bias", 1, (int64_t[]){4}, VIKT_INIT_ZEROS);
    vikt_tensor_data(w)[3] = 0.0f; /* a zero that no mask holds */
    vikt_prune_magnitude(m, NULL, 0.25, VIKT_PRUNE_PER_TENSOR);
    vikt_tensor_data(w)[19] = 0.0f;
    int64_t need = vikt_prune_report(m, NULL, 0);
    assert_true(need > 0);
    char *buf = malloc((size_t)need + 1);
    assert_int_equal(vikt_prune_report(m, buf, (size_t)need + 1), need);
    assert_int_equal((int64_t)strlen(buf), need);
    const char *lines[] = {
        "name        shape                    count         zeros  sparsity        masked\n",
        "enc.weight  4x5                         20             6    30.00%             5\n",
        "enc.bias    4                            4             4   100.00%             -\n",
        "total 24 values, 10 zero (41.67%), 5 masked in 1 of 2 tensors\n"};
    char want[512] = "";
    for (int i = 0; i < 4; i++) strcat(want, lines[i]);
    assert_string_equal(buf, want);
    char small[10];
    assert_int_equal(vikt_prune_report(m, small, sizeof small), need);
    assert_int_equal(strlen(small), 9);
    free(buf);
    vikt_model_destroy(m);
}

/* ---------------------------------------------------------------- memory */

static int same_state(vikt_model *m, float *const *data, uint8_t *const *masks) {
    for (int64_t k = 0; k < vikt_param_count(m); k++) {
        vikt_tensor *t = vikt_param_at(m, k);
        int64_t n = vikt_tensor_numel(t);
        if (memcmp(vikt_tensor_data(t), data[k], (size_t)n * sizeof(float))) return 0;
        const uint8_t *mask = vikt_prune_mask(t);
        if (!mask != !masks[k] || (mask && memcmp(mask, masks[k], (size_t)n))) return 0;
    }
    return 1;
}

/* Pruning, saving and loading fail cleanly at every allocation. */
static void out_of_memory_changes_nothing(void **state) {
    (void)state;
    const char *path = tmp_file();
    vikt_model *src = pruned_model();
    vikt_prune_magnitude(src, "fc1.bias", 0.5, VIKT_PRUNE_PER_TENSOR);
    assert_int_equal(vikt_save(src, path), VIKT_OK);
    int done[3] = {0, 0, 0};
    for (int64_t n = 1; n < 200 && !(done[0] && done[1] && done[2]); n++) {
        vikt_model *m = vt_model(2);
        param_2d(m, "fc1.weight", 4, 5, 41);
        param_1d(m, "fc1.bias", 4, 42);
        param_2d(m, "fc2.weight", 2, 5, 43);
        vikt_prune_magnitude(m, "fc2", 0.3, VIKT_PRUNE_PER_TENSOR);
        for (int op = 0; op < 3; op++) {
            if (done[op]) continue;
            float *data[3];
            uint8_t *masks[3];
            for (int k = 0; k < 3; k++) {
                vikt_tensor *t = vikt_param_at(m, k);
                data[k] = copy_of(t);
                masks[k] = NULL;
                if (vikt_prune_mask(t)) {
                    masks[k] = malloc((size_t)vikt_tensor_numel(t));
                    memcpy(masks[k], vikt_prune_mask(t), (size_t)vikt_tensor_numel(t));
                }
            }
            vt_stats.fail_at = vt_stats.calls + n;
            int64_t rc = op == 0   ? vikt_prune_magnitude(m, NULL, 0.6, VIKT_PRUNE_GLOBAL)
                         : op == 1 ? vikt_save(m, path)
                                   : vikt_load(m, path, VIKT_LOAD_STRICT);
            vt_stats.fail_at = 0;
            if (rc >= 0) {
                done[op] = 1;
            } else {
                assert_int_equal(rc, VIKT_ERR_NOMEM);
                vt_expect_error(m, VIKT_ERR_NOMEM, NULL, NULL);
                if (!same_state(m, data, masks))
                    fail_msg("op %d changed the model at OOM %lld", op, (long long)n);
            }
            for (int k = 0; k < 3; k++) free(data[k]), free(masks[k]);
        }
        vikt_model_destroy(m);
    }
    assert_true(done[0] && done[1] && done[2]);
    vikt_model_destroy(src);
    tmp_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(per_tensor_matches_a_sort),
        cmocka_unit_test(global_matches_a_sort),
        cmocka_unit_test(ties_and_rounding),
        cmocka_unit_test(nan_and_inf_are_kept),
        cmocka_unit_test(repruning_keeps_masks),
        cmocka_unit_test(patterns_select_weights),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(masks_hold_through_every_optimizer),
        cmocka_unit_test(frozen_parameters_are_pruned),
        cmocka_unit_test(remove_makes_pruning_permanent),
        cmocka_unit_test(schedule_follows_the_formula),
        cmocka_unit_test(gradual_pruning),
        cmocka_unit_test(masks_survive_save_and_load),
        cmocka_unit_test(masks_survive_checkpoints),
        cmocka_unit_test(malformed_masks_are_rejected),
        cmocka_unit_test(python_written_masks_load),
        cmocka_unit_test(report_table),
        cmocka_unit_test(out_of_memory_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
