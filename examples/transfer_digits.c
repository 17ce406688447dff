/* Transfer learning on the 8×8 digits: train a base network on the digits
 * 0–4, save it, load its hidden layers by name into a network whose head is
 * new and answers 5–9, freeze those layers and fine-tune the head on a few
 * labelled samples; compare with the same network trained from scratch on
 * the same samples for the same number of steps.
 *
 *   make examples && build/examples/transfer_digits [--help]
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vikt.h>

enum { PIXELS = 64, CLASSES = 10, HALF = 5, CHANNELS = 32, FEATURES = CHANNELS * 4 * 4 };

typedef struct options {
    const char *csv, *base_file;
    uint64_t first_seed;
    int seeds;           /* runs, with seeds first_seed, first_seed + 1, ... */
    int shots;           /* labelled samples per class of 5–9 to fine-tune on */
    int base_epochs, fine_steps;
    const char *freeze; /* the prefix frozen after loading */
} options;

/* All 1797 samples on the host: the loader's dataset copied out once so
 * subsets by class can be made with vikt_dataset_create() (which borrows
 * caller arrays). */
typedef struct digits {
    int64_t n;
    float *x;   /* n × PIXELS, scaled to [0, 1] */
    int32_t *y; /* n labels 0..9 */
} digits;

/* A subset: its own arrays, labels shifted to 0..4. */
typedef struct subset {
    int64_t n;
    float *x;
    int32_t *y;
} subset;

/* ------------------------------------------------------------- the model */

/* The base, two 3×3 convolutions ("base.conv1", "base.conv2", 32 channels
 * each), is shared by both tasks: stroke detectors carry over from 0–4 to
 * 5–9. Only the first is pooled, so 32×4×4 = 512 features reach the head
 * (pooling again to 2×2 lost too much for the new classes). The head is
 * named after its task, so the 0–4 head in the file and the new 5–9 head
 * are different parameters and the load report lists both. */
static vikt_tensor *net(vikt_model *m, vikt_tensor *x, void *ud) {
    const char *head = ud;
    vikt_tensor *h = vikt_relu(m, vikt_conv2d(m, "base.conv1", x, CHANNELS, 3, 1, 1, 1));
    h = vikt_max_pool2d(m, h, 2, 0);
    h = vikt_relu(m, vikt_conv2d(m, "base.conv2", h, CHANNELS, 3, 1, 1, 1));
    return vikt_dense(m, head, vikt_flatten(m, h), HALF);
}

static const char HEAD_0TO4[] = "head_0to4", HEAD_5TO9[] = "head_5to9";

/* ------------------------------------------------------------------ data */

/* splitmix64, for choosing the few labelled samples from the seed. */
static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int load_digits(const char *path, digits *d) {
    vikt_model *m;
    vikt_dataset *ds = NULL;
    int status = 1;
    memset(d, 0, sizeof *d);
    if (vikt_model_create(NULL, 0, &m)) return 1;
    if (vikt_dataset_load_csv(m, path, 0, -1, ',', CLASSES, &ds) ||
        vikt_dataset_scale(ds, 1.0f / 16.0f, 0.0f)) {
        fprintf(stderr, "transfer_digits: %s\n", vikt_model_errmsg(m));
        goto done;
    }
    d->n = vikt_dataset_size(ds);
    d->x = malloc((size_t)d->n * PIXELS * sizeof *d->x);
    d->y = malloc((size_t)d->n * sizeof *d->y);
    if (!d->x || !d->y) {
        fprintf(stderr, "transfer_digits: out of memory\n");
        goto done;
    }
    /* A fresh load's order is the file's order. */
    if (vikt_dataset_copy_batch(ds, 0, d->n, d->x, d->y, NULL)) {
        fprintf(stderr, "transfer_digits: %s\n", vikt_model_errmsg(m));
        goto done;
    }
    status = 0;
done:
    vikt_dataset_destroy(ds);
    vikt_model_destroy(m);
    return status;
}

static void digits_free(digits *d) {
    free(d->x);
    free(d->y);
}

static int subset_alloc(subset *s, int64_t n) {
    s->n = 0;
    s->x = malloc((size_t)(n ? n : 1) * PIXELS * sizeof *s->x);
    s->y = malloc((size_t)(n ? n : 1) * sizeof *s->y);
    return s->x && s->y ? 0 : 1;
}

static void subset_add(subset *s, const digits *d, int64_t i, int32_t label) {
    memcpy(s->x + s->n * PIXELS, d->x + i * PIXELS, PIXELS * sizeof *s->x);
    s->y[s->n++] = label;
}

static void subset_free(subset *s) {
    free(s->x);
    free(s->y);
}

/* The data of one run: every digit 0–4 (the base task, labels 0..4), and
 * the digits 5–9 (labels 5..9 become 0..4) split into `shots` per class to
 * fine-tune on, chosen at random from the seed, and the rest to test on. */
typedef struct split {
    subset base, few, test;
} split;

static int make_split(const digits *d, int shots, uint64_t seed, split *s) {
    memset(s, 0, sizeof *s);
    int64_t *order = malloc((size_t)d->n * sizeof *order);
    if (!order || subset_alloc(&s->base, d->n) || subset_alloc(&s->few, d->n) ||
        subset_alloc(&s->test, d->n)) {
        free(order);
        fprintf(stderr, "transfer_digits: out of memory\n");
        return 1;
    }
    uint64_t state = seed;
    for (int64_t i = 0; i < d->n; i++) order[i] = i;
    for (int64_t i = d->n - 1; i > 0; i--) { /* Fisher–Yates */
        int64_t j = (int64_t)(next_random(&state) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    int taken[HALF] = {0};
    for (int64_t k = 0; k < d->n; k++) {
        int64_t i = order[k];
        int32_t y = d->y[i];
        if (y < HALF) {
            subset_add(&s->base, d, i, y);
        } else if (taken[y - HALF] < shots) {
            taken[y - HALF]++;
            subset_add(&s->few, d, i, y - HALF);
        } else {
            subset_add(&s->test, d, i, y - HALF);
        }
    }
    free(order);
    return 0;
}

static void split_free(split *s) {
    subset_free(&s->base);
    subset_free(&s->few);
    subset_free(&s->test);
}

static int dataset_of(vikt_model *m, const subset *s, vikt_dataset **out) {
    const int64_t shape[] = {1, 8, 8};
    return vikt_dataset_create(m, s->n, 3, shape, s->x, s->y, NULL, 0, out);
}

/* ------------------------------------------------------------ training */

static int fail(vikt_model *m, const char *what) {
    fprintf(stderr, "transfer_digits: %s: %s\n", what, vikt_model_errmsg(m));
    return 1;
}

/* Train model m (head `head`) on `train` with Adam at `lr` for `epochs`
 * epochs of `batch`, then measure accuracy on `test`. */
static int train_and_test(vikt_model *m, const char *head, const subset *train,
                          const subset *test, float lr, int epochs, int64_t batch,
                          double *accuracy) {
    vikt_dataset *tr = NULL, *te = NULL;
    vikt_optimizer *adam = NULL;
    vikt_trainer *t = NULL;
    int status = 1;
    if (dataset_of(m, train, &tr) || dataset_of(m, test, &te) ||
        vikt_adam_create(m, lr, &adam) ||
        vikt_trainer_create(m, adam, net, (void *)head, &t) ||
        vikt_trainer_set(t, VIKT_FIT_EPOCHS, epochs) ||
        vikt_trainer_set(t, VIKT_FIT_BATCH_SIZE, (double)batch) ||
        vikt_trainer_set(t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF) ||
        vikt_trainer_fit(t, tr, NULL) || vikt_trainer_evaluate(t, te, NULL, accuracy)) {
        fail(m, head);
        goto done;
    }
    status = 0;
done:
    vikt_trainer_destroy(t);
    vikt_optimizer_destroy(adam);
    vikt_dataset_destroy(tr);
    vikt_dataset_destroy(te);
    return status;
}

/* Make the parameters of a model with head `head` by one forward pass
 * without a tape (the layers create them on first use). The head starts at
 * zero, for transfer and scratch alike: a random head on trained features
 * gives large random logits that the few steps must first undo. */
static int build(vikt_model *m, const char *head) {
    float zeros[PIXELS] = {0};
    char weight[64], bias[64];
    snprintf(weight, sizeof weight, "%s.weight", head);
    snprintf(bias, sizeof bias, "%s.bias", head);
    vikt_param(m, weight, 2, (const int64_t[]){HALF, FEATURES}, VIKT_INIT_ZEROS);
    vikt_param(m, bias, 1, (const int64_t[]){HALF}, VIKT_INIT_ZEROS);
    vikt_set_grad_enabled(m, 0);
    vikt_step_begin(m);
    vikt_tensor *out = net(m, vikt_input(m, 4, (const int64_t[]){1, 1, 8, 8}, zeros), (void *)head);
    vikt_set_grad_enabled(m, 1);
    return out ? 0 : fail(m, "building the model");
}

typedef struct result {
    double base, transfer, scratch;
    int64_t trainable, total;
} result;

/* 1. The base network on 0–4, saved. */
static int train_base(const options *o, uint64_t seed, const split *s, int verbose,
                      double *base_acc) {
    vikt_model *m;
    if (vikt_model_create(NULL, seed, &m)) return 1;
    /* Hold out a fifth of 0–4 to say how good the base is. */
    subset fit = s->base, held = s->base;
    fit.n = s->base.n * 4 / 5;
    held.n = s->base.n - fit.n;
    held.x = s->base.x + fit.n * PIXELS;
    held.y = s->base.y + fit.n;
    int status = train_and_test(m, HEAD_0TO4, &fit, &held, 2e-3f, o->base_epochs, 32, base_acc);
    if (!status && vikt_save(m, o->base_file)) status = fail(m, "saving the base");
    if (!status && verbose) {
        char table[1024];
        if (vikt_model_summary(m, table, sizeof table) < 0) status = fail(m, "summary");
        else printf("base network, trained on %lld digits 0-4 (%d epochs):\n%s\n",
                    (long long)fit.n, o->base_epochs, table);
    }
    vikt_model_destroy(m);
    return status;
}

/* 2. A new network for 5–9: the base's layers loaded by name, the new head
 * left as initialized, the base frozen, the head fine-tuned. */
static int transfer(const options *o, uint64_t seed, const split *s, int verbose, result *r) {
    vikt_model *m;
    if (vikt_model_create(NULL, seed + 1000, &m)) return 1;
    int status = build(m, HEAD_5TO9);
    if (!status && vikt_load(m, o->base_file, VIKT_LOAD_PARTIAL)) status = fail(m, "loading");
    if (!status && verbose) {
        char report[2048];
        if (vikt_load_report(m, report, sizeof report) < 0) {
            status = fail(m, "load report");
        } else {
            printf("partial load into the 5-9 network:\n%s", report);
            printf("  loaded %lld, missing %lld, unexpected %lld, mismatched %lld\n\n",
                   (long long)vikt_load_report_count(m, VIKT_LOAD_LOADED),
                   (long long)vikt_load_report_count(m, VIKT_LOAD_MISSING),
                   (long long)vikt_load_report_count(m, VIKT_LOAD_UNEXPECTED),
                   (long long)vikt_load_report_count(m, VIKT_LOAD_MISMATCHED));
        }
    }
    /* Only the new head must learn; loading must have filled the base. */
    if (!status && vikt_load_report_count(m, VIKT_LOAD_LOADED) != 4) {
        fprintf(stderr, "transfer_digits: expected the 4 base tensors to load\n");
        status = 1;
    }
    if (!status && vikt_param_freeze(m, o->freeze, 1) < 0) status = fail(m, "freezing");
    r->trainable = vikt_model_num_trainable(m);
    r->total = vikt_model_num_params(m);
    if (!status)
        status = train_and_test(m, HEAD_5TO9, &s->few, &s->test, 1e-2f, o->fine_steps,
                                s->few.n, &r->transfer);
    vikt_model_destroy(m);
    return status;
}

/* 3. The same network from scratch, every parameter trainable, on the same
 * samples for the same steps. */
static int scratch(const options *o, uint64_t seed, const split *s, result *r) {
    vikt_model *m;
    if (vikt_model_create(NULL, seed + 1000, &m)) return 1;
    int status = build(m, HEAD_5TO9) ||
                 train_and_test(m, HEAD_5TO9, &s->few, &s->test, 1e-2f, o->fine_steps, s->few.n,
                                &r->scratch);
    vikt_model_destroy(m);
    return status;
}

static int run_seed(const options *o, const digits *d, uint64_t seed, int verbose, result *r) {
    split s;
    if (make_split(d, o->shots, seed, &s)) return 1;
    if (verbose)
        printf("digits 0-4: %lld samples; digits 5-9: %lld to fine-tune on (%d per class), "
               "%lld to test on\n\n",
               (long long)s.base.n, (long long)s.few.n, o->shots, (long long)s.test.n);
    int status = train_base(o, seed, &s, verbose, &r->base) || transfer(o, seed, &s, verbose, r) ||
                 scratch(o, seed, &s, r);
    split_free(&s);
    return status;
}

/* ------------------------------------------------------------ the program */

static void usage(FILE *f) {
    fprintf(f,
            "usage: transfer_digits [options]\n"
            "  --data FILE       digits CSV, 64 pixels and the label (default data/digits.csv)\n"
            "  --base FILE       where the base network is saved\n"
            "                    (default build/transfer_digits_base.safetensors)\n"
            "  --seed N          first seed (default 1)\n"
            "  --seeds N         runs with seeds N, N+1, ... (default 10)\n"
            "  --shots N         labelled samples per class of 5-9 (default 3)\n"
            "  --steps N         fine-tuning steps, full batch (default 100)\n"
            "  --base-epochs N   epochs of the base network (default 30)\n"
            "  --freeze PREFIX   parameters frozen after loading (default base)\n"
            "  --help            this text\n");
}

static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

/* Returns 0 to run, 1 for an error, 2 after --help. */
static int parse_args(int argc, char **argv, options *o) {
    *o = (options){"data/digits.csv", "build/transfer_digits_base.safetensors", 1, 10, 3, 30, 100, "base"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n = 0;
        int ok;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 2;
        }
        if (!v) ok = 0;
        else if (!strcmp(a, "--data")) ok = (o->csv = v) != NULL;
        else if (!strcmp(a, "--base")) ok = (o->base_file = v) != NULL;
        else if (!strcmp(a, "--freeze")) ok = (o->freeze = v) != NULL;
        else if (!strcmp(a, "--seed")) ok = parse_int(v, 0, INT64_MAX / 2, &n) && (o->first_seed = (uint64_t)n, 1);
        else if (!strcmp(a, "--seeds")) ok = parse_int(v, 1, 1000, &n) && (o->seeds = (int)n, 1);
        else if (!strcmp(a, "--shots")) ok = parse_int(v, 1, 100, &n) && (o->shots = (int)n, 1);
        else if (!strcmp(a, "--steps")) ok = parse_int(v, 1, 100000, &n) && (o->fine_steps = (int)n, 1);
        else if (!strcmp(a, "--base-epochs")) ok = parse_int(v, 1, 10000, &n) && (o->base_epochs = (int)n, 1);
        else ok = 0;
        if (!ok) {
            fprintf(stderr, "transfer_digits: bad option '%s'%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return 1;
        }
        i++;
    }
    return 0;
}

int main(int argc, char **argv) {
    options o;
    int parsed = parse_args(argc, argv, &o);
    if (parsed) return parsed == 2 ? 0 : 2;
    digits d;
    if (load_digits(o.csv, &d)) {
        digits_free(&d);
        return 1;
    }
    printf("vikt %s transfer learning: digits 0-4 -> 5-9, %d labelled samples per class, "
           "%d full-batch steps (Adam lr 0.01) for both\n\n",
           vikt_version(), o.shots, o.fine_steps);
    int wins = 0, status = 0;
    double sum_t = 0, sum_s = 0;
    result r = {0};
    for (int k = 0; k < o.seeds && !status; k++) {
        uint64_t seed = o.first_seed + (uint64_t)k;
        status = run_seed(&o, &d, seed, k == 0, &r);
        if (status) break;
        if (k == 0)
            printf("%-6s %-10s %-28s %-20s\n", "seed", "base 0-4", "transfer 5-9 (frozen base)",
                   "scratch 5-9");
        printf("%-6llu %-10.4f %-28.4f %-20.4f%s\n", (unsigned long long)seed, r.base, r.transfer,
               r.scratch, r.transfer > r.scratch ? "" : "  <- scratch not beaten");
        wins += r.transfer > r.scratch;
        sum_t += r.transfer;
        sum_s += r.scratch;
    }
    if (!status) {
        printf("\nmean test accuracy on 5-9: transfer %.4f, scratch %.4f; transfer wins %d of %d "
               "seeds\n",
               sum_t / o.seeds, sum_s / o.seeds, wins, o.seeds);
        printf("trainable parameters: transfer %lld of %lld (the head), scratch %lld of %lld\n",
               (long long)r.trainable, (long long)r.total, (long long)r.total,
               (long long)r.total);
        /* Success is the mean over seeds: with 3 samples per class, which
         * ones are drawn moves either accuracy by several points. */
        status = sum_t > sum_s ? 0 : 1;
    }
    digits_free(&d);
    return status;
}
