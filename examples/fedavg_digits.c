/* Federated averaging on the digits: K clients, each holding its own
 * disjoint shard of the training data, train copies of one model locally;
 * a server averages their parameters after every round. How close does
 * that come to training on all the data in one place?
 *
 *   make examples
 *   build/examples/fedavg_digits
 *   build/examples/fedavg_digits --rounds 30 --local-epochs 2 --files /tmp
 *
 * Each round the server sends the global model to every client (a copy of
 * its parameters); each client trains it for E epochs on its shard with
 * Adam, and the server replaces the global model by the mean of the K
 * client models weighted by shard size (vikt_fedavg). The clients are
 * stateless, as in FedAvg: each round starts a fresh Adam on every client,
 * so nothing but the parameters crosses between rounds
 * (--optimizer-state kept lets each client keep its Adam moments instead).
 * The baseline trains one model from the same initial parameters on the
 * whole training split for the same R × E epochs, with the same optimizer
 * and batch size. Both are measured on the same held-out quarter of the
 * data after every round (every E epochs for the baseline).
 *
 * With the defaults (K = 5 IID shards of about 270 rows, R = 15 rounds of
 * E = 5 epochs; a couple of seconds of one core) both end near 0.97 and
 * FedAvg within about a point of the centralized model (gaps from -0.45 to
 * 1.34 points over 21 seeds; one point is between 4 and 5 of the 449 test
 * rows). R = 30, E = 2 does as well; too short a budget (R = 10, E = 2)
 * leaves FedAvg 2 to 3 points behind. The exit status is 0 when the final
 * gap is at most 2 points.
 *
 * What it shows: one dataset split into shards over caller arrays
 * (vikt_dataset_create, one model per client, since a dataset belongs to
 * one model), the trainer (vikt_trainer_fit, vikt_trainer_evaluate),
 * copying parameters between models by name, vikt_fedavg() weighted by
 * sample counts and, with --files, the same round averaged from the
 * clients' saved files with vikt_fedavg_files(), which gives the same bits.
 * The same seed gives the same run.
 *
 * Options (all optional; --help prints them):
 *   --data PATH             the digits CSV (default data/digits.csv)
 *   --clients K             clients (default 5)
 *   --rounds R              communication rounds (default 15)
 *   --local-epochs E        epochs each client trains per round (default 5)
 *   --hidden N              hidden units (default 64)
 *   --optimizer-state S     fresh (default) or kept: Adam state per client
 *   --seed N                random seed (default 42)
 *   --files DIR             in the last round also save the client models to
 *                           DIR, average the files, compare, remove them
 *
 * The option parsing, error reporting and digits loading live in
 * example_util.h next to this file (small static functions, ex_*).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vikt.h>
#define EXAMPLE_NAME "fedavg_digits"
#define EXAMPLE_DIGITS
#include "example_util.h"

enum { PIXELS = 64, CLASSES = 10, BATCH = 32, MAX_CLIENTS = 64 };
static const float LEARNING_RATE = 3e-3f;
static const double MAX_GAP = 0.02;

typedef struct options {
    long clients, rounds, local_epochs, hidden, seed;
    int keep_optimizer;
    const char *data, *files;
} options;

/* A participant: its model, its data, and its optimizer and trainer (made
 * each round, or once with --optimizer-state kept). */
typedef struct party {
    vikt_model *m;
    vikt_dataset *train; /* the shard (the whole split for the baseline) */
    vikt_dataset *test;  /* the model's view of the test split, or NULL */
    vikt_optimizer *opt;
    vikt_trainer *t;
} party;

/* ------------------------------------------------------------- the data */

/* A dataset of `m` over rows [first, first + n) of `d`. */
static int make_dataset(vikt_model *m, const ex_digits *d, int64_t first, int64_t n,
                        vikt_dataset **out) {
    return ex_failed(m, "making a dataset",
                     vikt_dataset_create(m, n, 1, (int64_t[]){PIXELS}, d->x + first * PIXELS,
                                      d->y + first, NULL, 0, out));
}

/* ------------------------------------------------------------ the model */

/* fc1.weight [HIDDEN, 64], fc1.bias, fc2.weight [10, HIDDEN], fc2.bias. */
static vikt_tensor *mlp(vikt_model *m, vikt_tensor *x, void *ud) {
    const options *o = ud;
    vikt_tensor *h = vikt_relu(m, vikt_dense(m, "fc1", x, o->hidden));
    return vikt_dense(m, "fc2", h, CLASSES);
}

/* Creates the parameters (the layers make them on their first call) by
 * running the model once on one row, without a tape. */
static int build(vikt_model *m, options *o, const vikt_dataset *ds) {
    vikt_set_grad_enabled(m, 0);
    vikt_step_begin(m);
    mlp(m, vikt_dataset_input(ds, 0, 1), o);
    vikt_set_grad_enabled(m, 1);
    return ex_failed(m, "creating the parameters", 0);
}

/* dst's parameters := src's, matched by name: what the server sends. */
static int copy_params(vikt_model *dst, vikt_model *src) {
    for (int64_t i = 0; i < vikt_param_count(src); i++) {
        vikt_tensor *from = vikt_param_at(src, i);
        vikt_tensor *to = vikt_param_find(dst, vikt_tensor_name(from));
        if (!to || vikt_tensor_numel(to) != vikt_tensor_numel(from)) {
            fprintf(stderr, "fedavg_digits: no parameter %s of that size to copy into\n",
                    vikt_tensor_name(from));
            return 1;
        }
        memcpy(vikt_tensor_data(to), vikt_tensor_data(from),
               (size_t)vikt_tensor_numel(from) * sizeof(float));
    }
    return 0;
}

/* Whether two models hold the same bits in every parameter. */
static int same_params(vikt_model *a, vikt_model *b) {
    for (int64_t i = 0; i < vikt_param_count(a); i++) {
        vikt_tensor *x = vikt_param_at(a, i), *y = vikt_param_find(b, vikt_tensor_name(x));
        if (!y || vikt_tensor_numel(x) != vikt_tensor_numel(y) ||
            memcmp(vikt_tensor_data(x), vikt_tensor_data(y),
                   (size_t)vikt_tensor_numel(x) * sizeof(float)))
            return 0;
    }
    return vikt_param_count(a) == vikt_param_count(b);
}

/* -------------------------------------------------------------- parties */

/* The party's Adam and a quiet trainer of BATCH rows and `epochs` epochs
 * per fit; an evaluation-only trainer when `epochs` is 0. */
static int start_trainer(party *p, options *o, long epochs) {
    vikt_model *m = p->m;
    if (epochs && ex_failed(m, "creating Adam", vikt_adam_create(m, LEARNING_RATE, &p->opt)))
        return 1;
    return ex_failed(m, "creating a trainer", vikt_trainer_create(m, p->opt, mlp, o, &p->t)) ||
           ex_failed(m, "batch size", vikt_trainer_set(p->t, VIKT_FIT_BATCH_SIZE, BATCH)) ||
           ex_failed(m, "progress", vikt_trainer_set(p->t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF)) ||
           (epochs &&
            ex_failed(m, "epochs", vikt_trainer_set(p->t, VIKT_FIT_EPOCHS, (double)epochs)));
}

static void stop_trainer(party *p) {
    vikt_trainer_destroy(p->t);
    vikt_optimizer_destroy(p->opt);
    p->t = NULL;
    p->opt = NULL;
}

/* A model of its own seed with datasets over rows [first, first + n) of
 * the training split and, when `test` is not NULL, over the test split. */
static int make_party(party *p, options *o, uint64_t seed, const ex_digits *train, int64_t first,
                      int64_t n, const ex_digits *test) {
    *p = (party){0};
    if (ex_model_create(seed, &p->m)) return 1;
    return make_dataset(p->m, train, first, n, &p->train) ||
           (test && make_dataset(p->m, test, 0, test->n, &p->test)) || build(p->m, o, p->train);
}

static void free_party(party *p) {
    stop_trainer(p);
    vikt_dataset_destroy(p->train);
    vikt_dataset_destroy(p->test);
    vikt_model_destroy(p->m);
}

static int test_accuracy(party *p, double *acc) {
    return ex_failed(p->m, "evaluating", vikt_trainer_evaluate(p->t, p->test, NULL, acc));
}

/* ---------------------------------------------------------------- rounds */

/* One client's part of a round: receive the global model, train E epochs
 * on the shard. */
static int train_client(party *c, party *server, options *o) {
    if (copy_params(c->m, server->m)) return 1;
    if (!c->t && start_trainer(c, o, o->local_epochs)) return 1;
    if (ex_failed(c->m, "local training", vikt_trainer_fit(c->t, c->train, NULL))) return 1;
    if (!o->keep_optimizer) stop_trainer(c);
    return 0;
}

/* The last round again from files: each client's model saved, then
 * averaged with vikt_fedavg_files into a model made by loading the first
 * file, and compared with what vikt_fedavg gave. */
static int average_files(party *clients, const double *weights, options *o, party *server) {
    long k = o->clients;
    char(*paths)[4096] = calloc((size_t)k, sizeof *paths);
    const char **names = calloc((size_t)k, sizeof *names);
    vikt_model *from_files = NULL;
    int status = !paths || !names;
    if (status) fprintf(stderr, "fedavg_digits: out of memory for %ld file names\n", k);
    long saved = 0; /* files written, removed at the end */
    while (!status && saved < k) {
        int len = snprintf(paths[saved], sizeof paths[saved], "%s/fedavg_client%ld.safetensors",
                           o->files, saved);
        names[saved] = paths[saved];
        if (len < 0 || (size_t)len >= sizeof paths[saved]) {
            fprintf(stderr, "fedavg_digits: --files directory name too long\n");
            status = 1;
        } else {
            status = ex_failed(clients[saved].m, "saving a client",
                               vikt_save(clients[saved].m, paths[saved]));
            saved += !status;
        }
    }
    if (!status) {
        status = ex_model_create(0, &from_files) ||
                 ex_failed(from_files, "loading",
                           vikt_load(from_files, paths[0], VIKT_LOAD_STRICT)) ||
                 ex_failed(from_files, "vikt_fedavg_files",
                           vikt_fedavg_files(from_files, names, weights, k));
    }
    if (!status) {
        int same = same_params(from_files, server->m);
        printf("--files: the %ld client files %s/fedavg_client*.safetensors averaged with "
               "vikt_fedavg_files: %s vikt_fedavg's result\n",
               k, o->files, same ? "bit for bit" : "DIFFERENT FROM");
        status = !same;
    }
    for (long i = 0; i < saved; i++) remove(paths[i]);
    vikt_model_destroy(from_files);
    free(paths);
    free(names);
    return status;
}

/* R rounds of FedAvg next to the centralized baseline, E epochs at a time;
 * the final accuracies go to *fed and *central. */
static int run_rounds(party *server, party *clients, party *central, options *o, double *fed,
                      double *central_acc) {
    vikt_model *models[MAX_CLIENTS];
    double weights[MAX_CLIENTS];
    for (long i = 0; i < o->clients; i++) {
        models[i] = clients[i].m;
        weights[i] = (double)vikt_dataset_size(clients[i].train); /* samples per client */
    }
    if (test_accuracy(server, fed) || test_accuracy(central, central_acc)) return 1;
    printf("round  epochs   FedAvg test accuracy   centralized   gap (points)\n"
           "%5d  %6d   %20.4f   %11.4f   %12.2f\n",
           0, 0, *fed, *central_acc, 100 * (*central_acc - *fed));
    for (long r = 1; r <= o->rounds; r++) {
        for (long i = 0; i < o->clients; i++)
            if (train_client(&clients[i], server, o)) return 1;
        if (ex_failed(server->m, "vikt_fedavg",
                      vikt_fedavg(server->m, models, weights, o->clients)))
            return 1;
        if (ex_failed(central->m, "centralized training",
                      vikt_trainer_fit(central->t, central->train, NULL)) ||
            test_accuracy(server, fed) || test_accuracy(central, central_acc))
            return 1;
        printf("%5ld  %6ld   %20.4f   %11.4f   %12.2f\n", r, r * o->local_epochs, *fed,
               *central_acc, 100 * (*central_acc - *fed));
        fflush(stdout);
        if (r == o->rounds && o->files && average_files(clients, weights, o, server)) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- options */

static void usage(FILE *f) {
    fprintf(f, "usage: fedavg_digits [options]\n"
               "Federated averaging of the digits MLP over K clients with disjoint shards,\n"
               "next to centralized training for the same epochs.\n"
               "  --data PATH           the digits CSV (default data/digits.csv)\n"
               "  --clients K           clients, 1..%d (default 5)\n"
               "  --rounds R            rounds, 1..10000 (default 15)\n"
               "  --local-epochs E      local epochs per round, 1..10000 (default 5)\n"
               "  --hidden N            hidden units, 1..4096 (default 64)\n"
               "  --optimizer-state S   fresh (default): a new Adam per client and round;\n"
               "                        kept: each client keeps its Adam across rounds\n"
               "  --seed N              random seed (default 42)\n"
               "  --files DIR           in the last round also average the clients' saved\n"
               "                        files with vikt_fedavg_files (removed afterwards)\n"
               "  --help                this text\n",
            MAX_CLIENTS);
}

/* One --flag value pair, for ex_parse_options: 0 when taken, -1 on a bad
 * value, 1 for an unknown flag. */
static int option(void *ud, const char *a, const char *v) {
    options *o = ud;
    int bad = 0;
    if (!strcmp(a, "--clients"))
        bad = ex_parse_long(a, v, 1, MAX_CLIENTS, &o->clients);
    else if (!strcmp(a, "--rounds"))
        bad = ex_parse_long(a, v, 1, 10000, &o->rounds);
    else if (!strcmp(a, "--local-epochs"))
        bad = ex_parse_long(a, v, 1, 10000, &o->local_epochs);
    else if (!strcmp(a, "--hidden"))
        bad = ex_parse_long(a, v, 1, 4096, &o->hidden);
    else if (!strcmp(a, "--seed"))
        bad = ex_parse_long(a, v, 0, 2147483647, &o->seed);
    else if (!strcmp(a, "--optimizer-state")) {
        bad = !v || (strcmp(v, "fresh") && strcmp(v, "kept"));
        if (bad) fprintf(stderr, "fedavg_digits: --optimizer-state needs fresh or kept\n");
        else o->keep_optimizer = !strcmp(v, "kept");
    } else if (!strcmp(a, "--data") || !strcmp(a, "--files")) {
        bad = !v;
        if (bad) fprintf(stderr, "fedavg_digits: %s needs a path\n", a);
        *(!strcmp(a, "--data") ? &o->data : &o->files) = v;
    } else {
        return 1; /* not an option of this example */
    }
    return bad ? -1 : 0;
}

/* Returns 0 to run, 1 after --help, -1 on a bad option. */
static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.clients = 5, .rounds = 15, .local_epochs = 5, .hidden = 64, .seed = 42,
                   .data = "data/digits.csv"};
    return ex_parse_options(argc, argv, usage, option, o);
}

/* ------------------------------------------------------------------ main */

/* The server (global model, evaluation only), the K clients with their
 * shards, and the centralized baseline, all starting from the server's
 * initial parameters; then the rounds. */
static int run(party *server, options *o, const ex_digits *train, const ex_digits *test) {
    party clients[MAX_CLIENTS] = {{0}}, central = {0};
    double fed = 0, central_acc = 0;
    int status = start_trainer(server, o, 0);
    long made = 0;
    for (; !status && made < o->clients; made++) {
        int64_t first = made * train->n / o->clients, next = (made + 1) * train->n / o->clients;
        status = make_party(&clients[made], o, (uint64_t)o->seed + 1 + (uint64_t)made, train,
                            first, next - first, NULL);
    }
    if (!status)
        status = make_party(&central, o, (uint64_t)o->seed, train, 0, train->n, test) ||
                 copy_params(central.m, server->m) || start_trainer(&central, o, o->local_epochs);
    if (!status) {
        printf("%ld clients with %lld to %lld training rows each, %ld rounds of %ld local "
               "epoch(s), %s Adam per client\n\n",
               o->clients, (long long)(train->n / o->clients),
               (long long)((train->n + o->clients - 1) / o->clients), o->rounds, o->local_epochs,
               o->keep_optimizer ? "one kept" : "a fresh");
        status = run_rounds(server, clients, &central, o, &fed, &central_acc);
    }
    if (!status) {
        double gap = central_acc - fed;
        printf("\nfinal: FedAvg %.4f, centralized %.4f, gap %.2f points (%s %.0f)\n", fed,
               central_acc, 100 * gap, gap <= MAX_GAP ? "within" : "NOT within", 100 * MAX_GAP);
        status = gap > MAX_GAP;
    }
    for (long i = 0; i < made; i++) free_party(&clients[i]);
    free_party(&central);
    return status;
}

int main(int argc, char **argv) {
    options o;
    int parsed = parse_options(argc, argv, &o);
    if (parsed) return parsed > 0 ? 0 : 2;
    ex_digits train = {0}, test = {0};
    party server = {0};
    if (ex_model_create((uint64_t)o.seed, &server.m)) return 1;
    int status = ex_load_digits(server.m, o.data, &train, &test);
    if (!status && train.n < o.clients) {
        fprintf(stderr, "fedavg_digits: %lld training rows cannot make %ld shards\n",
                (long long)train.n, o.clients);
        status = 1;
    }
    if (!status)
        status = make_dataset(server.m, &test, 0, test.n, &server.test) ||
                 build(server.m, &o, server.test);
    if (!status) {
        printf("vikt %s: digits MLP %d-%ld-%d, ReLU, Adam lr %g, batch %d; %lld train / %lld "
               "test rows\n",
               vikt_version(), PIXELS, o.hidden, CLASSES, (double)LEARNING_RATE, BATCH,
               (long long)train.n, (long long)test.n);
        status = run(&server, &o, &train, &test);
    }
    free_party(&server);
    ex_free_digits(&train);
    ex_free_digits(&test);
    return status;
}
