/* Continual learning with elastic weight consolidation (EWC) on the digits.
 *
 * Task A is the digits 0-4, task B the digits 5-9, learned one after the
 * other by one MLP whose output layer has a head of 5 logits per task
 * (task-incremental learning: the task of a test sample is known, so an
 * A digit is the largest of the A logits). The hidden layer is shared, and
 * that is where plain fine-tuning on B forgets A: B moves the features
 * under A's head. EWC holds the weights A relied on near their A values,
 * in proportion to their Fisher information, and so keeps A.
 *
 *   make examples && build/examples/ewc_digits data/digits.csv [seeds] [lambda]
 *
 * For seeds 1 to 5 (or [seeds]) prints the A and B test accuracies after
 * task A, then after task B trained plainly and with EWC (lambda 1000 by
 * default), both from the same model after task A, and their means. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vikt.h>

#define FEATURES 64
#define HIDDEN 16
#define HEAD 5 /* logits per task */
#define BATCH 32
#define EPOCHS_A 30
#define EPOCHS_B 100
#define LR 0.05f /* SGD with momentum 0.9 */

#define CHECK(m, what)                                                                \
    do {                                                                              \
        if (vikt_model_errcode(m)) {                                                  \
            fprintf(stderr, "ewc_digits: %s: %s\n", what, vikt_model_errmsg(m));      \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* A task: its samples, labels renumbered 0-4 within the task. */
typedef struct task {
    const char *name;
    const char *head; /* this task's output layer */
    vikt_dataset *train, *test;
} task;

typedef struct net {
    const char *head;
} net;

/* The shared trunk and the head of one task: [batch, 5] logits. */
static vikt_tensor *forward(vikt_model *m, vikt_tensor *x, void *ud) {
    const net *n = ud;
    vikt_tensor *h = vikt_relu(m, vikt_dense(m, "trunk", x, HIDDEN));
    return vikt_dense(m, n->head, h, HEAD);
}

/* Samples of the digits lo to lo + 4 from the loaded file, as a dataset
 * over host arrays (returned to be freed after it), split 3:1 into train
 * and test. */
static void make_task(vikt_model *m, vikt_dataset *all, int lo, float **features,
                      int32_t **labels, task *t) {
    int64_t n = vikt_dataset_size(all), kept = 0;
    float *fx = malloc((size_t)n * FEATURES * sizeof *fx);
    int32_t *ly = malloc((size_t)n * sizeof *ly);
    float row[FEATURES];
    int32_t y;
    if (!fx || !ly) exit(1);
    for (int64_t i = 0; i < n; i++) {
        vikt_dataset_copy_batch(all, i, 1, row, &y, NULL);
        if (y < lo || y >= lo + HEAD) continue;
        memcpy(fx + kept * FEATURES, row, sizeof row);
        ly[kept++] = y - lo;
    }
    vikt_dataset *ds;
    if (vikt_dataset_create(m, kept, 1, (int64_t[]){FEATURES}, fx, ly, NULL, 0, &ds)) CHECK(m, "task");
    if (vikt_dataset_split(ds, kept / 4, &t->train, &t->test)) CHECK(m, "split");
    vikt_dataset_destroy(ds);
    *features = fx;
    *labels = ly;
}

/* Share of correct test predictions of a task's head. */
static double accuracy(vikt_model *m, const task *t) {
    net n = {t->head};
    int64_t size = vikt_dataset_size(t->test), correct = 0;
    vikt_set_grad_enabled(m, 0);
    for (int64_t i = 0; i < size; i += BATCH) {
        int64_t count = size - i < BATCH ? size - i : BATCH;
        int32_t y[BATCH];
        vikt_step_begin(m);
        vikt_dataset_copy_batch(t->test, i, count, NULL, y, NULL);
        const float *logits = vikt_tensor_data(forward(m, vikt_dataset_input(t->test, i, count), &n));
        CHECK(m, "evaluation");
        for (int64_t r = 0; r < count; r++) {
            int best = 0;
            for (int c = 1; c < HEAD; c++)
                if (logits[r * HEAD + c] > logits[r * HEAD + best]) best = c;
            correct += best == y[r];
        }
    }
    vikt_set_grad_enabled(m, 1);
    return (double)correct / (double)size;
}

/* Epochs of mini-batch SGD on a task; with ewc, its penalty is added to
 * the loss. */
static void train(vikt_model *m, const task *t, int epochs, float lr, vikt_ewc *ewc,
                  float lambda) {
    net n = {t->head};
    vikt_optimizer *opt;
    if (vikt_sgd_create(m, lr, &opt)) CHECK(m, "optimizer");
    vikt_optimizer_set(opt, VIKT_OPT_MOMENTUM, 0.9);
    int64_t size = vikt_dataset_size(t->train);
    for (int e = 0; e < epochs; e++) {
        vikt_dataset_shuffle(t->train);
        for (int64_t i = 0; i + BATCH <= size; i += BATCH) {
            int32_t y[BATCH];
            vikt_step_begin(m);
            vikt_zero_grad(m);
            vikt_dataset_copy_batch(t->train, i, BATCH, NULL, y, NULL);
            vikt_tensor *logits = forward(m, vikt_dataset_input(t->train, i, BATCH), &n);
            vikt_tensor *loss = vikt_cross_entropy_loss(m, logits, y);
            if (ewc) loss = vikt_add(m, loss, vikt_ewc_penalty(ewc, lambda));
            vikt_backward(m, loss);
            vikt_optimizer_step(opt);
            CHECK(m, t->name);
        }
    }
    vikt_optimizer_destroy(opt);
}

/* Every parameter's values to or from a host copy (the model after A). */
static void copy_params(vikt_model *m, float *store, int restore) {
    for (int64_t i = 0, at = 0; i < vikt_param_count(m); i++) {
        vikt_tensor *p = vikt_param_at(m, i);
        size_t bytes = (size_t)vikt_tensor_numel(p) * sizeof(float);
        if (restore)
            memcpy(vikt_tensor_data(p), store + at, bytes);
        else
            memcpy(store + at, vikt_tensor_data(p), bytes);
        at += vikt_tensor_numel(p);
    }
}

/* One run: A, then B plainly and with EWC from the same model after A.
 * Fills acc[0..5]: A and B after A, after plain B, after EWC B. */
static void run(const char *path, unsigned long seed, float lambda, double acc[6]) {
    vikt_model *m;
    if (vikt_model_create(NULL, seed, &m)) exit(1);
    vikt_dataset *all;
    if (vikt_dataset_load_csv(m, path, 0, -1, ',', 10, &all)) CHECK(m, "load");
    vikt_dataset_scale(all, 1.0f / 16.0f, 0.0f);
    task a = {"task A (digits 0-4)", "head_a", NULL, NULL};
    task b = {"task B (digits 5-9)", "head_b", NULL, NULL};
    float *fa, *fb;
    int32_t *la, *lb;
    make_task(m, all, 0, &fa, &la, &a);
    make_task(m, all, 5, &fb, &lb, &b);
    vikt_dataset_destroy(all);

    /* Create every parameter (both heads) before training A, so the copy
     * below and the EWC state cover them all. */
    vikt_step_begin(m);
    forward(m, vikt_dataset_input(a.train, 0, 1), &(net){"head_a"});
    forward(m, vikt_dataset_input(b.train, 0, 1), &(net){"head_b"});
    CHECK(m, "parameters");

    train(m, &a, EPOCHS_A, LR, NULL, 0);
    acc[0] = accuracy(m, &a);
    acc[1] = accuracy(m, &b);

    /* The Fisher of task A, sample by sample (the empirical Fisher), and
     * the anchor: the parameters after A. */
    vikt_ewc *ewc;
    if (vikt_ewc_create(m, &ewc)) CHECK(m, "ewc");
    if (vikt_ewc_accumulate_dataset(ewc, a.train, forward, &(net){"head_a"},
                                    VIKT_LOSS_CROSS_ENTROPY, 1) < 0)
        CHECK(m, "fisher");
    if (vikt_ewc_consolidate(ewc, 1.0f)) CHECK(m, "consolidate");

    float *after_a = malloc((size_t)vikt_model_num_params(m) * sizeof *after_a);
    if (!after_a) exit(1);
    copy_params(m, after_a, 0);

    /* Both runs on B draw their shuffles from the same seed. */
    vikt_model_seed(m, seed + 1000);
    train(m, &b, EPOCHS_B, LR, NULL, 0);
    acc[2] = accuracy(m, &a);
    acc[3] = accuracy(m, &b);

    copy_params(m, after_a, 1);
    vikt_model_seed(m, seed + 1000);
    train(m, &b, EPOCHS_B, LR, ewc, lambda);
    acc[4] = accuracy(m, &a);
    acc[5] = accuracy(m, &b);

    free(after_a);
    vikt_ewc_destroy(ewc);
    vikt_dataset_destroy(a.train);
    vikt_dataset_destroy(a.test);
    vikt_dataset_destroy(b.train);
    vikt_dataset_destroy(b.test);
    vikt_model_destroy(m);
    free(fa);
    free(fb);
    free(la);
    free(lb);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "data/digits.csv";
    int seeds = argc > 2 ? atoi(argv[2]) : 5;
    float lambda = argc > 3 ? strtof(argv[3], NULL) : 1000.0f;
    if (seeds < 1) seeds = 1;
    printf("test accuracy on A (digits 0-4) and B (digits 5-9); lambda = %g\n", (double)lambda);
    printf("seed | after A     | after B, plain | after B, EWC\n");
    printf("     |   A     B   |   A      B     |   A      B\n");
    double mean[6] = {0};
    for (int s = 1; s <= seeds; s++) {
        double acc[6];
        run(path, (unsigned long)s, lambda, acc);
        printf("%4d | %.3f %.3f | %.3f  %.3f   | %.3f  %.3f\n", s, acc[0], acc[1], acc[2],
               acc[3], acc[4], acc[5]);
        for (int k = 0; k < 6; k++) mean[k] += acc[k] / seeds;
    }
    printf("mean | %.3f %.3f | %.3f  %.3f   | %.3f  %.3f\n", mean[0], mean[1], mean[2],
           mean[3], mean[4], mean[5]);
    printf("task A after B: plain fine-tuning keeps %.1f%%, EWC keeps %.1f%%\n",
           100.0 * mean[2], 100.0 * mean[4]);
    return 0;
}
