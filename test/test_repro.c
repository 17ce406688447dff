/* Reproducibility: the same seed, data and thread count give bitwise the same
 * parameters after training, for a model that touches every random source
 * (initializers, dropout) and the layer families. */
#include "support.h"

#include <stdlib.h>
#include <string.h>

enum { BATCH = 4, SEQ = 6, DIM = 8, STEPS = 5 };

/* One step of a small model: conv → pool → dense on an image, and a
 * transformer block → LSTM → MoE on a sequence; dropout on both paths. */
static vikt_tensor *forward(vikt_model *m, const float *img, const float *seq,
                            const int32_t *labels, vikt_tensor **seq_loss) {
    vikt_tensor *x = vikt_input(m, 4, (int64_t[]){BATCH, 1, 8, 8}, img);
    vikt_tensor *h = vikt_relu(m, vikt_conv2d(m, "conv", x, 4, 3, 1, 1, 1));
    h = vikt_dropout(m, vikt_flatten(m, vikt_max_pool2d(m, h, 2, 2)), 0.2f);
    vikt_tensor *logits = vikt_dense(m, "head", h, 3);
    vikt_tensor *s = vikt_input(m, 3, (int64_t[]){BATCH, SEQ, DIM}, seq);
    s = vikt_transformer_block(m, "block0", s, 2, 16, 1);
    s = vikt_lstm(m, "lstm", s, DIM, NULL, NULL, NULL, NULL);
    vikt_tensor *aux = NULL;
    s = vikt_moe(m, "moe", vikt_dropout(m, s, 0.1f), 3, 8, 2, &aux);
    *seq_loss = vikt_add(m, vikt_mean(m, vikt_square(m, s)), vikt_scale(m, aux, 0.01f));
    return vikt_cross_entropy_loss(m, logits, labels);
}

/* Train from seed with n threads; return a malloc'd copy of every parameter. */
static float *train(uint64_t seed, int threads, int64_t *total) {
    vikt_model *m = vt_model(seed);
    assert_int_equal(vikt_set_num_threads(m, threads), VIKT_OK);
    vikt_optimizer *opt;
    assert_int_equal(vikt_optimizer_create(m, VIKT_OPTIM_ADAMW, 1e-2f, &opt), VIKT_OK);
    float img[BATCH * 64], seq[BATCH * SEQ * DIM];
    vt_fill(img, BATCH * 64, 1, 0, 1);
    vt_fill(seq, BATCH * SEQ * DIM, 2, -1, 1);
    const int32_t labels[BATCH] = {0, 2, 1, 2};
    for (int step = 0; step < STEPS; step++) {
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *seq_loss;
        vikt_tensor *loss = forward(m, img, seq, labels, &seq_loss);
        assert_int_equal(vikt_backward(m, vikt_add(m, loss, seq_loss)), VIKT_OK);
        assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
    }
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    *total = vikt_model_num_params(m);
    assert_true(*total > 1000); /* every layer above made its parameters */
    float *all = malloc((size_t)*total * sizeof(float)), *at = all;
    for (int64_t i = 0; i < vikt_param_count(m); i++) {
        vikt_tensor *p = vikt_param_at(m, i);
        assert_int_equal(vikt_tensor_copy_out(p, at, vikt_tensor_numel(p)), VIKT_OK);
        at += vikt_tensor_numel(p);
    }
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    return all;
}

static void same_seed_same_bytes(void **state) {
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        int64_t n1, n2;
        float *a = train(42, threads, &n1), *b = train(42, threads, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(a, b, (size_t)n1 * sizeof(float));
        free(a);
        free(b);
    }
}

/* Partitioning the output, never K, makes the thread count invisible too. */
static void thread_count_does_not_change_bytes(void **state) {
    (void)state;
    int64_t n1, n3;
    float *a = train(42, 1, &n1), *b = train(42, 3, &n3);
    assert_int_equal(n1, n3);
    assert_memory_equal(a, b, (size_t)n1 * sizeof(float));
    free(a);
    free(b);
}

static void other_seed_other_bytes(void **state) {
    (void)state;
    int64_t n1, n2;
    float *a = train(42, 1, &n1), *b = train(43, 1, &n2);
    assert_int_equal(n1, n2);
    assert_memory_not_equal(a, b, (size_t)n1 * sizeof(float));
    free(a);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_seed_same_bytes),
        cmocka_unit_test(thread_count_does_not_change_bytes),
        cmocka_unit_test(other_seed_other_bytes),
    };
    return cmocka_run_group_tests_name("repro", tests, NULL, NULL);
}
