/* The demo: first the textbook pair of parameters (slope and intercept of a
 * line), then a small MLP whose weights and biases learn handwritten digits.
 *
 *   make demo        (runs: build/examples/demo data/digits.csv)
 */
#include <stdio.h>
#include <vikt.h>

#define CHECK(m, what)                                                                \
    do {                                                                              \
        if (vikt_model_errcode(m)) {                                                  \
            fprintf(stderr, "demo: %s: %s\n", what, vikt_model_errmsg(m));            \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

/* ------------------------------------------------------------ y = m·x + b */

static int fit_line(void) {
    enum { N = 200 };
    const float true_m = 3.0f, true_b = -0.5f;
    vikt_model *model;
    if (vikt_model_create(NULL, 7, &model)) return 1;

    /* Points on the line with a little Gaussian noise, from the model's seed. */
    vikt_tensor *x = vikt_rand(model, 2, (int64_t[]){N, 1}, -1.0f, 1.0f);
    vikt_tensor *noise = vikt_randn(model, 2, (int64_t[]){N, 1}, 0.0f, 0.05f);
    CHECK(model, "data");
    float xs[N], ys[N];
    for (int i = 0; i < N; i++) {
        xs[i] = vikt_tensor_data(x)[i];
        ys[i] = true_m * xs[i] + true_b + vikt_tensor_data(noise)[i];
    }

    vikt_tensor *m = vikt_param(model, "m", 2, (int64_t[]){1, 1}, VIKT_INIT_ZEROS);
    vikt_tensor *b = vikt_param(model, "b", 1, (int64_t[]){1}, VIKT_INIT_ZEROS);
    vikt_optimizer *sgd;
    if (vikt_sgd_create(model, 0.5f, &sgd)) return 1;
    float loss = 0;
    for (int step = 0; step < 200; step++) {
        vikt_step_begin(model);
        vikt_zero_grad(model);
        vikt_tensor *in = vikt_input(model, 2, (int64_t[]){N, 1}, xs);
        vikt_tensor *target = vikt_input(model, 2, (int64_t[]){N, 1}, ys);
        vikt_tensor *mse = vikt_mse_loss(model, vikt_add(model, vikt_matmul(model, in, m), b), target);
        vikt_backward(model, mse);
        vikt_optimizer_step(sgd);
        CHECK(model, "line step");
        loss = vikt_tensor_data(mse)[0];
    }
    printf("line: y = m*x + b from %d noisy points (true m = %.2f, b = %.2f)\n", N,
           (double)true_m, (double)true_b);
    printf("line: learned m = %.4f, b = %.4f, mse = %.5f\n\n", (double)vikt_tensor_data(m)[0],
           (double)vikt_tensor_data(b)[0], (double)loss);
    vikt_optimizer_destroy(sgd);
    vikt_model_destroy(model);
    return 0;
}

/* ------------------------------------------------------------------ digits */

enum { PIXELS = 64, CLASSES = 10, HIDDEN = 64 };

/* The model definition is plain C, re-run every step; the layers create
 * fc1.weight [64, 64], fc1.bias, fc2.weight [10, 64] and fc2.bias on the
 * first call (PyTorch's layout and default initialization). */
static vikt_tensor *mlp(vikt_model *m, vikt_tensor *x) {
    vikt_tensor *h = vikt_relu(m, vikt_dense(m, "fc1", x, HIDDEN));
    return vikt_dense(m, "fc2", h, CLASSES);
}

static double accuracy(vikt_model *m, const vikt_dataset *test) {
    enum { CHUNK = 256 };
    int64_t n = vikt_dataset_size(test);
    int32_t labels[CHUNK];
    int correct = 0;
    vikt_set_grad_enabled(m, 0);
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t count = n - start < CHUNK ? n - start : CHUNK;
        vikt_step_begin(m);
        vikt_tensor *logits = mlp(m, vikt_dataset_input(test, start, count));
        if (!logits || vikt_dataset_copy_batch(test, start, count, NULL, labels, NULL)) break;
        const float *z = vikt_tensor_data(logits);
        for (int64_t i = 0; i < count; i++) {
            int best = 0;
            for (int c = 1; c < CLASSES; c++)
                if (z[i * CLASSES + c] > z[i * CLASSES + best]) best = c;
            correct += best == labels[i];
        }
    }
    vikt_set_grad_enabled(m, 1);
    return (double)correct / (double)n;
}

/* One hand-written training loop: the same public calls vikt_trainer_fit()
 * makes, spelled out. */
static int fit_digits(const char *path) {
    vikt_model *m;
    vikt_optimizer *adam;
    vikt_dataset *all, *train, *test;
    if (vikt_model_create(NULL, 42, &m)) return 1;
    /* Pixels 0..16 and the label last; the loader reports FILE:LINE:COLUMN
     * of a bad field instead of guessing. A 75/25 split from the seed. */
    if (vikt_dataset_load_csv(m, path, 0, -1, ',', CLASSES, &all) ||
        vikt_dataset_scale(all, 1.0f / 16.0f, 0.0f) ||
        vikt_dataset_split(all, vikt_dataset_size(all) / 4, &train, &test)) {
        fprintf(stderr, "demo: %s\n", vikt_model_errmsg(m));
        return 1;
    }
    vikt_dataset_destroy(all);
    if (vikt_adam_create(m, 3e-3f, &adam)) return 1;
    enum { BATCH = 32, EPOCHS = 15 };
    int64_t rows = vikt_dataset_size(train);
    printf("digits: %lld train / %lld test rows, MLP %d-%d-%d, ReLU, Adam lr 3e-3, batch %d\n",
           (long long)rows, (long long)vikt_dataset_size(test), PIXELS, HIDDEN, CLASSES, BATCH);
    double acc = 0;
    int32_t labels[BATCH];
    for (int epoch = 1; epoch <= EPOCHS; epoch++) {
        double total = 0;
        int batches = 0;
        vikt_dataset_shuffle(train);
        for (int64_t start = 0; start + BATCH <= rows; start += BATCH, batches++) {
            vikt_step_begin(m);
            vikt_zero_grad(m);
            vikt_tensor *in = vikt_dataset_input(train, start, BATCH);
            vikt_dataset_copy_batch(train, start, BATCH, NULL, labels, NULL);
            vikt_tensor *loss = vikt_cross_entropy_loss(m, mlp(m, in), labels);
            vikt_backward(m, loss);
            vikt_optimizer_step(adam);
            CHECK(m, "digits step");
            total += vikt_tensor_data(loss)[0];
        }
        acc = accuracy(m, test);
        CHECK(m, "evaluation");
        printf("digits: epoch %2d  loss %.4f  test accuracy %.4f\n", epoch, total / batches, acc);
    }
    char table[1024];
    vikt_model_summary(m, table, sizeof table);
    printf("\n%s\ndigits: final test accuracy %.4f\n", table, acc);
    vikt_optimizer_destroy(adam);
    vikt_dataset_destroy(train);
    vikt_dataset_destroy(test);
    vikt_model_destroy(m);
    return acc >= 0.95 ? 0 : 1;
}

int main(int argc, char **argv) {
    printf("vikt %s demo\n\n", vikt_version());
    if (fit_line()) return 1;
    return fit_digits(argc > 1 ? argv[1] : "data/digits.csv");
}
