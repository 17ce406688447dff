/* Transfer learning on the 8×8 digits: train a base network on the digits
 * 0–4, save it, load its hidden layers by name into a network whose head is
 * new and answers 5–9, freeze those layers and fine-tune the head on a few
 * labelled samples; compare with the same network trained from scratch on
 * the same samples for the same number of steps.
 *
 *   make examples && build/examples/transfer_digits [--help]
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vikt.h>

#define EXAMPLE_NAME "transfer_digits"
#define EXAMPLE_DIGITS
#include "example_util.h"

enum { PIXELS = EX_PIXELS, CLASSES = EX_CLASSES, HALF = 5, CHANNELS = 32,
       FEATURES = CHANNELS * 4 * 4 };

typedef struct options {
    const char *csv, *base_file;
    long first_seed;
    long seeds;          /* runs, with seeds first_seed, first_seed + 1, ... */
    long shots;          /* labelled samples per class of 5–9 to fine-tune on */
    long base_epochs, fine_steps;
    const char *freeze; /* the prefix frozen after loading */
} options;

/* All 1797 samples are held on the host (an ex_digits) so that subsets by
 * class can be made with vikt_dataset_create() (which borrows caller
 * arrays). A subset is an ex_digits of its own with labels shifted to 0..4. */
typedef ex_digits digits, subset;

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

/* Every sample of the CSV at `path`, in the file's order (a fresh load's
 * order), pixels scaled to [0, 1]. */
static int load_digits(const char *path, digits *d) {
    vikt_model *m;
    vikt_dataset *ds = NULL;
    memset(d, 0, sizeof *d);
    if (ex_model_create(0, &m)) return 1;
    int status =
        ex_failed(m, "loading", vikt_dataset_load_csv(m, path, 0, -1, ',', CLASSES, &ds)) ||
        ex_failed(m, "scaling", vikt_dataset_scale(ds, 1.0f / 16.0f, 0.0f)) ||
        ex_copy_digits(m, ds, d);
    vikt_dataset_destroy(ds);
    vikt_model_destroy(m);
    return status;
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
    ex_free_digits(&s->base);
    ex_free_digits(&s->few);
    ex_free_digits(&s->test);
}

static int dataset_of(vikt_model *m, const subset *s, vikt_dataset **out) {
    const int64_t shape[] = {1, 8, 8};
    return vikt_dataset_create(m, s->n, 3, shape, s->x, s->y, NULL, 0, out);
}

/* ------------------------------------------------------------ training */

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
        ex_failed(m, head, -1);
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
    return out ? 0 : ex_failed(m, "building the model", -1);
}

typedef struct result {
    double base, transfer, scratch;
    int64_t trainable, total;
} result;

/* 1. The base network on 0–4, saved. */
static int train_base(const options *o, uint64_t seed, const split *s, int verbose,
                      double *base_acc) {
    vikt_model *m;
    if (ex_model_create(seed, &m)) return 1;
    /* Hold out a fifth of 0–4 to say how good the base is. */
    subset fit = s->base, held = s->base;
    fit.n = s->base.n * 4 / 5;
    held.n = s->base.n - fit.n;
    held.x = s->base.x + fit.n * PIXELS;
    held.y = s->base.y + fit.n;
    int status = train_and_test(m, HEAD_0TO4, &fit, &held, 2e-3f, o->base_epochs, 32, base_acc);
    if (!status) status = ex_failed(m, "saving the base", vikt_save(m, o->base_file));
    if (!status && verbose) {
        char table[1024];
        if (ex_failed(m, "summary", vikt_model_summary(m, table, sizeof table))) status = 1;
        else printf("base network, trained on %lld digits 0-4 (%ld epochs):\n%s\n",
                    (long long)fit.n, o->base_epochs, table);
    }
    vikt_model_destroy(m);
    return status;
}

/* 2. A new network for 5–9: the base's layers loaded by name, the new head
 * left as initialized, the base frozen, the head fine-tuned. */
static int transfer(const options *o, uint64_t seed, const split *s, int verbose, result *r) {
    vikt_model *m;
    if (ex_model_create(seed + 1000, &m)) return 1;
    int status = build(m, HEAD_5TO9);
    if (!status) status = ex_failed(m, "loading", vikt_load(m, o->base_file, VIKT_LOAD_PARTIAL));
    if (!status && verbose) {
        char report[2048];
        if (ex_failed(m, "load report", vikt_load_report(m, report, sizeof report))) {
            status = 1;
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
    if (!status) status = ex_failed(m, "freezing", vikt_param_freeze(m, o->freeze, 1));
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
    if (ex_model_create(seed + 1000, &m)) return 1;
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
        printf("digits 0-4: %lld samples; digits 5-9: %lld to fine-tune on (%ld per class), "
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

/* One --flag value pair, for ex_parse_options: 0 when taken, -1 on a bad
 * value, 1 for an unknown flag. */
static int option(void *ud, const char *a, const char *v) {
    options *o = ud;
    const char **text = !strcmp(a, "--data") ? &o->csv
                        : !strcmp(a, "--base") ? &o->base_file
                        : !strcmp(a, "--freeze") ? &o->freeze
                                                 : NULL;
    if (text) {
        if (!v) fprintf(stderr, EXAMPLE_NAME ": %s needs a value\n", a);
        *text = v;
        return v ? 0 : -1;
    }
    if (!strcmp(a, "--seed")) return ex_parse_long(a, v, 0, LONG_MAX / 2, &o->first_seed);
    if (!strcmp(a, "--seeds")) return ex_parse_long(a, v, 1, 1000, &o->seeds);
    if (!strcmp(a, "--shots")) return ex_parse_long(a, v, 1, 100, &o->shots);
    if (!strcmp(a, "--steps")) return ex_parse_long(a, v, 1, 100000, &o->fine_steps);
    if (!strcmp(a, "--base-epochs")) return ex_parse_long(a, v, 1, 10000, &o->base_epochs);
    return 1; /* not an option of this example */
}

/* Returns 0 to run, 1 after --help, -1 on a bad option. */
static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.csv = "data/digits.csv",
                   .base_file = "build/transfer_digits_base.safetensors",
                   .first_seed = 1, .seeds = 10, .shots = 3, .base_epochs = 30,
                   .fine_steps = 100, .freeze = "base"};
    return ex_parse_options(argc, argv, usage, option, o);
}

int main(int argc, char **argv) {
    options o;
    int parsed = parse_options(argc, argv, &o);
    if (parsed) return parsed > 0 ? 0 : 2;
    digits d;
    if (load_digits(o.csv, &d)) {
        ex_free_digits(&d);
        return 1;
    }
    printf("vikt %s transfer learning: digits 0-4 -> 5-9, %ld labelled samples per class, "
           "%ld full-batch steps (Adam lr 0.01) for both\n\n",
           vikt_version(), o.shots, o.fine_steps);
    int wins = 0, status = 0;
    double sum_t = 0, sum_s = 0;
    result r = {0};
    for (int k = 0; k < o.seeds && !status; k++) {
        uint64_t seed = (uint64_t)o.first_seed + (uint64_t)k;
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
        printf("\nmean test accuracy on 5-9: transfer %.4f, scratch %.4f; transfer wins %d of %ld "
               "seeds\n",
               sum_t / o.seeds, sum_s / o.seeds, wins, o.seeds);
        printf("trainable parameters: transfer %lld of %lld (the head), scratch %lld of %lld\n",
               (long long)r.trainable, (long long)r.total, (long long)r.total,
               (long long)r.total);
        /* Success is the mean over seeds: with 3 samples per class, which
         * ones are drawn moves either accuracy by several points. */
        status = sum_t > sum_s ? 0 : 1;
    }
    ex_free_digits(&d);
    return status;
}
