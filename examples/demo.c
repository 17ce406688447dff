/* The demo: first the textbook pair of parameters (slope and intercept of a
 * line), then a small MLP whose weights and biases learn handwritten digits.
 *
 *   make demo        (runs: build/examples/demo data/digits.csv)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

enum { PIXELS = 64, CLASSES = 10, MAX_ROWS = 2000, HIDDEN = 64 };

/* Reads "p0,...,p63,label" rows; reports file:line:column of the first bad
 * field instead of guessing. */
static int load_digits(const char *path, float *x, int32_t *y, int *rows) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (n == MAX_ROWS) break;
        char *p = line;
        for (int col = 0; col <= PIXELS; col++) {
            char *end;
            long v = strtol(p, &end, 10);
            int last = col == PIXELS;
            if (end == p || v < 0 || v > (last ? CLASSES - 1 : 16) ||
                (*end != (last ? '\n' : ',') && !(last && *end == '\0'))) {
                fprintf(stderr, "%s:%d:%d: expected %s\n", path, n + 1, (int)(p - line) + 1,
                        last ? "a label 0..9 at the end of the line" : "a pixel 0..16 and a comma");
                fclose(f);
                return -1;
            }
            if (last)
                y[n] = (int32_t)v;
            else
                x[n * PIXELS + col] = (float)v / 16.0f;
            p = end + 1;
        }
        n++;
    }
    fclose(f);
    *rows = n;
    return 0;
}

/* The model definition is plain C, re-run every step; the layers create
 * fc1.weight [64, 64], fc1.bias, fc2.weight [10, 64] and fc2.bias on the
 * first call (PyTorch's layout and default initialization). */
static vikt_tensor *mlp(vikt_model *m, vikt_tensor *x) {
    vikt_tensor *h = vikt_relu(m, vikt_dense(m, "fc1", x, HIDDEN));
    return vikt_dense(m, "fc2", h, CLASSES);
}

static double accuracy(vikt_model *m, const float *x, const int32_t *y, int n) {
    vikt_set_grad_enabled(m, 0);
    vikt_step_begin(m);
    vikt_tensor *logits = mlp(m, vikt_input(m, 2, (int64_t[]){n, PIXELS}, x));
    vikt_set_grad_enabled(m, 1);
    if (!logits) return -1;
    const float *z = vikt_tensor_data(logits);
    int correct = 0;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < CLASSES; c++)
            if (z[i * CLASSES + c] > z[i * CLASSES + best]) best = c;
        correct += best == y[i];
    }
    return (double)correct / n;
}

/* Fisher–Yates driven by a fixed 32-bit LCG (not rand(), which differs
 * between C libraries), so the 75/25 split is the same everywhere. */
static void shuffle(float *x, int32_t *y, int n) {
    uint32_t state = 2024;
    for (int i = n - 1; i > 0; i--) {
        state = state * 1664525u + 1013904223u;
        int j = (int)((state >> 8) % (uint32_t)(i + 1));
        float tmp[PIXELS];
        memcpy(tmp, x + i * PIXELS, sizeof tmp);
        memcpy(x + i * PIXELS, x + j * PIXELS, sizeof tmp);
        memcpy(x + j * PIXELS, tmp, sizeof tmp);
        int32_t t = y[i];
        y[i] = y[j];
        y[j] = t;
    }
}

static int fit_digits(const char *path) {
    static float x[MAX_ROWS * PIXELS];
    static int32_t y[MAX_ROWS];
    int rows;
    if (load_digits(path, x, y, &rows)) return 1;
    shuffle(x, y, rows);
    int train = rows * 3 / 4, test = rows - train;
    const float *xt = x + train * PIXELS;
    const int32_t *yt = y + train;

    vikt_model *m;
    vikt_optimizer *adam;
    if (vikt_model_create(NULL, 42, &m)) return 1;
    if (vikt_adam_create(m, 3e-3f, &adam)) return 1;
    enum { BATCH = 32, EPOCHS = 15 };
    printf("digits: %d train / %d test rows, MLP %d-%d-%d, ReLU, Adam lr 3e-3, batch %d\n", train,
           test, PIXELS, HIDDEN, CLASSES, BATCH);
    double acc = 0;
    for (int epoch = 1; epoch <= EPOCHS; epoch++) {
        double total = 0;
        int batches = 0;
        for (int start = 0; start + BATCH <= train; start += BATCH, batches++) {
            vikt_step_begin(m);
            vikt_zero_grad(m);
            vikt_tensor *in = vikt_input(m, 2, (int64_t[]){BATCH, PIXELS}, x + start * PIXELS);
            vikt_tensor *loss = vikt_cross_entropy_loss(m, mlp(m, in), y + start);
            vikt_backward(m, loss);
            vikt_optimizer_step(adam);
            CHECK(m, "digits step");
            total += vikt_tensor_data(loss)[0];
        }
        acc = accuracy(m, xt, yt, test);
        CHECK(m, "evaluation");
        printf("digits: epoch %2d  loss %.4f  test accuracy %.4f\n", epoch, total / batches, acc);
    }
    char table[1024];
    vikt_model_summary(m, table, sizeof table);
    printf("\n%s\ndigits: final test accuracy %.4f\n", table, acc);
    vikt_optimizer_destroy(adam);
    vikt_model_destroy(m);
    return acc >= 0.95 ? 0 : 1;
}

int main(int argc, char **argv) {
    printf("vikt %s demo\n\n", vikt_version());
    if (fit_line()) return 1;
    return fit_digits(argc > 1 ? argv[1] : "data/digits.csv");
}
