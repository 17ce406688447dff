/* Fashion-MNIST with a small CNN: two 3×3 convolutions with batch norm,
 * max pooling, dropout and one dense layer, fewer than 100K parameters,
 * trained with the fit loop (Adam, cosine schedule, random horizontal
 * flips, a validation split for early stopping) and measured on the 10,000
 * test images.
 *
 *   make fashion-mnist   (gunzips the Debian package's files into
 *                         build/data/fashion-mnist and runs this on 2 threads)
 *   build/examples/fashion_mnist --help
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vikt.h>

#define EXAMPLE_NAME "fashion_mnist"
#include "example_util.h"

enum { CLASSES = 10, BATCH = 64, VAL_COUNT = 5000 };

typedef struct options {
    long epochs, threads, seed, conv1, conv2;
    int flip;
    float lr, dropout;
    const char *data;
} options;

/* What the forward function needs besides the model: the architecture and
 * the generator of the flips. */
typedef struct net {
    const options *opt;
    uint64_t flip_state;
} net;

/* ------------------------------------------------------------- the model */

/* splitmix64: a small generator of our own for the flips, so they depend on
 * the seed alone and not on how many numbers the model's generator (init,
 * dropout, shuffles) has drawn. */
static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Mirror about half of the images of a [B, 1, H, W] batch left to right, in
 * place: the batch is a fresh copy in the step arena, so the dataset keeps
 * its images. A shirt mirrored is still a shirt, which is why this helps. */
static void flip_half(vikt_tensor *x, uint64_t *state) {
    int64_t b = vikt_tensor_dim(x, 0), h = vikt_tensor_dim(x, 2), w = vikt_tensor_dim(x, 3);
    float *p = vikt_tensor_data(x);
    for (int64_t i = 0; i < b; i++) {
        if (next_random(state) >> 63) continue;
        float *img = p + i * h * w;
        for (int64_t r = 0; r < h; r++)
            for (int64_t c = 0; c < w / 2; c++) {
                float t = img[r * w + c];
                img[r * w + c] = img[r * w + w - 1 - c];
                img[r * w + w - 1 - c] = t;
            }
    }
}

/* conv 3×3 (padding 1) → batch norm → ReLU → 2×2 max pool: 28 → 14 → 7. */
static vikt_tensor *block(vikt_model *m, const char *conv, const char *bn, vikt_tensor *x,
                          int64_t channels) {
    vikt_tensor *h = vikt_conv2d(m, conv, x, channels, 3, 1, 1, 1);
    h = vikt_relu(m, vikt_batch_norm(m, bn, h, 0.1f, 1e-5f));
    return vikt_max_pool2d(m, h, 2, 0);
}

/* The model definition, run by the trainer for every batch; flips only
 * while training (evaluation runs with vikt_training() 0). */
static vikt_tensor *forward(vikt_model *m, vikt_tensor *x, void *ud) {
    net *n = ud;
    if (x && n->opt->flip && vikt_training(m)) flip_half(x, &n->flip_state);
    vikt_tensor *h = block(m, "conv1", "bn1", x, n->opt->conv1);
    h = block(m, "conv2", "bn2", h, n->opt->conv2);
    h = vikt_dropout(m, vikt_flatten(m, h), n->opt->dropout);
    return vikt_dense(m, "fc", h, CLASSES);
}

/* ------------------------------------------------------------ the program */

static void usage(FILE *f) {
    fprintf(f,
            "usage: fashion_mnist [options]\n"
            "  --data DIR      folder with the uncompressed IDX files\n"
            "                  (default build/data/fashion-mnist; `make fashion-mnist` makes it)\n"
            "  --epochs N      training epochs (default 12)\n"
            "  --threads N     worker threads (default 2)\n"
            "  --seed N        seed of initialization, shuffles, split, dropout, flips (default 1)\n"
            "  --channels A,B  channels of the two convolutions (default 32,64)\n"
            "  --lr X          Adam's peak learning rate (default 0.002)\n"
            "  --dropout P     dropout before the dense layer (default 0.3)\n"
            "  --no-flip       no random horizontal flips\n"
            "  --help          this text\n");
}

/* A number in lo..hi, the value of option `flag`; -1 with a message when it
 * is missing, not a number or out of range. */
static int parse_float(const char *flag, const char *s, float lo, float hi, float *out) {
    char *end;
    float v = s ? strtof(s, &end) : 0.0f;
    if (!s || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, EXAMPLE_NAME ": %s needs a number in %g..%g\n", flag, (double)lo,
                (double)hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* "A,B": the channels of the two convolutions, each 1..1024. */
static int parse_channels(const char *flag, const char *v, options *o) {
    char first[32];
    const char *comma = v ? strchr(v, ',') : NULL;
    size_t len = comma ? (size_t)(comma - v) : 0;
    if (!comma || len >= sizeof first) {
        fprintf(stderr, EXAMPLE_NAME ": %s needs two whole numbers A,B\n", flag);
        return -1;
    }
    memcpy(first, v, len);
    first[len] = '\0';
    return ex_parse_long(flag, first, 1, 1024, &o->conv1) ||
                   ex_parse_long(flag, comma + 1, 1, 1024, &o->conv2)
               ? -1
               : 0;
}

/* For ex_parse_options: --data as given, the rest range-checked (--channels
 * as A,B); 1 for a flag this example does not have. */
static int option(void *ud, const char *a, const char *v) {
    options *o = ud;
    if (!strcmp(a, "--data")) {
        if (!v) fprintf(stderr, EXAMPLE_NAME ": --data needs a folder\n");
        o->data = v;
        return v ? 0 : -1;
    }
    if (!strcmp(a, "--epochs")) return ex_parse_long(a, v, 1, 1000, &o->epochs);
    if (!strcmp(a, "--threads")) return ex_parse_long(a, v, 1, 256, &o->threads);
    if (!strcmp(a, "--seed")) return ex_parse_long(a, v, 0, LONG_MAX, &o->seed);
    if (!strcmp(a, "--channels")) return parse_channels(a, v, o);
    if (!strcmp(a, "--lr")) return parse_float(a, v, 0.0f, 1.0f, &o->lr);
    if (!strcmp(a, "--dropout")) return parse_float(a, v, 0.0f, 0.99f, &o->dropout);
    return 1; /* not an option of this example */
}

/* Takes the switch --no-flip (an option without a value) out of argv, so
 * that the rest are --flag value pairs for ex_parse_options. */
static int take_no_flip(int argc, char **argv, options *o) {
    int kept = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-flip")) o->flip = 0;
        else argv[kept++] = argv[i];
    }
    return kept;
}

/* Returns 0 to run, 1 after --help, -1 on a bad option. */
static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.epochs = 12, .threads = 2, .flip = 1, .seed = 1, .conv1 = 32, .conv2 = 64,
                   .lr = 2e-3f, .dropout = 0.3f, .data = "build/data/fashion-mnist"};
    argc = take_no_flip(argc, argv, o);
    return ex_parse_options(argc, argv, usage, option, o);
}

static double cpu_seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Load "<dir>/<prefix>-images-idx3-ubyte" with its labels. */
static int load(vikt_model *m, const char *dir, const char *prefix, vikt_dataset **out) {
    char images[4096], labels[4096];
    int a = snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte", dir, prefix);
    int b = snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte", dir, prefix);
    if (a < 0 || (size_t)a >= sizeof images || b < 0 || (size_t)b >= sizeof labels) {
        fprintf(stderr, "fashion_mnist: the data folder name is too long\n");
        return 1;
    }
    if (ex_failed(m, "loading", vikt_dataset_load_idx(m, images, labels, out))) {
        fprintf(stderr, "fashion_mnist: run `make fashion-mnist` (it gunzips the files of the "
                        "Debian package dataset-fashion-mnist) or pass --data DIR\n");
        return 1;
    }
    return 0;
}

/* Make the parameters with one forward pass in evaluation mode (nothing is
 * learned, no running statistic moves) so the table can be printed first. */
static int build_and_print(vikt_model *m, const vikt_dataset *ds, net *n) {
    vikt_set_training(m, 0);
    vikt_set_grad_enabled(m, 0);
    vikt_step_begin(m);
    vikt_tensor *logits = forward(m, vikt_dataset_input(ds, 0, 2), n);
    vikt_set_training(m, 1);
    vikt_set_grad_enabled(m, 1);
    if (!logits) return ex_failed(m, "building the model", -1);
    char table[2048];
    int64_t len = vikt_model_summary(m, table, sizeof table);
    if (ex_failed(m, "summary", len)) return 1;
    printf("%s%s\n", table, (size_t)len >= sizeof table ? "...\n" : "");
    int64_t params = vikt_model_num_params(m);
    printf("parameters: %lld (%s 100K)\n\n", (long long)params, params < 100000 ? "under" : "NOT under");
    return 0;
}

/* Prints each epoch's line (the trainer's own) as it comes, to stdout. */
static void write_stdout(void *ud, const char *text, size_t len) {
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static int run(const options *o) {
    vikt_model *m = NULL;
    vikt_dataset *all = NULL, *train = NULL, *val = NULL, *test = NULL;
    vikt_optimizer *adam = NULL;
    vikt_trainer *trainer = NULL;
    net n = {o, (uint64_t)o->seed ^ 0x5DEECE66Dull};
    int status = 1;
    if (ex_model_create((uint64_t)o->seed, &m)) return 1;
    if (ex_failed(m, "threads", vikt_set_num_threads(m, (int)o->threads))) goto done;
    if (load(m, o->data, "train", &all) || load(m, o->data, "t10k", &test)) goto done;
    /* 55,000 images to learn from, 5,000 to choose the epoch with. */
    if (ex_failed(m, "split", vikt_dataset_split(all, VAL_COUNT, &train, &val))) goto done;
    int64_t n_train = vikt_dataset_size(train);
    int64_t steps = (n_train + BATCH - 1) / BATCH;
    printf("vikt %s, GEMM %s, %ld thread(s), seed %llu\n", vikt_version(), vikt_gemm_isa(),
           o->threads, (unsigned long long)o->seed);
    printf("Fashion-MNIST: %lld train / %lld validation / %lld test images\n",
           (long long)n_train, (long long)vikt_dataset_size(val),
           (long long)vikt_dataset_size(test));
    printf("CNN conv3x3(%lld)-BN-ReLU-pool2, conv3x3(%lld)-BN-ReLU-pool2, dropout %.2f, "
           "dense 10; %s\n",
           (long long)o->conv1, (long long)o->conv2, (double)o->dropout,
           o->flip ? "random horizontal flips" : "no flips");
    printf("Adam lr %g, cosine over %ld epochs x %lld steps, batch %d\n\n", (double)o->lr,
           o->epochs, (long long)steps, BATCH);
    if (build_and_print(m, train, &n)) goto done;

    int setup_failed =
        vikt_adam_create(m, o->lr, &adam) ||
        vikt_optimizer_set(adam, VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_COSINE) ||
        vikt_optimizer_set(adam, VIKT_OPT_T_MAX, (double)(steps * o->epochs)) ||
        vikt_trainer_create(m, adam, forward, &n, &trainer) ||
        vikt_trainer_set(trainer, VIKT_FIT_EPOCHS, o->epochs) ||
        vikt_trainer_set(trainer, VIKT_FIT_BATCH_SIZE, BATCH) ||
        /* Stop when validation loss has not improved for 3 epochs and keep
         * the best epoch's parameters (with the cosine schedule that is
         * usually the last). */
        vikt_trainer_set(trainer, VIKT_FIT_PATIENCE, 3) ||
        vikt_trainer_set(trainer, VIKT_FIT_PROGRESS, VIKT_PROGRESS_PLAIN) ||
        vikt_trainer_set_output(trainer, write_stdout, NULL);
    if (ex_failed(m, "setting up training", setup_failed ? -1 : 0)) goto done;
    double wall0 = wall_seconds(), cpu0 = cpu_seconds();
    if (ex_failed(m, "training", vikt_trainer_fit(trainer, train, val))) goto done;
    double wall = wall_seconds() - wall0, cpu = cpu_seconds() - cpu0, epochs_run, best;
    if (ex_failed(m, "reading results", vikt_trainer_get(trainer, VIKT_FIT_EPOCH, &epochs_run)) ||
        ex_failed(m, "reading results", vikt_trainer_get(trainer, VIKT_FIT_BEST_EPOCH, &best)))
        goto done;
    printf("\ntraining: %.0f epochs in %.1f s wall (%.1f s per epoch), %.1f s CPU; best "
           "validation epoch %.0f\n",
           epochs_run, wall, wall / epochs_run, cpu, best);

    double test_loss, test_acc;
    if (ex_failed(m, "testing", vikt_trainer_evaluate(trainer, test, &test_loss, &test_acc)))
        goto done;
    printf("test: loss %.4f  accuracy %.4f (%lld images)\n", test_loss, test_acc,
           (long long)vikt_dataset_size(test));
    status = test_acc >= 0.92 ? 0 : 1;
    if (status) printf("test accuracy is below the 0.92 goal\n");
done:
    vikt_trainer_destroy(trainer);
    vikt_optimizer_destroy(adam);
    vikt_dataset_destroy(train);
    vikt_dataset_destroy(val);
    vikt_dataset_destroy(test);
    vikt_dataset_destroy(all);
    vikt_model_destroy(m);
    return status;
}

int main(int argc, char **argv) {
    options o;
    int parsed = parse_options(argc, argv, &o);
    return parsed ? (parsed > 0 ? 0 : 2) : run(&o); /* 0 after --help, 2 on a bad option */
}
