/* Training-step speed of the five models, vikt side: one model at one
 * thread count per process, so the peak RSS it reports is that model's alone.
 *
 *   build/bench/train MODEL THREADS [RUNS]
 *
 * prints one line on stdout
 *
 *   vikt model=NAME threads=T per_s=X rss_mb=A params=P unit=U
 *
 * and the parameter count on stderr. A step is vikt_step_begin, zero_grad,
 * forward, loss, backward and the optimizer step, on the same batch every
 * time (fixed random data: speed does not depend on the values). Warm-up
 * steps run first (at least 0.3 s); then RUNS timed runs (default 7) of as
 * many steps as fill about 0.25 s each, and X is the median run's rate in
 * units per second: samples (sequences for lstm), tokens for transformer.
 * rss_mb is getrusage's ru_maxrss at the end. bench/train_torch.py is the
 * PyTorch side and bench/train.sh (`make bench-train`) runs both.
 *
 * Models (PyTorch's shapes, parameter names and initialization):
 *   mlp          784-256-256-10, ReLU, softmax cross-entropy, Adam, batch 64
 *   mlp1         the same at batch 1
 *   cnn          1x28x28 -> conv3x3(8) relu maxpool2 -> conv3x3(16) relu
 *                maxpool2 -> dense 10, cross-entropy, Adam, batch 32
 *   transformer  tokens (vocab 65) + learned positions (context 64), d 64,
 *                2 causal pre-LN blocks (4 heads, MLP 256), final layer norm,
 *                dense 65, cross-entropy on every position, AdamW, batch 16
 *   lstm         LSTM 32 -> 128 over 32 steps, dense 32 predicting the next
 *                step, MSE, Adam, batch 16
 *
 * Not a test: nothing fails on a slow result. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "vikt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Wall-clock time; with VIKT_BENCH_CLOCK=cpu the process's CPU time instead,
 * steadier on a shared machine for one-thread A/B comparisons while
 * developing (two threads' CPU time counts both, spinning included). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* xorshift32 data: reproducible, no dependence on libc's rand. */
static uint32_t rng_state = 2463534242u;
static uint32_t next_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}
static float uniform(void) { return (float)(next_u32() >> 8) / 16777216.0f; }

/* The batch one model trains on, made once. */
typedef struct data {
    float *x;      /* inputs */
    float *y;      /* regression targets (lstm) */
    int32_t *ids;  /* token ids (transformer) */
    int32_t *pos;  /* positions 0..T-1 (transformer) */
    int32_t *labels;
} data;

typedef struct model_spec {
    const char *name;
    const char *unit;
    int64_t batch;          /* samples per step */
    int64_t units_per_step; /* samples, or tokens for the transformer */
    vikt_optim_kind optim;
    float lr;
    void (*make_data)(const struct model_spec *s, data *d);
    vikt_tensor *(*loss)(vikt_model *m, const struct model_spec *s, const data *d);
} model_spec;

static float *floats(int64_t n, float lo, float hi) {
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) return NULL;
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * uniform();
    return p;
}

static int32_t *ints(int64_t n, int32_t below) {
    int32_t *p = malloc((size_t)n * sizeof *p);
    if (!p) return NULL;
    for (int64_t i = 0; i < n; i++) p[i] = (int32_t)(next_u32() % (uint32_t)below);
    return p;
}

/* ------------------------------------------------------------------ mlp */

static void mlp_data(const model_spec *s, data *d) {
    d->x = floats(s->batch * 784, 0.0f, 1.0f);
    d->labels = ints(s->batch, 10);
}

static vikt_tensor *mlp_loss(vikt_model *m, const model_spec *s, const data *d) {
    vikt_tensor *x = vikt_input(m, 2, (int64_t[]){s->batch, 784}, d->x);
    vikt_tensor *h = vikt_relu(m, vikt_dense(m, "fc1", x, 256));
    h = vikt_relu(m, vikt_dense(m, "fc2", h, 256));
    return vikt_cross_entropy_loss(m, vikt_dense(m, "fc3", h, 10), d->labels);
}

/* ------------------------------------------------------------------ cnn */

static void cnn_data(const model_spec *s, data *d) {
    d->x = floats(s->batch * 28 * 28, 0.0f, 1.0f);
    d->labels = ints(s->batch, 10);
}

static vikt_tensor *cnn_loss(vikt_model *m, const model_spec *s, const data *d) {
    vikt_tensor *x = vikt_input(m, 4, (int64_t[]){s->batch, 1, 28, 28}, d->x);
    vikt_tensor *h = vikt_max_pool2d(m, vikt_relu(m, vikt_conv2d(m, "conv1", x, 8, 3, 1, 0, 1)), 2, 2);
    h = vikt_max_pool2d(m, vikt_relu(m, vikt_conv2d(m, "conv2", h, 16, 3, 1, 0, 1)), 2, 2);
    return vikt_cross_entropy_loss(m, vikt_dense(m, "fc", vikt_flatten(m, h), 10), d->labels);
}

/* ---------------------------------------------------------- transformer */

enum { VOCAB = 65, CONTEXT = 64, D_MODEL = 64, HEADS = 4, LAYERS = 2 };

static void transformer_data(const model_spec *s, data *d) {
    d->ids = ints(s->batch * CONTEXT, VOCAB);
    d->labels = ints(s->batch * CONTEXT, VOCAB);
    d->pos = malloc(CONTEXT * sizeof *d->pos);
    if (d->pos)
        for (int t = 0; t < CONTEXT; t++) d->pos[t] = t;
}

static vikt_tensor *transformer_loss(vikt_model *m, const model_spec *s, const data *d) {
    int64_t B = s->batch;
    vikt_tensor *tok = vikt_embedding(m, "tok", d->ids, 2, (int64_t[]){B, CONTEXT}, VOCAB, D_MODEL);
    vikt_tensor *pos = vikt_embedding(m, "pos", d->pos, 1, (int64_t[]){CONTEXT}, CONTEXT, D_MODEL);
    vikt_tensor *h = vikt_add(m, tok, pos);
    static const char *const blocks[LAYERS] = {"blocks.0", "blocks.1"};
    for (int l = 0; l < LAYERS; l++) h = vikt_transformer_block(m, blocks[l], h, HEADS, 4 * D_MODEL, 1);
    vikt_tensor *logits = vikt_dense(m, "head", vikt_layer_norm(m, "ln_f", h, 1e-5f), VOCAB);
    logits = vikt_reshape(m, logits, 2, (int64_t[]){B * CONTEXT, VOCAB});
    return vikt_cross_entropy_loss(m, logits, d->labels);
}

/* ----------------------------------------------------------------- lstm */

enum { LSTM_IN = 32, LSTM_HIDDEN = 128, LSTM_STEPS = 32 };

/* A sequence of STEPS + 1 frames per sample: x is frames 0..T-1, the target
 * frames 1..T. */
static void lstm_data(const model_spec *s, data *d) {
    int64_t frame = LSTM_IN, seq = (LSTM_STEPS + 1) * frame;
    float *all = floats(s->batch * seq, -1.0f, 1.0f);
    d->x = malloc((size_t)(s->batch * LSTM_STEPS * frame) * sizeof(float));
    d->y = malloc((size_t)(s->batch * LSTM_STEPS * frame) * sizeof(float));
    if (!all || !d->x || !d->y) {
        free(all);
        return;
    }
    for (int64_t n = 0; n < s->batch; n++) {
        memcpy(d->x + n * LSTM_STEPS * frame, all + n * seq, (size_t)(LSTM_STEPS * frame) * sizeof(float));
        memcpy(d->y + n * LSTM_STEPS * frame, all + n * seq + frame,
               (size_t)(LSTM_STEPS * frame) * sizeof(float));
    }
    free(all);
}

static vikt_tensor *lstm_loss(vikt_model *m, const model_spec *s, const data *d) {
    int64_t shape[3] = {s->batch, LSTM_STEPS, LSTM_IN};
    vikt_tensor *x = vikt_input(m, 3, shape, d->x);
    vikt_tensor *y = vikt_input(m, 3, shape, d->y);
    vikt_tensor *h = vikt_lstm(m, "lstm", x, LSTM_HIDDEN, NULL, NULL, NULL, NULL);
    return vikt_mse_loss(m, vikt_dense(m, "out", h, LSTM_IN), y);
}

/* --------------------------------------------------------------- driver */

static const model_spec specs[] = {
    {"mlp", "samples", 64, 64, VIKT_OPTIM_ADAM, 1e-3f, mlp_data, mlp_loss},
    {"cnn", "samples", 32, 32, VIKT_OPTIM_ADAM, 1e-3f, cnn_data, cnn_loss},
    {"transformer", "tokens", 16, 16 * CONTEXT, VIKT_OPTIM_ADAMW, 3e-4f, transformer_data,
     transformer_loss},
    {"lstm", "samples", 16, 16, VIKT_OPTIM_ADAM, 1e-3f, lstm_data, lstm_loss},
    {"mlp1", "samples", 1, 1, VIKT_OPTIM_ADAM, 1e-3f, mlp_data, mlp_loss},
};

static int train_step(vikt_model *m, vikt_optimizer *opt, const model_spec *s, const data *d) {
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_backward(m, s->loss(m, s, d));
    vikt_optimizer_step(opt);
    return vikt_model_errcode(m);
}

/* Steps for t seconds (at least min_steps); returns the steps taken. */
static long run_for(vikt_model *m, vikt_optimizer *opt, const model_spec *s, const data *d,
                    double t, long min_steps, double *elapsed) {
    double t0 = now(), t1 = t0;
    long n = 0;
    while (n < min_steps || t1 - t0 < t) {
        if (train_step(m, opt, s, d)) return -1;
        n++;
        t1 = now();
    }
    *elapsed = t1 - t0;
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s mlp|cnn|transformer|lstm|mlp1 THREADS [RUNS]\n", argv[0]);
        return 2;
    }
    const model_spec *s = NULL;
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        if (strcmp(specs[i].name, argv[1]) == 0) s = &specs[i];
    int threads = atoi(argv[2]), runs = argc > 3 ? atoi(argv[3]) : 7;
    if (!s || threads < 1 || runs < 1 || runs > 99) {
        fprintf(stderr, "train: unknown model '%s' or bad thread/run count\n", argv[1]);
        return 2;
    }
    const char *clock_name = getenv("VIKT_BENCH_CLOCK");
    if (clock_name && strcmp(clock_name, "cpu") == 0) bench_clock = CLOCK_PROCESS_CPUTIME_ID;
    data d = {0};
    s->make_data(s, &d);
    vikt_model *m;
    vikt_optimizer *opt = NULL;
    if (vikt_model_create(NULL, 1, &m) != VIKT_OK) return 1;
    int rc = vikt_set_num_threads(m, threads);
    if (!rc) rc = vikt_optimizer_create(m, s->optim, s->lr, &opt);
    double elapsed, rate[99];
    if (!rc && run_for(m, opt, s, &d, 0.3, 3, &elapsed) < 0) rc = -1;
    long steps = 0;
    if (!rc) {
        /* Runs of ~0.25 s, sized from the warm-up's pace. */
        long n = run_for(m, opt, s, &d, 0.0, 3, &elapsed);
        steps = n < 0 ? -1 : (long)(0.25 / (elapsed / (double)n)) + 1;
        if (steps < 0) rc = -1;
    }
    for (int r = 0; !rc && r < runs; r++) {
        if (run_for(m, opt, s, &d, 0.0, steps, &elapsed) < 0) rc = -1;
        rate[r] = (double)steps * (double)s->units_per_step / elapsed;
    }
    if (rc) {
        fprintf(stderr, "train: %s: %s\n", s->name,
                vikt_model_errcode(m) ? vikt_model_errmsg(m) : vikt_strerror(rc));
    } else {
        qsort(rate, (size_t)runs, sizeof rate[0], cmp_double);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "train: %s: vikt %lld parameters, %ld steps per run\n", s->name,
                (long long)vikt_model_num_params(m), steps);
        printf("vikt model=%s threads=%d per_s=%.1f rss_mb=%.1f params=%lld unit=%s\n", s->name,
               threads, rate[runs / 2], (double)ru.ru_maxrss / 1024.0,
               (long long)vikt_model_num_params(m), s->unit);
    }
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    free(d.x), free(d.y), free(d.ids), free(d.pos), free(d.labels);
    return rc ? 1 : 0;
}
