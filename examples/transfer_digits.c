/* Transfer learning on the 8×8 digits: train a base network on the digits
 * 0–4 (and their 1-pixel shifts), save it, load its hidden layers by name
 * into a network whose head is new and answers 5–9, freeze those layers and
 * fine-tune the head on a few labelled samples; compare with the same
 * network trained from scratch on the same samples for the same number of
 * full-batch Adam steps at the same rate, both heads starting at zero.
 *
 * Transfer pays when the budget is small. With the defaults (3 samples per
 * class, a budget of 5 steps, 10 seeds; measured on this machine) transfer
 * reaches 0.838 mean test accuracy on 5–9 and scratch 0.635, and transfer
 * wins on every seed by 0.053 to 0.428 (seeds 11–20: 10 of 10 too, mean
 * 0.826 against 0.576). Both arms are also measured after 10, 20 and 50
 * steps: from 10 steps on, scratch (every weight trainable) catches up to
 * within 0.01–0.03 on the mean and transfer wins on only 6 or 7 of the 10
 * seeds, while the frozen base's head stays near 0.83–0.84. The exit
 * status is 0 when transfer wins on the mean at the budget.
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

/* Adam's rate for the few full-batch steps on 5–9, the same for both arms. */
static const float FINE_LR = 1e-2f;

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

/* Train model m (head `head`) on `train` with Adam at `lr` in epochs of
 * `batch`, and measure accuracy on `test` after marks[0], marks[1], ...
 * epochs in all (increasing): one run gives the whole learning curve, the
 * optimizer's state carried from one fit to the next. */
static int train_curve(vikt_model *m, const char *head, const subset *train, const subset *test,
                       float lr, int64_t batch, const long *marks, int n_marks,
                       double *accuracy) {
    vikt_dataset *tr = NULL, *te = NULL;
    vikt_optimizer *adam = NULL;
    vikt_trainer *t = NULL;
    int failed = dataset_of(m, train, &tr) || dataset_of(m, test, &te) ||
                 vikt_adam_create(m, lr, &adam) ||
                 vikt_trainer_create(m, adam, net, (void *)head, &t) ||
                 vikt_trainer_set(t, VIKT_FIT_BATCH_SIZE, (double)batch) ||
                 vikt_trainer_set(t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF);
    for (int k = 0; k < n_marks && !failed; k++)
        failed = vikt_trainer_set(t, VIKT_FIT_EPOCHS, (double)(marks[k] - (k ? marks[k - 1] : 0))) ||
                 vikt_trainer_fit(t, tr, NULL) ||
                 vikt_trainer_evaluate(t, te, NULL, &accuracy[k]);
    int status = ex_failed(m, head, failed ? -1 : 0);
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

/* The steps after which both arms are measured: the learning curve's
 * marks and --steps (the budget the verdict is about) among them. */
enum { MAX_MARKS = 8 };
static const long CURVE_MARKS[] = {5, 10, 20, 50};

typedef struct curve {
    long marks[MAX_MARKS]; /* increasing */
    int n, verdict;        /* marks[verdict] == --steps */
} curve;

static curve curve_for(long steps) {
    curve c = {{0}, 0, 0};
    size_t k = 0, n_curve = sizeof CURVE_MARKS / sizeof *CURVE_MARKS;
    for (; k < n_curve && CURVE_MARKS[k] < steps; k++) c.marks[c.n++] = CURVE_MARKS[k];
    c.verdict = c.n;
    c.marks[c.n++] = steps;
    for (k += k < n_curve && CURVE_MARKS[k] == steps; k < n_curve; k++)
        c.marks[c.n++] = CURVE_MARKS[k];
    return c;
}

typedef struct result {
    double base;                      /* the base's accuracy on held-out 0–4 */
    double transfer[MAX_MARKS], scratch[MAX_MARKS]; /* on the 5–9 test set */
    int64_t trainable, total;
} result;

/* Every sample of `in` and its four copies moved one pixel up, down, left
 * and right (zeros come in at the edge): a digit moved by a pixel is the
 * same digit, so the base learns strokes wherever they are. */
static int with_shifts(const subset *in, subset *out) {
    static const int DR[5] = {0, -1, 1, 0, 0}, DC[5] = {0, 0, 0, -1, 1};
    if (subset_alloc(out, in->n * 5)) {
        fprintf(stderr, EXAMPLE_NAME ": out of memory for %lld shifted samples\n",
                (long long)in->n * 5);
        return 1;
    }
    for (int64_t i = 0; i < in->n; i++)
        for (int k = 0; k < 5; k++, out->n++) {
            float *dst = out->x + out->n * PIXELS;
            const float *src = in->x + i * PIXELS;
            for (int r = 0; r < 8; r++)
                for (int c = 0; c < 8; c++) {
                    int sr = r - DR[k], sc = c - DC[k];
                    dst[r * 8 + c] = sr < 0 || sr > 7 || sc < 0 || sc > 7 ? 0.0f : src[sr * 8 + sc];
                }
            out->y[out->n] = in->y[i];
        }
    return 0;
}

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
    subset shifted = {0};
    int status = with_shifts(&fit, &shifted) ||
                 train_curve(m, HEAD_0TO4, &shifted, &held, 2e-3f, 32, &o->base_epochs, 1,
                             base_acc);
    ex_free_digits(&shifted);
    if (!status) status = ex_failed(m, "saving the base", vikt_save(m, o->base_file));
    if (!status && verbose) {
        char table[1024];
        if (ex_failed(m, "summary", vikt_model_summary(m, table, sizeof table))) status = 1;
        else printf("base network, trained on %lld digits 0-4 and their 1-pixel shifts "
                           "(%lld samples, %ld epochs):\n%s\n",
                    (long long)fit.n, (long long)fit.n * 5, o->base_epochs, table);
    }
    vikt_model_destroy(m);
    return status;
}

/* 2. A new network for 5–9: the base's layers loaded by name, the new head
 * left as initialized, the base frozen, the head fine-tuned. */
static int transfer(const options *o, const curve *c, uint64_t seed, const split *s, int verbose,
                    result *r) {
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
        status = train_curve(m, HEAD_5TO9, &s->few, &s->test, FINE_LR, s->few.n, c->marks, c->n,
                             r->transfer);
    vikt_model_destroy(m);
    return status;
}

/* 3. The same network from scratch, every parameter trainable, on the same
 * samples for the same steps. */
static int scratch(const curve *c, uint64_t seed, const split *s, result *r) {
    vikt_model *m;
    if (ex_model_create(seed + 1000, &m)) return 1;
    int status = build(m, HEAD_5TO9) ||
                 train_curve(m, HEAD_5TO9, &s->few, &s->test, FINE_LR, s->few.n, c->marks, c->n,
                             r->scratch);
    vikt_model_destroy(m);
    return status;
}

static int run_seed(const options *o, const curve *c, const digits *d, uint64_t seed, int verbose,
                    result *r) {
    split s;
    if (make_split(d, o->shots, seed, &s)) return 1;
    if (verbose)
        printf("digits 0-4: %lld samples; digits 5-9: %lld to fine-tune on (%ld per class), "
               "%lld to test on\n\n",
               (long long)s.base.n, (long long)s.few.n, o->shots, (long long)s.test.n);
    int status = train_base(o, seed, &s, verbose, &r->base) ||
                 transfer(o, c, seed, &s, verbose, r) || scratch(c, seed, &s, r);
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
            "  --steps N         the budget: full-batch steps for both arms, the verdict\n"
            "                    is about the accuracy after them (default 5); both arms\n"
            "                    are also measured after 5, 10, 20 and 50 steps\n"
            "  --base-epochs N   epochs of the base network over digits 0-4 and their\n"
            "                    1-pixel shifts (default 12)\n"
            "  --freeze PREFIX   parameters frozen after loading (default base)\n"
            "  --help            this text\n");
}

/* For ex_parse_options: the paths and the freeze prefix as given, the
 * numbers range-checked; 1 for a flag this example does not have. */
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
                   .first_seed = 1, .seeds = 10, .shots = 3, .base_epochs = 12,
                   .fine_steps = 5, .freeze = "base"};
    return ex_parse_options(argc, argv, usage, option, o);
}

/* Per seed: the base's accuracy and both arms at the budget. */
static void print_seed(uint64_t seed, const curve *c, const result *r, int first) {
    int last = c->verdict;
    if (first)
        printf("%-6s %-10s %-28s %-12s %s\n", "seed", "base 0-4", "transfer 5-9 (frozen base)",
               "scratch 5-9", "margin");
    printf("%-6llu %-10.4f %-28.4f %-12.4f %+.4f%s\n", (unsigned long long)seed, r->base,
           r->transfer[last], r->scratch[last], r->transfer[last] - r->scratch[last],
           r->transfer[last] > r->scratch[last] ? "" : "  <- scratch not beaten");
}

/* Sums over seeds, for the learning curve and the verdict. */
typedef struct totals {
    double transfer[MAX_MARKS], scratch[MAX_MARKS], worst_margin[MAX_MARKS];
    int wins[MAX_MARKS];
} totals;

static void add_result(totals *t, const curve *c, const result *r, int first) {
    for (int k = 0; k < c->n; k++) {
        double margin = r->transfer[k] - r->scratch[k];
        t->transfer[k] += r->transfer[k];
        t->scratch[k] += r->scratch[k];
        t->wins[k] += margin > 0;
        if (first || margin < t->worst_margin[k]) t->worst_margin[k] = margin;
    }
}

static void print_curve(const totals *t, const curve *c, long seeds) {
    printf("\nlearning curve, mean test accuracy on 5-9 over %ld seeds:\n", seeds);
    printf("%-7s %-10s %-10s %-8s %-14s %s\n", "steps", "transfer", "scratch", "margin",
           "worst margin", "transfer wins");
    for (int k = 0; k < c->n; k++)
        printf("%-7ld %-10.4f %-10.4f %-+8.4f %-+14.4f %d of %ld%s\n", c->marks[k],
               t->transfer[k] / (double)seeds, t->scratch[k] / (double)seeds,
               (t->transfer[k] - t->scratch[k]) / (double)seeds, t->worst_margin[k], t->wins[k],
               seeds, k == c->verdict ? "  <- the budget (--steps)" : "");
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
    curve c = curve_for(o.fine_steps);
    printf("vikt %s transfer learning: digits 0-4 -> 5-9, %ld labelled samples per class, "
           "a budget of %ld full-batch steps (Adam lr %g) for both\n\n",
           vikt_version(), o.shots, o.fine_steps, (double)FINE_LR);
    int status = 0;
    totals t = {{0}, {0}, {0}, {0}};
    result r = {0};
    for (long k = 0; k < o.seeds && !status; k++) {
        uint64_t seed = (uint64_t)o.first_seed + (uint64_t)k;
        status = run_seed(&o, &c, &d, seed, k == 0, &r);
        if (status) break;
        print_seed(seed, &c, &r, k == 0);
        add_result(&t, &c, &r, k == 0);
    }
    if (!status) {
        int last = c.verdict;
        print_curve(&t, &c, o.seeds);
        printf("\nafter %ld steps: mean test accuracy on 5-9 transfer %.4f, scratch %.4f; "
               "transfer wins %d of %ld seeds\n",
               o.fine_steps, t.transfer[last] / (double)o.seeds, t.scratch[last] / (double)o.seeds,
               t.wins[last], o.seeds);
        printf("trainable parameters: transfer %lld of %lld (the head), scratch %lld of %lld\n",
               (long long)r.trainable, (long long)r.total, (long long)r.total,
               (long long)r.total);
        /* Success is the mean over seeds at the budget: which few samples
         * are drawn moves either accuracy by several points. */
        status = t.transfer[last] > t.scratch[last] ? 0 : 1;
    }
    ex_free_digits(&d);
    return status;
}
