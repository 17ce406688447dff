/* Zero allocations in steady state: after the first step, full training
 * steps (vikt_step_begin, zero_grad, forward, loss, backward, optimizer step)
 * of the models make bench-train times make no allocator call, at one and at
 * two threads. The first step creates the parameters, the optimizer state,
 * the arena chunks and the GEMM packing buffers; every later step of the
 * same shapes must reuse them. Shapes are the benchmark's (the transformer's
 * batch is 4 rather than 16 to keep the scalar and sanitizer runs short; its
 * products are still large enough to be split among threads). */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The inputs of one model's step, made once per test. */
typedef struct batch {
    int64_t n;
    float *x, *y;
    int32_t *ids, *pos, *labels;
} batch;

typedef vikt_tensor *(*loss_fn)(vikt_model *m, const batch *b);

static float *values(int64_t n, uint32_t seed) {
    float *p = malloc((size_t)n * sizeof *p);
    assert_non_null(p);
    vt_fill(p, n, seed, -1, 1);
    return p;
}

static int32_t *classes(int64_t n, int32_t count, uint32_t seed) {
    int32_t *p = malloc((size_t)n * sizeof *p);
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = (int32_t)((i * 7 + seed) % (uint32_t)count);
    return p;
}

static void batch_free(batch *b) {
    free(b->x), free(b->y), free(b->ids), free(b->pos), free(b->labels);
}

static vikt_tensor *mlp_loss(vikt_model *m, const batch *b) {
    vikt_tensor *x = vikt_input(m, 2, (int64_t[]){b->n, 784}, b->x);
    vikt_tensor *h = vikt_relu(m, vikt_dense(m, "fc1", x, 256));
    h = vikt_relu(m, vikt_dense(m, "fc2", h, 256));
    return vikt_cross_entropy_loss(m, vikt_dense(m, "fc3", h, 10), b->labels);
}

static vikt_tensor *cnn_loss(vikt_model *m, const batch *b) {
    vikt_tensor *x = vikt_input(m, 4, (int64_t[]){b->n, 1, 28, 28}, b->x);
    vikt_tensor *h = vikt_max_pool2d(m, vikt_relu(m, vikt_conv2d(m, "c1", x, 8, 3, 1, 0, 1)), 2, 2);
    h = vikt_max_pool2d(m, vikt_relu(m, vikt_conv2d(m, "c2", h, 16, 3, 1, 0, 1)), 2, 2);
    return vikt_cross_entropy_loss(m, vikt_dense(m, "fc", vikt_flatten(m, h), 10), b->labels);
}

enum { VOCAB = 65, CONTEXT = 64, D_MODEL = 64 };

static vikt_tensor *transformer_loss(vikt_model *m, const batch *b) {
    vikt_tensor *tok = vikt_embedding(m, "tok", b->ids, 2, (int64_t[]){b->n, CONTEXT}, VOCAB,
                                      D_MODEL);
    vikt_tensor *pos = vikt_embedding(m, "pos", b->pos, 1, (int64_t[]){CONTEXT}, CONTEXT, D_MODEL);
    vikt_tensor *h = vikt_add(m, tok, pos);
    h = vikt_transformer_block(m, "b0", h, 4, 4 * D_MODEL, 1);
    h = vikt_transformer_block(m, "b1", h, 4, 4 * D_MODEL, 1);
    vikt_tensor *logits = vikt_dense(m, "head", vikt_layer_norm(m, "ln_f", h, 1e-5f), VOCAB);
    logits = vikt_reshape(m, logits, 2, (int64_t[]){b->n * CONTEXT, VOCAB});
    return vikt_cross_entropy_loss(m, logits, b->labels);
}

static vikt_tensor *lstm_loss(vikt_model *m, const batch *b) {
    int64_t shape[3] = {b->n, 32, 32};
    vikt_tensor *h = vikt_lstm(m, "lstm", vikt_input(m, 3, shape, b->x), 128, NULL, NULL, NULL,
                               NULL);
    return vikt_mse_loss(m, vikt_dense(m, "out", h, 32), vikt_input(m, 3, shape, b->y));
}

/* Steps of the model at the thread count: step 1 may allocate, steps 2..6
 * must not call the allocator at all (alloc or free). */
static void expect_steady(const char *what, loss_fn loss, const batch *b, vikt_optim_kind kind,
                          int threads) {
    vt_alloc_reset();
    vikt_model *m = vt_model(5);
    if (threads > 1 && vikt_set_num_threads(m, threads) != VIKT_OK) {
        vikt_model_clear_error(m); /* a build without threads: one is all there is */
        threads = 1;
    }
    vikt_optimizer *opt = NULL;
    assert_int_equal(vikt_optimizer_create(m, kind, 1e-3f, &opt), VIKT_OK);
    int64_t calls = 0, frees = 0;
    for (int step = 0; step < 6; step++) {
        if (step == 1) calls = vt_stats.calls, frees = vt_stats.frees;
        assert_int_equal(vikt_step_begin(m), VIKT_OK);
        assert_int_equal(vikt_zero_grad(m), VIKT_OK);
        vikt_tensor *l = loss(m, b);
        if (!l || vikt_backward(m, l) || vikt_optimizer_step(opt))
            fail_msg("%s, %d threads, step %d: %s", what, threads, step, vikt_model_errmsg(m));
        if (step > 0 && (vt_stats.calls != calls || vt_stats.frees != frees))
            fail_msg("%s, %d threads: step %d made %lld allocations and %lld frees", what, threads,
                     step, (long long)(vt_stats.calls - calls), (long long)(vt_stats.frees - frees));
    }
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

static void mlp_steady(void **state) {
    (void)state;
    batch b = {64, values(64 * 784, 1), NULL, NULL, NULL, classes(64, 10, 2)};
    expect_steady("mlp", mlp_loss, &b, VIKT_OPTIM_ADAM, 1);
    expect_steady("mlp", mlp_loss, &b, VIKT_OPTIM_ADAM, 2);
    b.n = 1; /* the online-learning step */
    expect_steady("mlp1", mlp_loss, &b, VIKT_OPTIM_ADAM, 1);
    expect_steady("mlp1", mlp_loss, &b, VIKT_OPTIM_ADAM, 2);
    batch_free(&b);
}

static void cnn_steady(void **state) {
    (void)state;
    batch b = {32, values(32 * 28 * 28, 3), NULL, NULL, NULL, classes(32, 10, 4)};
    expect_steady("cnn", cnn_loss, &b, VIKT_OPTIM_ADAM, 1);
    expect_steady("cnn", cnn_loss, &b, VIKT_OPTIM_ADAM, 2);
    batch_free(&b);
}

static void transformer_steady(void **state) {
    (void)state;
    batch b = {4, NULL, NULL, classes(4 * CONTEXT, VOCAB, 5), classes(CONTEXT, CONTEXT, 0),
               classes(4 * CONTEXT, VOCAB, 6)};
    for (int t = 0; t < CONTEXT; t++) b.pos[t] = t;
    expect_steady("transformer", transformer_loss, &b, VIKT_OPTIM_ADAMW, 1);
    expect_steady("transformer", transformer_loss, &b, VIKT_OPTIM_ADAMW, 2);
    batch_free(&b);
}

static void lstm_steady(void **state) {
    (void)state;
    batch b = {16, values(16 * 32 * 32, 7), values(16 * 32 * 32, 8), NULL, NULL, NULL};
    expect_steady("lstm", lstm_loss, &b, VIKT_OPTIM_ADAM, 1);
    expect_steady("lstm", lstm_loss, &b, VIKT_OPTIM_ADAM, 2);
    batch_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mlp_steady),
        cmocka_unit_test(cnn_steady),
        cmocka_unit_test(transformer_steady),
        cmocka_unit_test(lstm_steady),
    };
    return cmocka_run_group_tests_name("steady_alloc", tests, NULL, NULL);
}
