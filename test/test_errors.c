/* The error model: NULL arguments for every public function, the sticky
 * error and its messages (naming the op and the shapes), every shape and
 * argument check, status strings and the version. */
#include "support.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* A step tensor of the given shape with small distinct values. */
static vikt_tensor *input(vikt_model *m, int rank, const int64_t *shape) {
    vikt_tensor *t = vikt_input(m, rank, shape, NULL);
    assert_non_null(t);
    float *d = vikt_tensor_data(t);
    for (int64_t i = 0; i < vikt_tensor_numel(t); i++) d[i] = 0.25f + 0.125f * (float)(i % 5);
    return t;
}

/* Assert an op returned NULL and the model holds err with both needles. */
#define EXPECT_FAIL(m, expr, err, n1, n2)                                                         \
    do {                                                                                          \
        vikt_tensor *r_ = (expr);                                                                 \
        if (r_) fail_msg("%s: expected NULL", #expr);                                              \
        vt_expect_error((m), (err), (n1), (n2));                                                  \
    } while (0)

/* ---------------------------------------------------- version and strings */

static void version_matches_macros(void **state) {
    (void)state;
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", VIKT_VERSION_MAJOR, VIKT_VERSION_MINOR,
             VIKT_VERSION_PATCH);
    assert_non_null(vikt_version());
    assert_string_equal(vikt_version(), want);
    assert_ptr_equal(vikt_version(), vikt_version()); /* static */
}

static void strerror_every_code(void **state) {
    (void)state;
    assert_string_equal(vikt_strerror(VIKT_OK), "success");
    assert_string_equal(vikt_strerror(VIKT_ERR_NULL), "a required argument is NULL");
    assert_string_equal(vikt_strerror(VIKT_ERR_NOMEM), "out of memory");
    assert_string_equal(vikt_strerror(VIKT_ERR_SHAPE), "tensor shapes do not fit the operation");
    assert_string_equal(vikt_strerror(VIKT_ERR_ARG), "an argument is out of range");
    assert_string_equal(vikt_strerror(VIKT_ERR_STATE),
                        "the call is not valid in the current state");
    assert_string_equal(vikt_strerror(VIKT_ERR_NOT_FOUND), "no such name");
    assert_string_equal(vikt_strerror(VIKT_ERR_IO), "input/output error");
    assert_string_equal(vikt_strerror(VIKT_ERR_FORMAT), "malformed data");
    assert_string_equal(vikt_strerror(VIKT_ERR_NONFINITE), "a value is NaN or infinite");
    /* Pinned values. */
    assert_int_equal(VIKT_OK, 0);
    assert_int_equal(VIKT_ERR_NULL, -1);
    assert_int_equal(VIKT_ERR_NOMEM, -2);
    assert_int_equal(VIKT_ERR_SHAPE, -3);
    assert_int_equal(VIKT_ERR_ARG, -4);
    assert_int_equal(VIKT_ERR_STATE, -5);
    assert_int_equal(VIKT_ERR_NOT_FOUND, -6);
    assert_int_equal(VIKT_ERR_IO, -7);
    assert_int_equal(VIKT_ERR_FORMAT, -8);
    assert_int_equal(VIKT_ERR_NONFINITE, -9);
    assert_int_equal(VIKT_STATUS_MIN_, -9);
    /* Every code in range has its own text; everything else is unknown. */
    for (int a = VIKT_STATUS_MIN_; a <= 0; a++) {
        assert_string_not_equal(vikt_strerror(a), "unknown status");
        for (int b = a + 1; b <= 0; b++) assert_string_not_equal(vikt_strerror(a), vikt_strerror(b));
    }
    const int unknown[] = {1, 2, -10, -100, 1000, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        assert_string_equal(vikt_strerror(unknown[i]), "unknown status");
}

/* ------------------------------------------------------------------ model */

static void model_create_arguments(void **state) {
    (void)state;
    vt_alloc_reset();
    assert_int_equal(vikt_model_create(&vt_allocator, 1, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_model_create(NULL, 1, NULL), VIKT_ERR_NULL);

    vikt_model *m = (vikt_model *)&m; /* garbage that must be overwritten */
    vikt_allocator no_alloc = {NULL, vt_allocator.free, NULL};
    assert_int_equal(vikt_model_create(&no_alloc, 1, &m), VIKT_ERR_ARG);
    assert_null(m);
    m = (vikt_model *)&m;
    vikt_allocator no_free = {vt_allocator.alloc, NULL, NULL};
    assert_int_equal(vikt_model_create(&no_free, 1, &m), VIKT_ERR_ARG);
    assert_null(m);
    m = (vikt_model *)&m;
    vikt_allocator neither = {NULL, NULL, NULL};
    assert_int_equal(vikt_model_create(&neither, 1, &m), VIKT_ERR_ARG);
    assert_null(m);
    assert_int_equal(vt_stats.calls, 0); /* no hook was called */

    /* NULL allocator: the default one. */
    assert_int_equal(vikt_model_create(NULL, 1, &m), VIKT_OK);
    assert_non_null(m);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    assert_string_equal(vikt_model_errmsg(m), "");
    assert_int_equal(vikt_grad_enabled(m), 1);
    assert_int_equal(vikt_training(m), 1);
    vikt_model_destroy(m);
}

static void destroy_null_does_nothing(void **state) {
    (void)state;
    vt_alloc_reset();
    vikt_model_destroy(NULL);
    vikt_tensor_destroy(NULL);
    vikt_optimizer_destroy(NULL);
    vikt_model_clear_error(NULL);
    assert_int_equal(vt_stats.calls, 0);
    assert_int_equal(vt_stats.frees, 0);
}

static void model_functions_with_null(void **state) {
    (void)state;
    assert_int_equal(vikt_model_errcode(NULL), VIKT_ERR_NULL);
    assert_non_null(vikt_model_errmsg(NULL));
    assert_int_equal(vikt_model_seed(NULL, 3), VIKT_ERR_NULL);
    assert_int_equal(vikt_step_begin(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_set_grad_enabled(NULL, 1), VIKT_ERR_NULL);
    assert_int_equal(vikt_grad_enabled(NULL), 0);
    assert_int_equal(vikt_set_training(NULL, 1), VIKT_ERR_NULL);
    assert_int_equal(vikt_training(NULL), 0);
    assert_int_equal(vikt_zero_grad(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_param_count(NULL), -1);
    assert_null(vikt_param_at(NULL, 0));
    assert_int_equal(vikt_model_num_params(NULL), -1);
    assert_null(vikt_param_find(NULL, "w"));
    assert_null(vikt_param(NULL, "w", 1, SHAPE(3), VIKT_INIT_ZEROS));

    vikt_model *m = vt_model(1);
    vikt_tensor *t = input(m, 0, NULL);
    assert_int_equal(vikt_backward(NULL, t), VIKT_ERR_NULL);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK); /* t's model is untouched */
    assert_int_equal(vikt_backward(m, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_backward", "NULL");
    /* Looking a NULL name up records nothing (documented). */
    assert_null(vikt_param_find(m, NULL));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* ---------------------------------------------------------------- tensors */

static void tensor_functions_with_null(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *t = (vikt_tensor *)&t;
    float buf[4] = {0};
    int64_t shape[VIKT_MAX_RANK];

    /* vikt_tensor_create: NULL model, NULL out, NULL shape. */
    assert_int_equal(vikt_tensor_create(NULL, 1, SHAPE(4), NULL, 0, &t), VIKT_ERR_NULL);
    assert_null(t);
    assert_int_equal(vikt_tensor_create(NULL, 1, SHAPE(4), NULL, 0, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_tensor_create(m, 1, SHAPE(4), NULL, 0, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_tensor_create", "out");
    t = (vikt_tensor *)&t;
    assert_int_equal(vikt_tensor_create(m, 2, NULL, NULL, 0, &t), VIKT_ERR_NULL);
    assert_null(t);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_tensor_create", "shape");
    /* NULL data means zeros, NULL shape is fine for rank 0. */
    assert_int_equal(vikt_tensor_create(m, 0, NULL, NULL, 1, &t), VIKT_OK);
    assert_float_equal(vikt_tensor_data(t)[0], 0.0f, 0);
    vikt_tensor_destroy(t);

    /* Step-tensor makers. */
    assert_null(vikt_input(NULL, 1, SHAPE(4), buf));
    assert_null(vikt_full(NULL, 1, SHAPE(4), 1.0f));
    assert_null(vikt_zeros(NULL, 1, SHAPE(4)));
    assert_null(vikt_ones(NULL, 1, SHAPE(4)));
    assert_null(vikt_randn(NULL, 1, SHAPE(4), 0, 1));
    assert_null(vikt_rand(NULL, 1, SHAPE(4), 0, 1));
    EXPECT_FAIL(m, vikt_input(m, 1, NULL, buf), VIKT_ERR_NULL, "vikt_input", "shape");
    EXPECT_FAIL(m, vikt_full(m, 1, NULL, 1.0f), VIKT_ERR_NULL, "vikt_full", "shape");
    EXPECT_FAIL(m, vikt_zeros(m, 2, NULL), VIKT_ERR_NULL, "shape", NULL);
    EXPECT_FAIL(m, vikt_ones(m, 2, NULL), VIKT_ERR_NULL, "shape", NULL);
    EXPECT_FAIL(m, vikt_randn(m, 1, NULL, 0, 1), VIKT_ERR_NULL, "vikt_randn", "shape");
    EXPECT_FAIL(m, vikt_rand(m, 1, NULL, 0, 1), VIKT_ERR_NULL, "vikt_rand", "shape");
    vikt_tensor *z = vikt_input(m, 1, SHAPE(3), NULL); /* NULL data: zeros */
    assert_non_null(z);
    for (int i = 0; i < 3; i++) assert_float_equal(vikt_tensor_data(z)[i], 0.0f, 0);

    /* Fills. */
    assert_int_equal(vikt_tensor_fill(NULL, 1.0f), VIKT_ERR_NULL);
    assert_int_equal(vikt_tensor_fill_normal(NULL, 0, 1), VIKT_ERR_NULL);
    assert_int_equal(vikt_tensor_fill_uniform(NULL, 0, 1), VIKT_ERR_NULL);

    /* Queries. */
    assert_int_equal(vikt_tensor_rank(NULL), -1);
    assert_int_equal(vikt_tensor_dim(NULL, 0), -1);
    assert_int_equal(vikt_tensor_numel(NULL), -1);
    assert_int_equal(vikt_tensor_shape(NULL, shape), VIKT_ERR_NULL);
    assert_int_equal(vikt_tensor_shape(z, NULL), VIKT_ERR_NULL);
    assert_null(vikt_tensor_data(NULL));
    assert_null(vikt_tensor_grad(NULL));
    assert_int_equal(vikt_tensor_requires_grad(NULL), 0);
    assert_string_equal(vikt_tensor_name(NULL), "");
    assert_string_equal(vikt_tensor_name(z), "");

    /* Copies. */
    assert_int_equal(vikt_tensor_copy_out(NULL, buf, 4), VIKT_ERR_NULL);
    assert_int_equal(vikt_tensor_copy_out(z, NULL, 4), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_tensor_copy_out", "dst");
    assert_int_equal(vikt_tensor_copy_in(NULL, buf, 4), VIKT_ERR_NULL);
    assert_int_equal(vikt_tensor_copy_in(z, NULL, 3), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_tensor_copy_in", "src");

    assert_int_equal(vikt_tensor_set_requires_grad(NULL, 1), VIKT_ERR_NULL);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void param_functions_with_null(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    EXPECT_FAIL(m, vikt_param(m, NULL, 1, SHAPE(3), VIKT_INIT_ZEROS), VIKT_ERR_NULL, "vikt_param",
                "name");
    EXPECT_FAIL(m, vikt_param(m, "w", 2, NULL, VIKT_INIT_ZEROS), VIKT_ERR_NULL, "vikt_param",
                "shape");
    assert_int_equal(vikt_param_count(m), 0);
    assert_int_equal(vikt_model_num_params(m), 0);
    assert_null(vikt_param_at(m, 0));
    assert_null(vikt_param_at(m, -1));
    /* A rank-0 parameter needs no shape. */
    vikt_tensor *s = vikt_param(m, "s", 0, NULL, VIKT_INIT_ONES);
    assert_non_null(s);
    assert_float_equal(vikt_tensor_data(s)[0], 1.0f, 0);
    assert_int_equal(vikt_param_count(m), 1);
    assert_ptr_equal(vikt_param_at(m, 0), s);
    assert_null(vikt_param_at(m, 1));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void optimizer_functions_with_null(void **state) {
    (void)state;
    vikt_optimizer *opt = (vikt_optimizer *)&opt;
    assert_int_equal(vikt_sgd_create(NULL, 0.1f, &opt), VIKT_ERR_NULL);
    assert_null(opt);
    assert_int_equal(vikt_sgd_create(NULL, 0.1f, NULL), VIKT_ERR_NULL);
    vikt_model *m = vt_model(1);
    assert_int_equal(vikt_sgd_create(m, 0.1f, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_sgd_create", "out");
    assert_int_equal(vikt_optimizer_step(NULL), VIKT_ERR_NULL);
    vikt_model_destroy(m);
}

/* A layer given a NULL name: NULL and VIKT_ERR_NULL naming the layer and
 * "name", as vikt_param and vikt_buffer do. */
static void expect_name_error(vikt_model *m, vikt_tensor *r, const char *fn) {
    if (r) fail_msg("%s: a NULL name gave a tensor", fn);
    vt_expect_error(m, VIKT_ERR_NULL, fn, "name");
}

/* The rest of the header: buffers, freezing, the summary, threads, the newer
 * ops, layers and the optimizer API. */
static void newer_functions_with_null(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    char buf[64];
    double v;
    const int32_t ids[2] = {0, 1};

    /* Buffers, freezing, counts, the summary. */
    assert_null(vikt_buffer(NULL, "b", 1, SHAPE(2), 0.0f));
    EXPECT_FAIL(m, vikt_buffer(m, NULL, 1, SHAPE(2), 0.0f), VIKT_ERR_NULL, "vikt_buffer", "name");
    EXPECT_FAIL(m, vikt_buffer(m, "", 1, SHAPE(2), 0.0f), VIKT_ERR_ARG, "vikt_buffer", "empty");
    EXPECT_FAIL(m, vikt_buffer(m, "b", 1, NULL, 0.0f), VIKT_ERR_NULL, "vikt_buffer", "shape");
    assert_null(vikt_buffer_find(NULL, "b"));
    assert_null(vikt_buffer_find(m, NULL));
    assert_int_equal(vikt_buffer_count(NULL), -1);
    assert_null(vikt_buffer_at(NULL, 0));
    assert_int_equal(vikt_model_num_trainable(NULL), -1);
    assert_int_equal(vikt_param_freeze(NULL, "fc", 1), VIKT_ERR_NULL);
    assert_int_equal(vikt_param_freeze(m, NULL, 1), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_param_freeze", "NULL");
    assert_int_equal(vikt_model_summary(NULL, buf, sizeof buf), VIKT_ERR_NULL);
    assert_int_equal(vikt_model_summary(m, NULL, 5), VIKT_ERR_NULL);
    assert_true(vikt_model_summary(m, NULL, 0) > 0); /* documented: measuring */
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);

    /* Threads and the kernel. */
    assert_int_equal(vikt_num_threads(NULL), 0);
    assert_int_equal(vikt_set_num_threads(NULL, 2), VIKT_ERR_NULL);
    assert_non_null(vikt_gemm_isa());

    /* The newer ops. */
    vikt_tensor *x2 = input(m, 2, SHAPE(2, 3)), *x4 = input(m, 4, SHAPE(1, 2, 4, 4));
    vikt_tensor *sq = input(m, 2, SHAPE(3, 3));
    assert_null(vikt_permute(NULL, x2, (int[]){1, 0}));
    EXPECT_FAIL(m, vikt_permute(m, NULL, (int[]){1, 0}), VIKT_ERR_NULL, "vikt_permute", "NULL");
    EXPECT_FAIL(m, vikt_permute(m, x2, NULL), VIKT_ERR_NULL, "vikt_permute", "NULL");
    assert_null(vikt_gather_rows(NULL, x2, ids, 2));
    EXPECT_FAIL(m, vikt_gather_rows(m, NULL, ids, 2), VIKT_ERR_NULL, "vikt_gather_rows", "NULL");
    EXPECT_FAIL(m, vikt_gather_rows(m, x2, NULL, 2), VIKT_ERR_NULL, "vikt_gather_rows", "NULL");
    assert_null(vikt_scatter_rows(NULL, x2, ids, 2));
    EXPECT_FAIL(m, vikt_scatter_rows(m, NULL, ids, 2), VIKT_ERR_NULL, "vikt_scatter_rows", "NULL");
    EXPECT_FAIL(m, vikt_scatter_rows(m, x2, NULL, 2), VIKT_ERR_NULL, "vikt_scatter_rows", "NULL");
    assert_null(vikt_causal_mask(NULL, sq));
    EXPECT_FAIL(m, vikt_causal_mask(m, NULL), VIKT_ERR_NULL, "vikt_causal_mask", "NULL");
    assert_null(vikt_max_pool2d(NULL, x4, 2, 2));
    EXPECT_FAIL(m, vikt_max_pool2d(m, NULL, 2, 2), VIKT_ERR_NULL, "vikt_max_pool2d", "NULL");
    assert_null(vikt_avg_pool2d(NULL, x4, 2, 2));
    EXPECT_FAIL(m, vikt_avg_pool2d(m, NULL, 2, 2), VIKT_ERR_NULL, "vikt_avg_pool2d", "NULL");
    assert_null(vikt_flatten(NULL, x4));
    EXPECT_FAIL(m, vikt_flatten(m, NULL), VIKT_ERR_NULL, "vikt_flatten", "NULL");
    /* The same calls with real arguments work. */
    assert_non_null(vikt_permute(m, x2, (int[]){1, 0}));
    assert_non_null(vikt_gather_rows(m, x2, ids, 2));
    assert_non_null(vikt_scatter_rows(m, x2, ids, 2));
    assert_non_null(vikt_causal_mask(m, sq));
    assert_non_null(vikt_max_pool2d(m, x4, 2, 2));
    assert_non_null(vikt_avg_pool2d(m, x4, 2, 2));
    assert_non_null(vikt_flatten(m, x4));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);

    /* Layers: NULL model, NULL input, NULL name; optional outputs may be NULL. */
    vikt_tensor *seq = input(m, 3, SHAPE(2, 3, 4)), *h = NULL, *c = NULL, *aux = NULL;
    assert_null(vikt_dense(NULL, "fc", x2, 4));
    EXPECT_FAIL(m, vikt_dense(m, "fc", NULL, 4), VIKT_ERR_NULL, "vikt_dense", NULL);
    expect_name_error(m, vikt_dense(m, NULL, x2, 4), "vikt_dense");
    assert_null(vikt_conv2d(NULL, "conv", x4, 3, 3, 1, 1, 1));
    EXPECT_FAIL(m, vikt_conv2d(m, "conv", NULL, 3, 3, 1, 1, 1), VIKT_ERR_NULL, "vikt_conv2d", NULL);
    expect_name_error(m, vikt_conv2d(m, NULL, x4, 3, 3, 1, 1, 1), "vikt_conv2d");
    assert_null(vikt_embedding(NULL, "emb", ids, 1, SHAPE(2), 5, 3));
    EXPECT_FAIL(m, vikt_embedding(m, "emb", NULL, 1, SHAPE(2), 5, 3), VIKT_ERR_NULL,
                "vikt_embedding", NULL);
    EXPECT_FAIL(m, vikt_embedding(m, "emb", ids, 1, NULL, 5, 3), VIKT_ERR_NULL, "vikt_embedding",
                NULL);
    expect_name_error(m, vikt_embedding(m, NULL, ids, 1, SHAPE(2), 5, 3), "vikt_embedding");
    assert_null(vikt_layer_norm(NULL, "ln", x2, 1e-5f));
    EXPECT_FAIL(m, vikt_layer_norm(m, "ln", NULL, 1e-5f), VIKT_ERR_NULL, "vikt_layer_norm", NULL);
    expect_name_error(m, vikt_layer_norm(m, NULL, x2, 1e-5f), "vikt_layer_norm");
    assert_null(vikt_batch_norm(NULL, "bn", x2, 0.1f, 1e-5f));
    EXPECT_FAIL(m, vikt_batch_norm(m, "bn", NULL, 0.1f, 1e-5f), VIKT_ERR_NULL, "vikt_batch_norm",
                NULL);
    expect_name_error(m, vikt_batch_norm(m, NULL, x2, 0.1f, 1e-5f), "vikt_batch_norm");
    assert_null(vikt_attention(NULL, "attn", seq, 2, 0));
    EXPECT_FAIL(m, vikt_attention(m, "attn", NULL, 2, 0), VIKT_ERR_NULL, "vikt_attention", NULL);
    expect_name_error(m, vikt_attention(m, NULL, seq, 2, 0), "vikt_attention");
    assert_null(vikt_transformer_block(NULL, "blk", seq, 2, 8, 1));
    EXPECT_FAIL(m, vikt_transformer_block(m, "blk", NULL, 2, 8, 1), VIKT_ERR_NULL,
                "vikt_transformer_block", NULL);
    expect_name_error(m, vikt_transformer_block(m, NULL, seq, 2, 8, 1), "vikt_transformer_block");
    h = (vikt_tensor *)&h;
    assert_null(vikt_gru(NULL, "gru", seq, 5, NULL, &h));
    EXPECT_FAIL(m, vikt_gru(m, "gru", NULL, 5, NULL, &h), VIKT_ERR_NULL, "vikt_gru", NULL);
    assert_null(h); /* set to NULL on failure */
    expect_name_error(m, vikt_gru(m, NULL, seq, 5, NULL, NULL), "vikt_gru");
    h = (vikt_tensor *)&h, c = (vikt_tensor *)&c;
    EXPECT_FAIL(m, vikt_lstm(m, "lstm", NULL, 5, NULL, NULL, &h, &c), VIKT_ERR_NULL, "vikt_lstm",
                NULL);
    assert_null(h);
    assert_null(c);
    assert_null(vikt_lstm(NULL, "lstm", seq, 5, NULL, NULL, NULL, NULL));
    expect_name_error(m, vikt_lstm(m, NULL, seq, 5, NULL, NULL, NULL, NULL), "vikt_lstm");
    assert_null(vikt_moe(NULL, "moe", x2, 2, 4, 1, &aux));
    EXPECT_FAIL(m, vikt_moe(m, "moe", NULL, 2, 4, 1, &aux), VIKT_ERR_NULL, "vikt_moe", NULL);
    expect_name_error(m, vikt_moe(m, NULL, x2, 2, 4, 1, NULL), "vikt_moe");
    /* With real arguments and the optional outputs left NULL. */
    assert_non_null(vikt_dense(m, "fc", x2, 4));
    assert_non_null(vikt_conv2d(m, "conv", x4, 3, 3, 1, 1, 1));
    assert_non_null(vikt_embedding(m, "emb", ids, 1, SHAPE(2), 5, 3));
    assert_non_null(vikt_layer_norm(m, "ln", x2, 1e-5f));
    assert_non_null(vikt_batch_norm(m, "bn", x2, 0.1f, 1e-5f));
    assert_non_null(vikt_attention(m, "attn", seq, 2, 1));
    assert_non_null(vikt_transformer_block(m, "blk", seq, 2, 8, 1));
    assert_non_null(vikt_gru(m, "gru", seq, 5, NULL, NULL));
    assert_non_null(vikt_lstm(m, "lstm", seq, 5, NULL, NULL, NULL, NULL));
    assert_non_null(vikt_moe(m, "moe", x2, 2, 4, 1, NULL));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);

    /* The optimizer API. */
    vikt_optimizer *opt = (vikt_optimizer *)&opt;
    assert_int_equal(vikt_optimizer_create(NULL, VIKT_OPTIM_ADAM, 0.1f, &opt), VIKT_ERR_NULL);
    assert_null(opt);
    assert_int_equal(vikt_optimizer_create(m, VIKT_OPTIM_ADAM, 0.1f, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_optimizer_create", "out");
    opt = (vikt_optimizer *)&opt;
    assert_int_equal(vikt_adam_create(NULL, 0.1f, &opt), VIKT_ERR_NULL);
    assert_null(opt);
    assert_int_equal(vikt_adam_create(m, 0.1f, NULL), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_adam_create", "out");
    assert_int_equal(vikt_optimizer_set(NULL, VIKT_OPT_LR, 0.1), VIKT_ERR_NULL);
    assert_int_equal(vikt_optimizer_get(NULL, VIKT_OPT_LR, &v), VIKT_ERR_NULL);
    assert_int_equal(vikt_adam_create(m, 0.1f, &opt), VIKT_OK);
    assert_int_equal(vikt_optimizer_get(opt, VIKT_OPT_LR, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_optimizer_get(opt, VIKT_OPT_LR, &v), VIKT_OK);
    assert_float_equal(v, 0.1, 1e-7);
    vikt_optimizer_destroy(opt);
    vikt_model_clear_error(m);
    vikt_model_destroy(m);
}

/* -------------------------------------------------------- ops given NULL */

static const int32_t LABELS2[2] = {0, 1};

typedef vikt_tensor *(*op2_fn)(vikt_model *, vikt_tensor *, vikt_tensor *);

static vikt_tensor *w_matmul_t(vikt_model *m, vikt_tensor *a, vikt_tensor *b) {
    return vikt_matmul_t(m, a, b, 1, 1);
}
static vikt_tensor *w_transpose(vikt_model *m, vikt_tensor *a, vikt_tensor *b) {
    (void)b;
    return vikt_transpose(m, a);
}
static vikt_tensor *w_reshape(vikt_model *m, vikt_tensor *a, vikt_tensor *b) {
    (void)b;
    return vikt_reshape(m, a, 1, SHAPE(-1));
}
static vikt_tensor *w_concat(vikt_model *m, vikt_tensor *a, vikt_tensor *b) {
    vikt_tensor *in[2] = {a, b};
    return vikt_concat(m, 2, in, 0);
}
static vikt_tensor *w_slice(vikt_model *m, vikt_tensor *a, vikt_tensor *b) {
    (void)b;
    return vikt_slice(m, a, 1, 1, 1);
}
#define W1(NAME, CALL)                                                                            \
    static vikt_tensor *w_##NAME(vikt_model *m, vikt_tensor *a, vikt_tensor *b) {                 \
        (void)b;                                                                                  \
        return CALL;                                                                              \
    }
W1(sum, vikt_sum(m, a))
W1(mean, vikt_mean(m, a))
W1(sum_axis, vikt_sum_axis(m, a, 0, 0))
W1(mean_axis, vikt_mean_axis(m, a, -1, 1))
W1(scale, vikt_scale(m, a, 2.0f))
W1(exp, vikt_exp(m, a))
W1(log, vikt_log(m, a))
W1(sqrt, vikt_sqrt(m, a))
W1(square, vikt_square(m, a))
W1(relu, vikt_relu(m, a))
W1(leaky_relu, vikt_leaky_relu(m, a, 0.01f))
W1(sigmoid, vikt_sigmoid(m, a))
W1(tanh, vikt_tanh(m, a))
W1(gelu, vikt_gelu(m, a))
W1(softmax, vikt_softmax(m, a))
W1(log_softmax, vikt_log_softmax(m, a))
W1(dropout, vikt_dropout(m, a, 0.5f))
W1(cross_entropy, vikt_cross_entropy_loss(m, a, LABELS2))

typedef struct op_case {
    const char *name; /* the op's name in messages */
    op2_fn fn;
    int nin;
} op_case;

static const op_case OPS[] = {
    {"vikt_add", vikt_add, 2},
    {"vikt_sub", vikt_sub, 2},
    {"vikt_mul", vikt_mul, 2},
    {"vikt_div", vikt_div, 2},
    {"vikt_matmul", vikt_matmul, 2},
    {"vikt_matmul", w_matmul_t, 2},
    {"vikt_transpose", w_transpose, 1},
    {"vikt_reshape", w_reshape, 1},
    {"vikt_concat", w_concat, 2},
    {"vikt_slice", w_slice, 1},
    {"vikt_sum", w_sum, 1},
    {"vikt_mean", w_mean, 1},
    {"vikt_sum_axis", w_sum_axis, 1},
    {"vikt_mean_axis", w_mean_axis, 1},
    {"vikt_scale", w_scale, 1},
    {"vikt_exp", w_exp, 1},
    {"vikt_log", w_log, 1},
    {"vikt_sqrt", w_sqrt, 1},
    {"vikt_square", w_square, 1},
    {"vikt_relu", w_relu, 1},
    {"vikt_leaky_relu", w_leaky_relu, 1},
    {"vikt_sigmoid", w_sigmoid, 1},
    {"vikt_tanh", w_tanh, 1},
    {"vikt_gelu", w_gelu, 1},
    {"vikt_softmax", w_softmax, 1},
    {"vikt_log_softmax", w_log_softmax, 1},
    {"vikt_dropout", w_dropout, 1},
    {"vikt_mse_loss", vikt_mse_loss, 2},
    {"vikt_bce_with_logits_loss", vikt_bce_with_logits_loss, 2},
    {"vikt_cross_entropy_loss", w_cross_entropy, 1},
    {"vikt_hinge_loss", vikt_hinge_loss, 2},
};
#define NOPS (sizeof OPS / sizeof OPS[0])

static void every_op_with_null(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = input(m, 2, SHAPE(2, 2)), *b = input(m, 2, SHAPE(2, 2));
    for (size_t k = 0; k < NOPS; k++) {
        const op_case *c = &OPS[k];
        /* The op works on real inputs, so the NULLs below are what fails. */
        vikt_tensor *ok = c->fn(m, a, b);
        if (!ok) fail_msg("%s: valid call failed: %s", c->name, vikt_model_errmsg(m));
        assert_int_equal(vikt_model_errcode(m), VIKT_OK);
        /* A NULL model: NULL, and nothing recorded anywhere. */
        assert_null(c->fn(NULL, a, b));
        assert_int_equal(vikt_model_errcode(m), VIKT_OK);
        /* A NULL input at each position. */
        for (int i = 0; i < c->nin; i++) {
            vikt_tensor *x = i == 0 ? NULL : a, *y = i == 1 ? NULL : b;
            if (c->fn(m, x, y)) fail_msg("%s: NULL input %d gave a tensor", c->name, i);
            char needle[64];
            snprintf(needle, sizeof needle, "input %d is NULL", i);
            vt_expect_error(m, VIKT_ERR_NULL, c->name, needle);
        }
        /* NULL everywhere. */
        assert_null(c->fn(NULL, NULL, NULL));
        assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    }
    vikt_model_destroy(m);
}

static void op_array_arguments_null(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = input(m, 2, SHAPE(2, 3));
    EXPECT_FAIL(m, vikt_concat(m, 2, NULL, 0), VIKT_ERR_NULL, "vikt_concat", "NULL");
    assert_null(vikt_concat(NULL, 2, NULL, 0));
    vikt_tensor *three[3] = {a, a, NULL};
    EXPECT_FAIL(m, vikt_concat(m, 3, three, 0), VIKT_ERR_NULL, "vikt_concat", "input 2 is NULL");
    EXPECT_FAIL(m, vikt_concat(m, 0, three, 0), VIKT_ERR_ARG, "vikt_concat", "got 0");
    EXPECT_FAIL(m, vikt_concat(m, -1, three, 0), VIKT_ERR_ARG, "vikt_concat", "got -1");
    vikt_tensor *many[40];
    for (int i = 0; i < 40; i++) many[i] = i == 39 ? NULL : a;
    assert_non_null(vikt_concat(m, 39, many, 0));
    EXPECT_FAIL(m, vikt_concat(m, 40, many, 0), VIKT_ERR_NULL, "vikt_concat", "input 39 is NULL");
    EXPECT_FAIL(m, vikt_reshape(m, a, 2, NULL), VIKT_ERR_NULL, "vikt_reshape", "shape");
    vikt_tensor *one = vikt_reshape(m, vikt_sum(m, a), 0, NULL); /* rank 0 needs no shape */
    assert_non_null(one);
    assert_int_equal(vikt_tensor_rank(one), 0);
    EXPECT_FAIL(m, vikt_cross_entropy_loss(m, a, NULL), VIKT_ERR_NULL, "vikt_cross_entropy_loss",
                "labels");
    vikt_model_destroy(m);
}

/* ---------------------------------------------------------- sticky errors */

static void first_error_is_sticky(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = input(m, 2, SHAPE(2, 3)), *w = input(m, 2, SHAPE(4, 5));
    /* A whole chain after a failing op: the first error survives. */
    vikt_tensor *h = vikt_matmul(m, a, w);
    vikt_tensor *r = vikt_relu(m, vikt_add(m, h, a));
    vikt_tensor *loss = vikt_mean(m, vikt_softmax(m, r));
    assert_null(h);
    assert_null(r);
    assert_null(loss);
    assert_int_equal(vikt_backward(m, loss), VIKT_ERR_NULL);
    assert_int_equal(vikt_model_errcode(m), VIKT_ERR_SHAPE);
    const char *msg = vikt_model_errmsg(m);
    assert_non_null(strstr(msg, "vikt_matmul"));
    assert_non_null(strstr(msg, "2x3 · 4x5"));
    assert_null(strstr(msg, "vikt_relu"));
    assert_null(strstr(msg, "vikt_add"));
    assert_null(strstr(msg, "vikt_backward"));

    /* Other kinds of failure later keep it too. */
    assert_int_equal(vikt_sgd_create(m, -1.0f, &(vikt_optimizer *){NULL}), VIKT_ERR_ARG);
    assert_null(vikt_transpose(m, input(m, 1, SHAPE(3))));
    assert_null(vikt_param(m, "", 1, SHAPE(1), VIKT_INIT_ZEROS));
    assert_int_equal(vikt_tensor_copy_in(a, NULL, 6), VIKT_ERR_NULL);
    /* Step boundaries keep it (documented). */
    assert_int_equal(vikt_step_begin(m), VIKT_OK);
    assert_int_equal(vikt_model_errcode(m), VIKT_ERR_SHAPE);
    assert_non_null(strstr(vikt_model_errmsg(m), "2x3 · 4x5"));

    /* Cleared: empty message, and the next error is recorded. */
    vikt_model_clear_error(m);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    assert_string_equal(vikt_model_errmsg(m), "");
    assert_null(vikt_relu(m, NULL));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_relu", "input 0 is NULL");
    assert_string_equal(vikt_model_errmsg(m), "");
    vikt_model_destroy(m);
}

/* A call that fails with its own code returns that code even when the model
 * already holds a different, earlier error. */
static void return_codes_do_not_echo_the_sticky_error(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    assert_null(vikt_relu(m, NULL)); /* sticky VIKT_ERR_NULL */
    vikt_tensor *t = (vikt_tensor *)&t;
    assert_int_equal(vikt_tensor_create(m, 5, SHAPE(1, 1, 1, 1, 1), NULL, 0, &t),
                     VIKT_ERR_SHAPE);
    assert_null(t);
    assert_int_equal(vikt_tensor_create(m, 1, SHAPE(-2), NULL, 0, &t), VIKT_ERR_SHAPE);
    assert_int_equal(vikt_sgd_create(m, NAN, &(vikt_optimizer *){NULL}), VIKT_ERR_ARG);
    assert_int_equal(vikt_tensor_create(m, 1, SHAPE(2), NULL, 0, &t), VIKT_OK);
    assert_int_equal(vikt_tensor_fill_uniform(t, 1.0f, 0.0f), VIKT_ERR_ARG);
    assert_int_equal(vikt_tensor_copy_out(t, (float[1]){0}, 1), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_relu", NULL);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------------ shape checks */

static void elementwise_shapes(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = input(m, 2, SHAPE(2, 3)), *b = input(m, 2, SHAPE(4, 3));
    vikt_tensor *c = input(m, 1, SHAPE(2)), *d = input(m, 3, SHAPE(5, 2, 4));
    static const char *names[4] = {"vikt_add", "vikt_sub", "vikt_mul", "vikt_div"};
    op2_fn fns[4] = {vikt_add, vikt_sub, vikt_mul, vikt_div};
    for (int k = 0; k < 4; k++) {
        EXPECT_FAIL(m, fns[k](m, a, b), VIKT_ERR_SHAPE, names[k], "2x3 and 4x3");
        EXPECT_FAIL(m, fns[k](m, b, a), VIKT_ERR_SHAPE, names[k], "4x3 and 2x3");
        EXPECT_FAIL(m, fns[k](m, a, c), VIKT_ERR_SHAPE, names[k], "2x3 and 2");
        EXPECT_FAIL(m, fns[k](m, d, a), VIKT_ERR_SHAPE, names[k], "5x2x4 and 2x3");
        /* Broadcastable pairs pass. */
        vikt_tensor *r1 = fns[k](m, a, input(m, 1, SHAPE(3)));
        vikt_tensor *r2 = fns[k](m, input(m, 2, SHAPE(2, 1)), input(m, 2, SHAPE(1, 3)));
        vikt_tensor *r3 = fns[k](m, input(m, 0, NULL), d);
        assert_non_null(r1);
        assert_non_null(r2);
        assert_non_null(r3);
        assert_int_equal(vikt_tensor_dim(r2, 0), 2);
        assert_int_equal(vikt_tensor_dim(r2, 1), 3);
        assert_int_equal(vikt_tensor_rank(r3), 3);
    }
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void matmul_shapes(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *x = input(m, 2, SHAPE(32, 784)), *w = input(m, 2, SHAPE(128, 10));
    EXPECT_FAIL(m, vikt_matmul(m, x, w), VIKT_ERR_SHAPE,
                "vikt_matmul: inner dimensions differ (32x784 · 128x10)", NULL);
    /* Transposed operands are marked. */
    vikt_tensor *p = input(m, 2, SHAPE(3, 4)), *q = input(m, 2, SHAPE(5, 2));
    EXPECT_FAIL(m, vikt_matmul_t(m, p, q, 1, 0), VIKT_ERR_SHAPE, "vikt_matmul", "3x4ᵀ · 5x2");
    EXPECT_FAIL(m, vikt_matmul_t(m, p, q, 0, 1), VIKT_ERR_SHAPE, "vikt_matmul", "3x4 · 5x2ᵀ");
    assert_non_null(vikt_matmul_t(m, p, input(m, 2, SHAPE(7, 4)), 0, 1)); /* 3x4 · (7x4)ᵀ */
    /* Batch sizes. */
    vikt_tensor *b1 = input(m, 3, SHAPE(2, 3, 4)), *b2 = input(m, 3, SHAPE(3, 4, 5));
    EXPECT_FAIL(m, vikt_matmul(m, b1, b2), VIKT_ERR_SHAPE, "vikt_matmul",
                "batch sizes differ (2x3x4 · 3x4x5)");
    /* Ranks other than 2 and 3. */
    vikt_tensor *v = input(m, 1, SHAPE(4)), *k = input(m, 2, SHAPE(4, 2));
    EXPECT_FAIL(m, vikt_matmul(m, v, k), VIKT_ERR_SHAPE, "vikt_matmul", "(4 · 4x2)");
    EXPECT_FAIL(m, vikt_matmul(m, k, v), VIKT_ERR_SHAPE, "vikt_matmul", "(4x2 · 4)");
    EXPECT_FAIL(m, vikt_matmul(m, input(m, 0, NULL), k), VIKT_ERR_SHAPE, "vikt_matmul",
                "scalar · 4x2");
    EXPECT_FAIL(m, vikt_matmul(m, input(m, 4, SHAPE(1, 2, 3, 4)), input(m, 2, SHAPE(4, 1))),
                VIKT_ERR_SHAPE, "vikt_matmul", "1x2x3x4 · 4x1");
    /* A valid product of each kind. */
    vikt_tensor *r = vikt_matmul(m, b1, input(m, 2, SHAPE(4, 6)));
    assert_non_null(r);
    assert_int_equal(vikt_tensor_rank(r), 3);
    assert_int_equal(vikt_tensor_dim(r, 2), 6);
    assert_non_null(vikt_matmul(m, b1, input(m, 3, SHAPE(2, 4, 1))));
    assert_non_null(vikt_matmul(m, x, input(m, 2, SHAPE(784, 10))));
    /* Transpose. */
    EXPECT_FAIL(m, vikt_transpose(m, v), VIKT_ERR_SHAPE, "vikt_transpose", "got 4");
    EXPECT_FAIL(m, vikt_transpose(m, input(m, 0, NULL)), VIKT_ERR_SHAPE, "vikt_transpose",
                "scalar");
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void reshape_concat_slice_shapes(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = input(m, 2, SHAPE(2, 3));
    EXPECT_FAIL(m, vikt_reshape(m, a, 2, SHAPE(4, 2)), VIKT_ERR_SHAPE, "vikt_reshape",
                "cannot reshape 2x3 (6 elements) to 4x2");
    EXPECT_FAIL(m, vikt_reshape(m, a, 2, SHAPE(-1, 4)), VIKT_ERR_SHAPE, "vikt_reshape",
                "2x3 (6 elements) to -1x4");
    EXPECT_FAIL(m, vikt_reshape(m, a, 2, SHAPE(-1, -1)), VIKT_ERR_SHAPE, "vikt_reshape", "2x3");
    EXPECT_FAIL(m, vikt_reshape(m, a, 2, SHAPE(-3, -2)), VIKT_ERR_SHAPE, "vikt_reshape", "2x3");
    EXPECT_FAIL(m, vikt_reshape(m, a, 5, SHAPE(1, 1, 2, 3, 1)), VIKT_ERR_SHAPE, "vikt_reshape",
                "rank 5");
    EXPECT_FAIL(m, vikt_reshape(m, a, 0, NULL), VIKT_ERR_SHAPE, "vikt_reshape", "to scalar");
    vikt_tensor *r = vikt_reshape(m, a, 3, SHAPE(3, -1, 1));
    assert_non_null(r);
    assert_int_equal(vikt_tensor_dim(r, 1), 2);

    vikt_tensor *b = input(m, 2, SHAPE(3, 3)), *v = input(m, 1, SHAPE(3));
    EXPECT_FAIL(m, vikt_concat(m, 2, (vikt_tensor *[]){a, b}, 1), VIKT_ERR_SHAPE, "vikt_concat",
                "input 1 (3x3) does not match input 0 (2x3)");
    EXPECT_FAIL(m, vikt_concat(m, 2, (vikt_tensor *[]){a, v}, 0), VIKT_ERR_SHAPE, "vikt_concat",
                "input 1 (3) does not match input 0 (2x3)");
    EXPECT_FAIL(m, vikt_concat(m, 2, (vikt_tensor *[]){a, b}, 2), VIKT_ERR_ARG, "vikt_concat",
                "axis 2 is out of range for 2x3");
    EXPECT_FAIL(m, vikt_concat(m, 2, (vikt_tensor *[]){a, b}, -3), VIKT_ERR_ARG, "vikt_concat",
                "axis -3 is out of range for 2x3");
    vikt_tensor *s0 = input(m, 0, NULL);
    EXPECT_FAIL(m, vikt_concat(m, 2, (vikt_tensor *[]){s0, s0}, 0), VIKT_ERR_ARG, "vikt_concat",
                "scalar");
    vikt_tensor *cat = vikt_concat(m, 2, (vikt_tensor *[]){a, b}, -2);
    assert_non_null(cat);
    assert_int_equal(vikt_tensor_dim(cat, 0), 5);

    vikt_tensor *g = input(m, 2, SHAPE(4, 5));
    EXPECT_FAIL(m, vikt_slice(m, g, 1, 3, 3), VIKT_ERR_ARG, "vikt_slice",
                "[3, 6) is outside axis 1 of 4x5");
    EXPECT_FAIL(m, vikt_slice(m, g, 0, -1, 2), VIKT_ERR_ARG, "vikt_slice", "4x5");
    EXPECT_FAIL(m, vikt_slice(m, g, 0, 5, 0), VIKT_ERR_ARG, "vikt_slice", "4x5");
    EXPECT_FAIL(m, vikt_slice(m, g, 0, 1, -1), VIKT_ERR_ARG, "vikt_slice", "4x5");
    EXPECT_FAIL(m, vikt_slice(m, g, 2, 0, 1), VIKT_ERR_ARG, "vikt_slice",
                "axis 2 is out of range for 4x5");
    EXPECT_FAIL(m, vikt_slice(m, g, -3, 0, 1), VIKT_ERR_ARG, "vikt_slice", "4x5");
    EXPECT_FAIL(m, vikt_slice(m, s0, 0, 0, 1), VIKT_ERR_ARG, "vikt_slice", "scalar");
    vikt_tensor *sl = vikt_slice(m, g, -1, 4, 1);
    assert_non_null(sl);
    assert_int_equal(vikt_tensor_dim(sl, 1), 1);
    assert_non_null(vikt_slice(m, g, 0, 4, 0)); /* empty at the end is in range */
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void reduction_and_softmax_shapes(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = input(m, 2, SHAPE(2, 3)), *s = input(m, 0, NULL);
    EXPECT_FAIL(m, vikt_sum_axis(m, a, 2, 0), VIKT_ERR_ARG, "vikt_sum_axis",
                "axis 2 is out of range for 2x3");
    EXPECT_FAIL(m, vikt_sum_axis(m, a, -3, 1), VIKT_ERR_ARG, "vikt_sum_axis", "2x3");
    EXPECT_FAIL(m, vikt_mean_axis(m, a, 2, 0), VIKT_ERR_ARG, "vikt_mean_axis",
                "axis 2 is out of range for 2x3");
    EXPECT_FAIL(m, vikt_mean_axis(m, a, -3, 0), VIKT_ERR_ARG, "vikt_mean_axis", "2x3");
    EXPECT_FAIL(m, vikt_sum_axis(m, s, 0, 0), VIKT_ERR_ARG, "vikt_sum_axis", "scalar");
    EXPECT_FAIL(m, vikt_mean_axis(m, s, 0, 0), VIKT_ERR_ARG, "vikt_mean_axis", "scalar");
    vikt_tensor *e = input(m, 2, SHAPE(0, 3));
    EXPECT_FAIL(m, vikt_mean(m, e), VIKT_ERR_SHAPE, "vikt_mean", "0x3");
    EXPECT_FAIL(m, vikt_mean_axis(m, e, 0, 0), VIKT_ERR_SHAPE, "vikt_mean_axis", "0x3");
    assert_non_null(vikt_sum(m, e));
    assert_non_null(vikt_sum_axis(m, a, -1, 0));
    EXPECT_FAIL(m, vikt_softmax(m, s), VIKT_ERR_SHAPE, "vikt_softmax", "scalar");
    EXPECT_FAIL(m, vikt_log_softmax(m, s), VIKT_ERR_SHAPE, "vikt_log_softmax", "scalar");
    assert_non_null(vikt_softmax(m, input(m, 1, SHAPE(4))));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void loss_shapes(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *p = input(m, 2, SHAPE(2, 3)), *t = input(m, 2, SHAPE(3, 2));
    vikt_tensor *v = input(m, 1, SHAPE(6));
    static const char *names[3] = {"vikt_mse_loss", "vikt_bce_with_logits_loss",
                                   "vikt_hinge_loss"};
    op2_fn fns[3] = {vikt_mse_loss, vikt_bce_with_logits_loss, vikt_hinge_loss};
    for (int k = 0; k < 3; k++) {
        EXPECT_FAIL(m, fns[k](m, p, t), VIKT_ERR_SHAPE, names[k], "2x3 and target 3x2");
        /* No broadcasting for losses. */
        EXPECT_FAIL(m, fns[k](m, p, v), VIKT_ERR_SHAPE, names[k], "2x3 and target 6");
        EXPECT_FAIL(m, fns[k](m, p, input(m, 1, SHAPE(3))), VIKT_ERR_SHAPE, names[k], "2x3");
        EXPECT_FAIL(m, fns[k](m, input(m, 2, SHAPE(0, 2)), input(m, 2, SHAPE(0, 2))),
                    VIKT_ERR_SHAPE, names[k], "0x2");
        vikt_tensor *ok = fns[k](m, p, input(m, 2, SHAPE(2, 3)));
        assert_non_null(ok);
        assert_int_equal(vikt_tensor_rank(ok), 0);
    }
    /* Cross-entropy: labels in range, logits [N, C]. */
    vikt_tensor *logits = input(m, 2, SHAPE(2, 3));
    EXPECT_FAIL(m, vikt_cross_entropy_loss(m, logits, (int32_t[]){0, 3}), VIKT_ERR_ARG,
                "vikt_cross_entropy_loss", "label 3 at row 1 is outside 0..2 for logits 2x3");
    EXPECT_FAIL(m, vikt_cross_entropy_loss(m, logits, (int32_t[]){-1, 0}), VIKT_ERR_ARG,
                "vikt_cross_entropy_loss", "2x3");
    EXPECT_FAIL(m, vikt_cross_entropy_loss(m, v, (int32_t[]){0, 0, 0, 0, 0, 0}), VIKT_ERR_SHAPE,
                "vikt_cross_entropy_loss", "got 6");
    EXPECT_FAIL(m, vikt_cross_entropy_loss(m, input(m, 3, SHAPE(1, 2, 3)), (int32_t[]){0, 0}),
                VIKT_ERR_SHAPE, "vikt_cross_entropy_loss", "1x2x3");
    EXPECT_FAIL(m, vikt_cross_entropy_loss(m, input(m, 2, SHAPE(2, 0)), (int32_t[]){0, 0}),
                VIKT_ERR_SHAPE, "vikt_cross_entropy_loss", "2x0");
    vikt_tensor *ce = vikt_cross_entropy_loss(m, logits, (int32_t[]){2, 0});
    assert_non_null(ce);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void dropout_probability(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *a = input(m, 2, SHAPE(4, 5));
    EXPECT_FAIL(m, vikt_dropout(m, a, 1.0f), VIKT_ERR_ARG, "vikt_dropout", "4x5");
    EXPECT_FAIL(m, vikt_dropout(m, a, -0.1f), VIKT_ERR_ARG, "vikt_dropout", "4x5");
    EXPECT_FAIL(m, vikt_dropout(m, a, 1.5f), VIKT_ERR_ARG, "vikt_dropout", "4x5");
    EXPECT_FAIL(m, vikt_dropout(m, a, NAN), VIKT_ERR_ARG, "vikt_dropout", "4x5");
    /* Checked in evaluation mode too. */
    vikt_set_training(m, 0);
    EXPECT_FAIL(m, vikt_dropout(m, a, 1.0f), VIKT_ERR_ARG, "vikt_dropout", "4x5");
    vikt_set_training(m, 1);
    assert_non_null(vikt_dropout(m, a, 0.0f));
    assert_non_null(vikt_dropout(m, a, 0.999f));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void param_checks(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "fc.weight", 2, SHAPE(2, 3), VIKT_INIT_XAVIER_UNIFORM);
    assert_non_null(w);
    assert_string_equal(vikt_tensor_name(w), "fc.weight");
    assert_ptr_equal(vikt_param(m, "fc.weight", 2, SHAPE(2, 3), VIKT_INIT_ZEROS), w);
    EXPECT_FAIL(m, vikt_param(m, "fc.weight", 2, SHAPE(3, 2), VIKT_INIT_XAVIER_UNIFORM),
                VIKT_ERR_SHAPE, "vikt_param", "'fc.weight' exists as 2x3, asked for 3x2");
    EXPECT_FAIL(m, vikt_param(m, "fc.weight", 1, SHAPE(6), VIKT_INIT_ZEROS), VIKT_ERR_SHAPE,
                "vikt_param", "exists as 2x3, asked for 6");
    EXPECT_FAIL(m, vikt_param(m, "fc.weight", 0, NULL, VIKT_INIT_ZEROS), VIKT_ERR_SHAPE,
                "vikt_param", "exists as 2x3, asked for scalar");
    EXPECT_FAIL(m, vikt_param(m, "", 1, SHAPE(3), VIKT_INIT_ZEROS), VIKT_ERR_ARG, "vikt_param",
                "empty");
    EXPECT_FAIL(m, vikt_param(m, "b", 1, SHAPE(3), (vikt_init)42), VIKT_ERR_ARG, "vikt_param",
                "unknown initializer 42");
    EXPECT_FAIL(m, vikt_param(m, "b", 1, SHAPE(3), (vikt_init)-1), VIKT_ERR_ARG, "vikt_param",
                "unknown initializer -1");
    const vikt_init fan_based[4] = {VIKT_INIT_XAVIER_UNIFORM, VIKT_INIT_XAVIER_NORMAL,
                                    VIKT_INIT_KAIMING_UNIFORM, VIKT_INIT_KAIMING_NORMAL};
    for (int k = 0; k < 4; k++) {
        EXPECT_FAIL(m, vikt_param(m, "v", 1, SHAPE(7), fan_based[k]), VIKT_ERR_ARG, "vikt_param",
                    "'v' is 7");
        EXPECT_FAIL(m, vikt_param(m, "s", 0, NULL, fan_based[k]), VIKT_ERR_ARG, "vikt_param",
                    "'s' is scalar");
        EXPECT_FAIL(m, vikt_param(m, "e", 2, SHAPE(0, 3), fan_based[k]), VIKT_ERR_ARG,
                    "vikt_param", "'e' is 0x3");
    }
    EXPECT_FAIL(m, vikt_param(m, "r", 5, SHAPE(1, 1, 1, 1, 1), VIKT_INIT_ZEROS), VIKT_ERR_SHAPE,
                "vikt_param", "rank 5");
    EXPECT_FAIL(m, vikt_param(m, "n", 2, SHAPE(2, -1), VIKT_INIT_ZEROS), VIKT_ERR_SHAPE,
                "vikt_param", "negative");
    /* Nothing failed was registered. */
    assert_int_equal(vikt_param_count(m), 1);
    assert_null(vikt_param_find(m, "v"));
    assert_null(vikt_param_find(m, "b"));
    assert_int_equal(vikt_model_num_params(m), 6);
    /* Zeros and ones are fine on any rank. */
    assert_non_null(vikt_param(m, "v", 1, SHAPE(7), VIKT_INIT_ONES));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void sgd_learning_rate(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    const float bad[4] = {-0.1f, NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 4; k++) {
        vikt_optimizer *opt = (vikt_optimizer *)&opt;
        assert_int_equal(vikt_sgd_create(m, bad[k], &opt), VIKT_ERR_ARG);
        assert_null(opt);
        vt_expect_error(m, VIKT_ERR_ARG, "vikt_sgd_create", "must be finite and >= 0");
    }
    vikt_optimizer *opt = NULL;
    assert_int_equal(vikt_sgd_create(m, 0.0f, &opt), VIKT_OK);
    assert_non_null(opt);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

static void backward_preconditions(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "w", 2, SHAPE(2, 3), VIKT_INIT_ONES);
    /* Not one element. */
    vikt_tensor *y = vikt_scale(m, w, 2.0f);
    assert_int_equal(vikt_backward(m, y), VIKT_ERR_SHAPE);
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_backward", "2x3");
    /* One element but not recorded: a leaf. */
    vikt_tensor *leaf;
    assert_int_equal(vikt_tensor_create(m, 2, SHAPE(1, 1), (float[]){1}, 1, &leaf), VIKT_OK);
    assert_int_equal(vikt_backward(m, leaf), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_backward", NULL);
    assert_int_equal(vikt_backward(m, input(m, 0, NULL)), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_backward", NULL);
    /* No input requires a gradient. */
    vikt_tensor *c = vikt_sum(m, input(m, 2, SHAPE(2, 2)));
    assert_non_null(c);
    assert_int_equal(vikt_backward(m, c), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_backward", NULL);
    /* Gradients disabled. */
    vikt_set_grad_enabled(m, 0);
    vikt_tensor *off = vikt_sum(m, w);
    assert_non_null(off);
    assert_int_equal(vikt_backward(m, off), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_backward", NULL);
    vikt_set_grad_enabled(m, 1);
    /* A loss from another model is not on this tape. */
    vikt_model *m2 = vt_model(2);
    vikt_tensor *w2 = vikt_param(m2, "w", 1, SHAPE(3), VIKT_INIT_ONES);
    vikt_tensor *l2 = vikt_sum(m2, w2);
    assert_int_equal(vikt_backward(m, l2), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "vikt_backward", NULL);
    assert_int_equal(vikt_model_errcode(m2), VIKT_OK);
    assert_float_equal(vikt_tensor_grad(w2)[0], 0.0f, 0);
    /* The model holds an error: refused, and the error kept. */
    assert_null(vikt_relu(m, NULL));
    vikt_tensor *l = vikt_sum(m, w);
    assert_int_equal(vikt_backward(m, l), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_relu", NULL);
    for (int i = 0; i < 6; i++) assert_float_equal(vikt_tensor_grad(w)[i], 0.0f, 0);
    /* And the valid call works. */
    assert_int_equal(vikt_backward(m, l), VIKT_OK);
    for (int i = 0; i < 6; i++) assert_float_equal(vikt_tensor_grad(w)[i], 1.0f, 0);
    /* A [1, 1] loss is one element. */
    vikt_tensor *l11 = vikt_reshape(m, l, 2, SHAPE(1, 1));
    assert_int_equal(vikt_backward(m, l11), VIKT_OK);
    assert_float_equal(vikt_tensor_grad(w)[0], 2.0f, 0);
    vikt_model_destroy(m2);
    vikt_model_destroy(m);
}

static void optimizer_step_refuses_while_error_held(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "w", 1, SHAPE(2), VIKT_INIT_ONES);
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(m, 0.5f, &opt), VIKT_OK);
    assert_int_equal(vikt_backward(m, vikt_sum(m, w)), VIKT_OK);
    assert_null(vikt_exp(m, NULL));
    assert_int_equal(vikt_optimizer_step(opt), VIKT_ERR_STATE);
    assert_float_equal(vikt_tensor_data(w)[0], 1.0f, 0);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_exp", NULL);
    assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
    assert_float_equal(vikt_tensor_data(w)[0], 0.5f, 0);
    assert_float_equal(vikt_tensor_data(w)[1], 0.5f, 0);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

static void tensors_of_two_models(void **state) {
    (void)state;
    vikt_model *m1 = vt_model(1), *m2 = vt_model(2);
    vikt_tensor *a = input(m1, 2, SHAPE(2, 2)), *b = input(m2, 2, SHAPE(2, 2));
    for (size_t k = 0; k < NOPS; k++) {
        const op_case *c = &OPS[k];
        if (c->nin == 2) {
            if (c->fn(m1, a, b)) fail_msg("%s: mixed models gave a tensor", c->name);
            vt_expect_error(m1, VIKT_ERR_ARG, c->name, "input 1 belongs to another model");
            if (c->fn(m1, b, a)) fail_msg("%s: mixed models gave a tensor", c->name);
            vt_expect_error(m1, VIKT_ERR_ARG, c->name, "input 0 belongs to another model");
        }
        /* Every input from the other model. */
        if (c->fn(m1, b, b)) fail_msg("%s: foreign inputs gave a tensor", c->name);
        vt_expect_error(m1, VIKT_ERR_ARG, c->name, "input 0 belongs to another model");
        assert_int_equal(vikt_model_errcode(m2), VIKT_OK);
    }
    EXPECT_FAIL(m1, vikt_concat(m1, 3, (vikt_tensor *[]){a, a, b}, 0), VIKT_ERR_ARG,
                "vikt_concat", "input 2 belongs to another model");
    /* Persistent tensors too. */
    vikt_tensor *p2 = vikt_param(m2, "w", 2, SHAPE(2, 2), VIKT_INIT_ONES);
    EXPECT_FAIL(m1, vikt_matmul(m1, a, p2), VIKT_ERR_ARG, "vikt_matmul", "another model");
    assert_float_equal(vikt_tensor_grad(p2)[0], 0.0f, 0);
    vikt_model_destroy(m1);
    vikt_model_destroy(m2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_matches_macros),
        cmocka_unit_test(strerror_every_code),
        cmocka_unit_test(model_create_arguments),
        cmocka_unit_test(destroy_null_does_nothing),
        cmocka_unit_test(model_functions_with_null),
        cmocka_unit_test(tensor_functions_with_null),
        cmocka_unit_test(param_functions_with_null),
        cmocka_unit_test(optimizer_functions_with_null),
        cmocka_unit_test(newer_functions_with_null),
        cmocka_unit_test(every_op_with_null),
        cmocka_unit_test(op_array_arguments_null),
        cmocka_unit_test(first_error_is_sticky),
        cmocka_unit_test(return_codes_do_not_echo_the_sticky_error),
        cmocka_unit_test(elementwise_shapes),
        cmocka_unit_test(matmul_shapes),
        cmocka_unit_test(reshape_concat_slice_shapes),
        cmocka_unit_test(reduction_and_softmax_shapes),
        cmocka_unit_test(loss_shapes),
        cmocka_unit_test(dropout_probability),
        cmocka_unit_test(param_checks),
        cmocka_unit_test(sgd_learning_rate),
        cmocka_unit_test(backward_preconditions),
        cmocka_unit_test(optimizer_step_refuses_while_error_held),
        cmocka_unit_test(tensors_of_two_models),
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
