/* Magnitude pruning of the digits MLP: how much of a trained network can be
 * set to zero, and how much accuracy a short fine-tune gives back.
 *
 *   make examples
 *   build/examples/prune_digits
 *   build/examples/prune_digits --hidden 64 --finetune 3 --save /tmp/pruned.safetensors
 *
 * The MLP 64-HIDDEN-10 is trained densely with Adam, then pruned in three
 * levels, each building on the last: the weights of smallest magnitude
 * across both weight matrices (one global threshold, biases kept) go to
 * zero until 50 %, then 80 %, then 90 % of the weights are zero. After each
 * level the test accuracy is measured, the network is fine-tuned for a few
 * epochs with the masks holding the pruned weights at zero, and measured
 * again. With the defaults (a few seconds of one core) the dense network
 * scores about 0.97 on the held-out quarter of the digits and, after the
 * fine-tunes, stays within about a point of that down to 90 % sparsity;
 * before its fine-tune the 90 % level drops much further (to 0.66-0.86,
 * depending on the seed).
 *
 * What it shows: vikt_prune_magnitude() with VIKT_PRUNE_GLOBAL, pruning
 * again to a higher level (the earlier masks are kept), training with
 * masks through the trainer (vikt_trainer_fit), vikt_prune_report() for the
 * last level, vikt_save() / vikt_load() carrying the masks (the reloaded
 * model scores the same, and a further epoch of training on it leaves the
 * zeros at zero), vikt_prune_remove(), and the gradual cubic schedule
 * (vikt_prune_schedule() called from a trainer callback) as the
 * alternative to pruning in steps. The same seed gives the same run.
 *
 * Options (all optional; --help prints them):
 *   --data PATH     the digits CSV (default data/digits.csv)
 *   --hidden N      hidden units (default 128)
 *   --epochs N      dense training epochs (default 30)
 *   --finetune N    fine-tune epochs after each level (default 5)
 *   --seed N        random seed (default 42)
 *   --save PATH     where the pruned model is saved and reloaded from
 *                   (default build/prune_digits.safetensors: like the
 *                   data path, relative to the top of the source tree)
 *
 * The option parsing, error reporting and digits loading live in
 * example_util.h next to this file (small static functions, ex_*).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vikt.h>
#define EXAMPLE_NAME "prune_digits"
#define EXAMPLE_DIGITS
#include "example_util.h"

enum { PIXELS = 64, CLASSES = 10, BATCH = 32, LEVELS = 3 };
static const float LEARNING_RATE = 3e-3f;
static const double LEVEL_SPARSITY[LEVELS] = {0.5, 0.8, 0.9};

typedef struct options {
    long hidden, epochs, finetune, seed;
    const char *data, *save;
} options;

/* ------------------------------------------------------------- the data */

static int make_dataset(vikt_model *m, const ex_digits *d, vikt_dataset **out) {
    return ex_failed(m, "making a dataset", vikt_dataset_create(m, d->n, 1, (int64_t[]){PIXELS},
                                                                 d->x, d->y, NULL, 0, out));
}

/* ------------------------------------------------------------ the model */

/* fc1.weight [HIDDEN, 64], fc1.bias, fc2.weight [10, HIDDEN], fc2.bias. */
static vikt_tensor *mlp(vikt_model *m, vikt_tensor *x, void *ud) {
    const options *o = ud;
    vikt_tensor *h = vikt_relu(m, vikt_dense(m, "fc1", x, o->hidden));
    return vikt_dense(m, "fc2", h, CLASSES);
}

/* A trainer with Adam for `m`, quiet, batch BATCH; `opt` is its optimizer. */
static int make_trainer(vikt_model *m, options *o, vikt_optimizer **opt, vikt_trainer **t) {
    *opt = NULL;
    *t = NULL;
    if (ex_failed(m, "creating Adam", vikt_adam_create(m, LEARNING_RATE, opt)) ||
        ex_failed(m, "creating the trainer", vikt_trainer_create(m, *opt, mlp, o, t)) ||
        ex_failed(m, "batch size", vikt_trainer_set(*t, VIKT_FIT_BATCH_SIZE, BATCH)) ||
        ex_failed(m, "progress", vikt_trainer_set(*t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF)))
        return 1;
    return 0;
}

static void free_trainer(vikt_optimizer *opt, vikt_trainer *t) {
    vikt_trainer_destroy(t);
    vikt_optimizer_destroy(opt);
}

static int fit(vikt_trainer *t, vikt_model *m, long epochs, vikt_dataset *train) {
    return ex_failed(m, "setting epochs", vikt_trainer_set(t, VIKT_FIT_EPOCHS, (double)epochs)) ||
           ex_failed(m, "training", vikt_trainer_fit(t, train, NULL));
}

static int accuracy(vikt_trainer *t, vikt_model *m, const vikt_dataset *test, double *acc) {
    return ex_failed(m, "evaluating", vikt_trainer_evaluate(t, test, NULL, acc));
}

/* The share of the pruned weights (rank >= 2 parameters) that are zero. */
static int sparsity(vikt_model *m, double *out) {
    int64_t zeros, numel;
    if (ex_failed(m, "counting zeros", vikt_prune_count(m, NULL, &zeros, &numel))) return 1;
    *out = (double)zeros / (double)numel;
    return 0;
}

/* Every parameter's values, in creation order, into one array (or back). */
static float *snapshot(vikt_model *m) {
    float *copy = malloc((size_t)vikt_model_num_params(m) * sizeof *copy);
    if (!copy) {
        fprintf(stderr, "prune_digits: out of memory for a copy of the weights\n");
        return NULL;
    }
    float *p = copy;
    for (int64_t i = 0; i < vikt_param_count(m); i++) {
        vikt_tensor *w = vikt_param_at(m, i);
        memcpy(p, vikt_tensor_data(w), (size_t)vikt_tensor_numel(w) * sizeof *p);
        p += vikt_tensor_numel(w);
    }
    return copy;
}

static void restore(vikt_model *m, const float *copy) {
    for (int64_t i = 0; i < vikt_param_count(m); i++) {
        vikt_tensor *w = vikt_param_at(m, i);
        memcpy(vikt_tensor_data(w), copy, (size_t)vikt_tensor_numel(w) * sizeof *copy);
        copy += vikt_tensor_numel(w);
    }
}

/* ------------------------------------------------------------- pruning */

/* The three levels, each pruned from the previous one, with a fine-tune. */
static int prune_in_levels(vikt_model *m, options *o, vikt_trainer *t, vikt_dataset *train,
                           const vikt_dataset *test, double *final_acc) {
    printf("global magnitude pruning of fc1.weight and fc2.weight (biases kept), %ld fine-tune "
           "epoch(s) per level with the masks held\n"
           "  sparsity   zero weights   test accuracy pruned   after fine-tune\n",
           o->finetune);
    for (int level = 0; level < LEVELS; level++) {
        double pruned_acc, tuned_acc, s;
        if (ex_failed(m, "pruning",
                      vikt_prune_magnitude(m, NULL, LEVEL_SPARSITY[level], VIKT_PRUNE_GLOBAL)) ||
            accuracy(t, m, test, &pruned_acc) || fit(t, m, o->finetune, train) ||
            accuracy(t, m, test, &tuned_acc) || sparsity(m, &s))
            return 1;
        int64_t zeros;
        vikt_prune_count(m, NULL, &zeros, NULL);
        printf("  %5.1f %%   %12lld   %20.4f   %15.4f\n", 100 * s, (long long)zeros, pruned_acc,
               tuned_acc);
        *final_acc = tuned_acc;
    }
    char table[2048];
    vikt_prune_report(m, table, sizeof table);
    printf("\nvikt_prune_report after the last level:\n%s\n", table);
    return 0;
}

/* Saves the pruned model, loads it into a fresh model, and checks that the
 * fresh one scores the same and that its masks hold through a further epoch
 * of training (zeros written in the file alone would not: Adam would move
 * them). */
static int save_and_reload(vikt_model *m, options *o, const ex_digits *train_part,
                           const ex_digits *test_part, double expected) {
    if (ex_failed(m, "saving", vikt_save(m, o->save))) return 1;
    vikt_model *fresh;
    if (ex_model_create((uint64_t)o->seed, &fresh)) return 1;
    vikt_dataset *train = NULL, *test = NULL;
    vikt_optimizer *opt = NULL;
    vikt_trainer *t = NULL;
    double again = 0, after = 0, s_loaded = 0, s_after = 0;
    int status = ex_failed(fresh, "loading", vikt_load(fresh, o->save, VIKT_LOAD_STRICT)) ||
                 make_dataset(fresh, train_part, &train) || make_dataset(fresh, test_part, &test) ||
                 make_trainer(fresh, o, &opt, &t) || accuracy(t, fresh, test, &again) ||
                 sparsity(fresh, &s_loaded);
    if (!status) {
        const uint8_t *mask = vikt_prune_mask(vikt_param_find(fresh, "fc1.weight"));
        printf("saved %s and loaded it into a fresh model: test accuracy %.4f (%s), sparsity "
               "%.1f %%, fc1.weight %s a mask\n",
               o->save, again, again == expected ? "identical" : "DIFFERENT", 100 * s_loaded,
               mask ? "has" : "LACKS");
        status = again != expected || !mask;
    }
    if (!status) status = fit(t, fresh, 1, train) || accuracy(t, fresh, test, &after) ||
                          sparsity(fresh, &s_after);
    if (!status) {
        printf("one more epoch of Adam on the loaded model: sparsity %.1f %% (%s), test accuracy "
               "%.4f\n",
               100 * s_after, s_after == s_loaded ? "the masks held" : "MASKS LOST", after);
        status = s_after != s_loaded;
    }
    free_trainer(opt, t);
    vikt_dataset_destroy(train);
    vikt_dataset_destroy(test);
    vikt_model_destroy(fresh);
    return status;
}

/* --------------------------------------------------- gradual pruning */

typedef struct gradual {
    vikt_model *m;
    int64_t every, count; /* the schedule's Δt and n; it starts at step 0 */
    int64_t prunings;
    int status;
} gradual;

/* After every optimizer step: prune when the cubic schedule says so. */
static int prune_on_schedule(vikt_trainer *t, vikt_fit_event event, void *ud) {
    gradual *g = ud;
    double step, s;
    if (event != VIKT_FIT_STEP_END) return 0;
    vikt_trainer_get(t, VIKT_FIT_GLOBAL_STEP, &step);
    int due = vikt_prune_schedule(g->m, (int64_t)step, 0.0, LEVEL_SPARSITY[LEVELS - 1], 0,
                                  g->every, g->count, &s);
    if (due == 1) {
        g->prunings++;
        if (ex_failed(g->m, "pruning on schedule",
                      vikt_prune_magnitude(g->m, NULL, s, VIKT_PRUNE_GLOBAL)))
            g->status = 1;
    } else if (due < 0) {
        g->status = ex_failed(g->m, "vikt_prune_schedule", due);
    }
    return g->status; /* non-zero stops the fit */
}

/* From the dense weights again, with the same number of epochs the levels
 * used (LEVELS × finetune): the sparsity climbs from 0 to 90 % along the
 * cubic schedule over the first two thirds of the steps, pruning four times
 * an epoch; the last third trains at 90 %. */
static int prune_gradually(vikt_model *m, options *o, const float *dense, vikt_dataset *train,
                           const vikt_dataset *test, double in_levels) {
    int64_t dropped = vikt_prune_remove(m, NULL);
    if (ex_failed(m, "removing the masks", dropped)) return 1;
    restore(m, dense);
    long epochs = LEVELS * o->finetune;
    int64_t steps_per_epoch = (vikt_dataset_size(train) + BATCH - 1) / BATCH;
    gradual g = {.m = m, .every = steps_per_epoch / 4 > 0 ? steps_per_epoch / 4 : 1};
    g.count = (2 * epochs * steps_per_epoch / 3) / g.every;
    if (g.count < 1) g.count = 1;
    vikt_optimizer *opt;
    vikt_trainer *t;
    double acc = 0, s = 0;
    int status = make_trainer(m, o, &opt, &t) ||
                 ex_failed(m, "callback", vikt_trainer_set_callback(t, prune_on_schedule, &g)) ||
                 fit(t, m, epochs, train) || g.status || accuracy(t, m, test, &acc) ||
                 sparsity(m, &s);
    if (!status)
        printf("\ngradual: vikt_prune_remove dropped %lld masks, the dense weights were put back "
               "and a fresh Adam trained %ld epochs,\npruning %lld times on the cubic schedule "
               "(every %lld steps up to step %lld): sparsity %.1f %%, test accuracy %.4f "
               "(in levels: %.4f)\n",
               (long long)dropped, epochs, (long long)g.prunings, (long long)g.every,
               (long long)(g.every * g.count), 100 * s, acc, in_levels);
    free_trainer(opt, t);
    return status;
}

/* ------------------------------------------------------------- options */

static void usage(FILE *f) {
    fprintf(f, "usage: prune_digits [options]\n"
               "Trains the digits MLP, prunes it to 50/80/90 %% sparsity with fine-tunes,\n"
               "saves and reloads the pruned model, and compares gradual pruning.\n"
               "  --data PATH     the digits CSV (default data/digits.csv)\n"
               "  --hidden N      hidden units, 1..4096 (default 128)\n"
               "  --epochs N      dense training epochs, 1..10000 (default 30)\n"
               "  --finetune N    fine-tune epochs after each level, 1..10000 (default 5)\n"
               "  --seed N        random seed (default 42)\n"
               "  --save PATH     the pruned model's file (default\n"
               "                  build/prune_digits.safetensors)\n"
               "  --help          this text\n");
}

/* One --flag value pair, for ex_parse_options: 0 when taken, -1 on a bad
 * value, 1 for an unknown flag. */
static int option(void *ud, const char *a, const char *v) {
    options *o = ud;
    int bad = 0;
    if (!strcmp(a, "--hidden"))
        bad = ex_parse_long(a, v, 1, 4096, &o->hidden);
    else if (!strcmp(a, "--epochs"))
        bad = ex_parse_long(a, v, 1, 10000, &o->epochs);
    else if (!strcmp(a, "--finetune"))
        bad = ex_parse_long(a, v, 1, 10000, &o->finetune);
    else if (!strcmp(a, "--seed"))
        bad = ex_parse_long(a, v, 0, 2147483647, &o->seed);
    else if (!strcmp(a, "--data") || !strcmp(a, "--save")) {
        bad = !v;
        if (bad) fprintf(stderr, "prune_digits: %s needs a path\n", a);
        *(!strcmp(a, "--data") ? &o->data : &o->save) = v;
    } else {
        return 1; /* not an option of this example */
    }
    return bad ? -1 : 0;
}

/* Returns 0 to run, 1 after --help, -1 on a bad option. */
static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.hidden = 128, .epochs = 30, .finetune = 5, .seed = 42,
                   .data = "data/digits.csv", .save = "build/prune_digits.safetensors"};
    return ex_parse_options(argc, argv, usage, option, o);
}

/* ------------------------------------------------------------------ main */

static int run(vikt_model *m, options *o, const ex_digits *train_part, const ex_digits *test_part) {
    vikt_dataset *train = NULL, *test = NULL;
    vikt_optimizer *opt = NULL;
    vikt_trainer *t = NULL;
    float *dense = NULL;
    double dense_acc = 0, final_acc = 0;
    int status = make_dataset(m, train_part, &train) || make_dataset(m, test_part, &test) ||
                 make_trainer(m, o, &opt, &t) || fit(t, m, o->epochs, train) ||
                 accuracy(t, m, test, &dense_acc);
    if (!status) {
        printf("dense: %ld epochs, %lld weights and biases, test accuracy %.4f\n\n", o->epochs,
               (long long)vikt_model_num_params(m), dense_acc);
        status = !(dense = snapshot(m));
    }
    if (!status) status = prune_in_levels(m, o, t, train, test, &final_acc);
    if (!status) status = save_and_reload(m, o, train_part, test_part, final_acc);
    if (!status) status = prune_gradually(m, o, dense, train, test, final_acc);
    free(dense);
    free_trainer(opt, t);
    vikt_dataset_destroy(train);
    vikt_dataset_destroy(test);
    return status;
}

int main(int argc, char **argv) {
    options o;
    int parsed = parse_options(argc, argv, &o);
    if (parsed) return parsed > 0 ? 0 : 2;
    vikt_model *m;
    if (ex_model_create((uint64_t)o.seed, &m)) return 1;
    ex_digits train = {0}, test = {0};
    int status = ex_load_digits(m, o.data, &train, &test);
    if (!status) {
        printf("vikt %s: digits MLP %d-%ld-%d, ReLU, Adam lr %g, batch %d; %lld train / %lld "
               "test rows\n",
               vikt_version(), PIXELS, o.hidden, CLASSES, (double)LEARNING_RATE, BATCH,
               (long long)train.n, (long long)test.n);
        status = run(m, &o, &train, &test);
    }
    ex_free_digits(&train);
    ex_free_digits(&test);
    vikt_model_destroy(m);
    return status;
}
