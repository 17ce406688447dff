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
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vikt.h>

enum { CLASSES = 10, BATCH = 64, VAL_COUNT = 5000 };

typedef struct options {
    int epochs, threads, flip;
    uint64_t seed;
    int64_t conv1, conv2;
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

/* Parse a whole decimal number in [lo, hi]. */
static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int parse_float(const char *s, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

/* Returns 0 to run, 1 for an error, 2 after --help. */
static int parse_args(int argc, char **argv, options *o) {
    *o = (options){12, 2, 1, 1, 32, 64, 2e-3f, 0.3f, "build/data/fashion-mnist"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n, n2;
        int ok = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 2;
        } else if (!strcmp(a, "--no-flip")) {
            o->flip = 0;
            continue;
        } else if (!v) {
            ok = 0;
        } else if (!strcmp(a, "--data")) {
            o->data = v;
        } else if (!strcmp(a, "--epochs")) {
            ok = parse_int(v, 1, 1000, &n) && (o->epochs = (int)n, 1);
        } else if (!strcmp(a, "--threads")) {
            ok = parse_int(v, 1, 256, &n) && (o->threads = (int)n, 1);
        } else if (!strcmp(a, "--seed")) {
            ok = parse_int(v, 0, INT64_MAX, &n) && (o->seed = (uint64_t)n, 1);
        } else if (!strcmp(a, "--channels")) {
            char first[32];
            const char *comma = strchr(v, ',');
            size_t len = comma ? (size_t)(comma - v) : 0;
            ok = comma && len < sizeof first;
            if (ok) {
                memcpy(first, v, len);
                first[len] = '\0';
                ok = parse_int(first, 1, 1024, &n) && parse_int(comma + 1, 1, 1024, &n2);
            }
            if (ok) o->conv1 = n, o->conv2 = n2;
        } else if (!strcmp(a, "--lr")) {
            ok = parse_float(v, 0.0f, 1.0f, &o->lr);
        } else if (!strcmp(a, "--dropout")) {
            ok = parse_float(v, 0.0f, 0.99f, &o->dropout);
        } else {
            ok = 0;
        }
        if (!ok) {
            fprintf(stderr, "fashion_mnist: bad option '%s'%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return 1;
        }
        i++;
    }
    return 0;
}

static double cpu_seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(vikt_model *m, const char *what) {
    fprintf(stderr, "fashion_mnist: %s: %s\n", what, vikt_model_errmsg(m));
    return 1;
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
    if (vikt_dataset_load_idx(m, images, labels, out)) {
        fail(m, "loading");
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
    if (!logits) return fail(m, "building the model");
    char table[2048];
    int64_t len = vikt_model_summary(m, table, sizeof table);
    if (len < 0) return fail(m, "summary");
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
    net n = {o, o->seed ^ 0x5DEECE66Dull};
    int status = 1;
    if (vikt_model_create(NULL, o->seed, &m)) {
        fprintf(stderr, "fashion_mnist: out of memory\n");
        return 1;
    }
    if (vikt_set_num_threads(m, o->threads)) {
        fail(m, "threads");
        goto done;
    }
    if (load(m, o->data, "train", &all) || load(m, o->data, "t10k", &test)) goto done;
    /* 55,000 images to learn from, 5,000 to choose the epoch with. */
    if (vikt_dataset_split(all, VAL_COUNT, &train, &val)) {
        fail(m, "split");
        goto done;
    }
    int64_t n_train = vikt_dataset_size(train);
    int64_t steps = (n_train + BATCH - 1) / BATCH;
    printf("vikt %s, GEMM %s, %d thread(s), seed %llu\n", vikt_version(), vikt_gemm_isa(),
           o->threads, (unsigned long long)o->seed);
    printf("Fashion-MNIST: %lld train / %lld validation / %lld test images\n",
           (long long)n_train, (long long)vikt_dataset_size(val),
           (long long)vikt_dataset_size(test));
    printf("CNN conv3x3(%lld)-BN-ReLU-pool2, conv3x3(%lld)-BN-ReLU-pool2, dropout %.2f, "
           "dense 10; %s\n",
           (long long)o->conv1, (long long)o->conv2, (double)o->dropout,
           o->flip ? "random horizontal flips" : "no flips");
    printf("Adam lr %g, cosine over %d epochs x %lld steps, batch %d\n\n", (double)o->lr,
           o->epochs, (long long)steps, BATCH);
    if (build_and_print(m, train, &n)) goto done;

    if (vikt_adam_create(m, o->lr, &adam) ||
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
        vikt_trainer_set_output(trainer, write_stdout, NULL)) {
        fail(m, "setting up training");
        goto done;
    }
    double wall0 = wall_seconds(), cpu0 = cpu_seconds();
    if (vikt_trainer_fit(trainer, train, val)) {
        fail(m, "training");
        goto done;
    }
    double wall = wall_seconds() - wall0, cpu = cpu_seconds() - cpu0, epochs_run, best;
    if (vikt_trainer_get(trainer, VIKT_FIT_EPOCH, &epochs_run) ||
        vikt_trainer_get(trainer, VIKT_FIT_BEST_EPOCH, &best)) {
        fail(m, "reading results");
        goto done;
    }
    printf("\ntraining: %.0f epochs in %.1f s wall (%.1f s per epoch), %.1f s CPU; best "
           "validation epoch %.0f\n",
           epochs_run, wall, wall / epochs_run, cpu, best);

    double test_loss, test_acc;
    if (vikt_trainer_evaluate(trainer, test, &test_loss, &test_acc)) {
        fail(m, "testing");
        goto done;
    }
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
    int parsed = parse_args(argc, argv, &o);
    if (parsed) return parsed == 2 ? 0 : 2;
    return run(&o);
}
