/* A small decoder-only transformer that learns a text one character (byte)
 * at a time, then writes new text in its style.
 *
 *   make examples
 *   build/examples/char_transformer                      (trains on examples/data/weights.txt)
 *   build/examples/char_transformer --steps 3000 --threads 2 --save char.safetensors my.txt
 *   build/examples/char_transformer --load char.safetensors --steps 0 --prompt "The tape"
 *
 * What it shows: a model defined as plain C that is re-run every step
 * (token and position embeddings, causal pre-LN transformer blocks, a final
 * layer norm and a dense head); the training loop written by hand with AdamW,
 * a cosine schedule with warm-up and gradient clipping; a held-out loss
 * measured with gradients off; sampling with a temperature in no-grad mode;
 * a checkpoint saved with vikt_save() and read back with vikt_load().
 *
 * What to expect with the defaults: about 80 s of one core (1500 steps at
 * roughly 20 steps/s); the held-out loss falls from 4.3 (ln 66, a uniform
 * guess over the 66 symbols of the default text) to about 1.65 nats per
 * character, the training loss to about 1.15 (a small text: the gap is
 * memorization), and the sample turns from random symbols into mostly real
 * words with spaces, commas and capitals in the right places.
 *
 * The vocabulary is the set of bytes in the text (UTF-8 text works; a
 * multi-byte character is just several tokens). The first 90% of the text
 * trains, the last 10% is held out. Every random choice (initialization,
 * training windows, sampling) follows --seed, so a run repeats exactly for
 * the same seed, thread count and GEMM kernel.
 *
 * Options (all optional; --help prints them):
 *   --steps N        training steps (default 1500; 0 only samples)
 *   --threads N      threads for the matrix products (default 1)
 *   --seed N         random seed (default 42)
 *   --temperature F  sampling temperature > 0 (default 0.8; lower is safer,
 *                    higher is wilder)
 *   --prompt TEXT    the text the sample continues (default "The model ")
 *   --chars N        characters to sample (default 400)
 *   --save PATH      write the trained parameters and the vocabulary to a
 *                    safetensors file
 *   --load PATH      start from such a file (the text must use the same bytes)
 *   [text-file]      the text to learn (default examples/data/weights.txt)
 *
 * The option parsing and error reporting live in
 * example_util.h next to this file (small static functions, ex_*).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vikt.h>
#define EXAMPLE_NAME "char_transformer"
#include "example_util.h"

/* The network's size: about 110 thousand parameters for a ~70-symbol text. */
enum {
    CONTEXT = 64, /* characters the model sees at once */
    D_MODEL = 64,
    HEADS = 4,
    LAYERS = 2,
    MLP_HIDDEN = 4 * D_MODEL,
    BATCH = 16,         /* windows per step */
    EVAL_BATCHES = 8,   /* held-out windows: EVAL_BATCHES × BATCH */
    MAX_VOCAB = 256,
    MAX_TEXT = 64 << 20 /* refuse texts above 64 MiB */
};

typedef struct options {
    long steps, threads, chars;
    unsigned long long seed;
    double temperature;
    const char *prompt, *save, *load, *text;
} options;

/* ---------------------------------------------------------------- helpers */

/* splitmix64: a tiny generator with a fixed definition, so the windows and
 * samples are the same on every C library (rand() is not). */
static unsigned long long next_random(unsigned long long *state) {
    unsigned long long z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(unsigned long long *state) {
    return (double)(next_random(state) >> 11) * (1.0 / 9007199254740992.0);
}

static double seconds_now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --------------------------------------------------------------- the text */

typedef struct corpus {
    unsigned char *bytes;
    long size;
    int32_t *ids;                /* bytes as token ids */
    int vocab;                   /* distinct bytes */
    unsigned char symbol[MAX_VOCAB]; /* token id → byte */
    int32_t id_of[MAX_VOCAB];        /* byte → token id, or -1 */
} corpus;

static int read_text(const char *path, corpus *c) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    const char *problem = size < 0 || fseek(f, 0, SEEK_SET) ? "cannot tell its size"
                          : size > MAX_TEXT                 ? "larger than 64 MiB"
                          : size < 10 * 2 * (CONTEXT + 1)
                              ? "too short: need 1300 bytes (the held-out 10% must hold 2 windows)"
                              : NULL;
    if (!problem) {
        c->bytes = malloc((size_t)size);
        c->ids = malloc((size_t)size * sizeof *c->ids);
        c->size = size;
        problem = !c->bytes || !c->ids                             ? "out of memory"
                  : fread(c->bytes, 1, (size_t)size, f) != (size_t)size ? "read error"
                                                                    : NULL;
    }
    fclose(f);
    if (problem) {
        fprintf(stderr, "%s: %s\n", path, problem);
        return -1;
    }
    for (int b = 0; b < MAX_VOCAB; b++) c->id_of[b] = -1;
    for (long i = 0; i < c->size; i++) c->id_of[c->bytes[i]] = 0;
    c->vocab = 0;
    for (int b = 0; b < MAX_VOCAB; b++)
        if (c->id_of[b] == 0) {
            c->id_of[b] = c->vocab;
            c->symbol[c->vocab++] = (unsigned char)b;
        }
    for (long i = 0; i < c->size; i++) c->ids[i] = c->id_of[c->bytes[i]];
    return 0;
}

static void free_text(corpus *c) {
    free(c->bytes);
    free(c->ids);
}

/* -------------------------------------------------------------- the model */

/* Logits [n, t, vocab] for token ids [n, t] (t <= CONTEXT). Parameters are
 * created on the first call: tok.weight, pos.weight, block<i>.*, ln_f.*,
 * head.*. */
static vikt_tensor *forward(vikt_model *m, const int32_t *ids, int64_t n, int64_t t, int vocab) {
    int32_t positions[CONTEXT];
    for (int32_t i = 0; i < CONTEXT; i++) positions[i] = i;
    vikt_tensor *tok = vikt_embedding(m, "tok", ids, 2, (int64_t[]){n, t}, vocab, D_MODEL);
    vikt_tensor *pos = vikt_embedding(m, "pos", positions, 1, (int64_t[]){t}, CONTEXT, D_MODEL);
    vikt_tensor *x = vikt_add(m, tok, pos); /* [n, t, D] + [t, D] broadcasts */
    for (int layer = 0; layer < LAYERS; layer++) {
        char name[32];
        snprintf(name, sizeof name, "block%d", layer);
        x = vikt_transformer_block(m, name, x, HEADS, MLP_HIDDEN, 1 /* causal */);
    }
    return vikt_dense(m, "head", vikt_layer_norm(m, "ln_f", x, 1e-5f), vocab);
}

/* Mean cross-entropy (nats per character) of predicting each next byte of
 * BATCH windows starting at the given offsets. */
static vikt_tensor *window_loss(vikt_model *m, const corpus *c, const long *starts) {
    int32_t in[BATCH * CONTEXT], next[BATCH * CONTEXT];
    for (int b = 0; b < BATCH; b++) {
        memcpy(in + b * CONTEXT, c->ids + starts[b], CONTEXT * sizeof *in);
        memcpy(next + b * CONTEXT, c->ids + starts[b] + 1, CONTEXT * sizeof *next);
    }
    vikt_tensor *logits = forward(m, in, BATCH, CONTEXT, c->vocab);
    vikt_tensor *rows = vikt_reshape(m, logits, 2, (int64_t[]){BATCH * CONTEXT, c->vocab});
    return vikt_cross_entropy_loss(m, rows, next);
}

/* The held-out loss: fixed windows spread evenly over the last 10%, with
 * gradients off (no tape is recorded). Returns a negative value on error. */
static double heldout_loss(vikt_model *m, const corpus *c, long split) {
    long span = c->size - split - (CONTEXT + 1);
    double total = 0;
    vikt_set_grad_enabled(m, 0);
    for (int e = 0; e < EVAL_BATCHES; e++) {
        long starts[BATCH];
        for (int b = 0; b < BATCH; b++)
            starts[b] = split + span * (e * BATCH + b) / (EVAL_BATCHES * BATCH - 1);
        vikt_step_begin(m);
        vikt_tensor *loss = window_loss(m, c, starts);
        if (!loss) break;
        total += vikt_tensor_data(loss)[0];
    }
    vikt_set_grad_enabled(m, 1);
    return vikt_model_errcode(m) ? -1 : total / EVAL_BATCHES;
}

/* ------------------------------------------------------------- training */

static int make_optimizer(vikt_model *m, long steps, vikt_optimizer **out) {
    /* AdamW, warm-up over the first 100 steps (or a tenth of a short run),
     * then a cosine decay to a tenth of the peak; gradients clipped to norm 1. */
    const double peak = 3e-3;
    long warmup = steps < 1000 ? steps / 10 : 100;
    vikt_optimizer *opt;
    int rc = vikt_optimizer_create(m, VIKT_OPTIM_ADAMW, (float)peak, &opt);
    if (rc) {
        fprintf(stderr, "char_transformer: vikt_optimizer_create: %s\n", vikt_strerror(rc));
        return rc;
    }
    const struct {
        vikt_optim_param param;
        double value;
    } settings[] = {
        {VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_COSINE},
        {VIKT_OPT_WARMUP_STEPS, (double)warmup},
        {VIKT_OPT_T_MAX, (double)(steps - warmup > 0 ? steps - warmup : 1)},
        {VIKT_OPT_ETA_MIN, peak / 10},
        {VIKT_OPT_CLIP_NORM, 1.0},
    };
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        rc = vikt_optimizer_set(opt, settings[i].param, settings[i].value);
        if (rc) {
            fprintf(stderr, "char_transformer: vikt_optimizer_set(%d): %s\n",
                    (int)settings[i].param, vikt_strerror(rc));
            vikt_optimizer_destroy(opt);
            return rc;
        }
    }
    *out = opt;
    return 0;
}

static int train(vikt_model *m, const corpus *c, const options *o) {
    long split = c->size * 9 / 10;
    long starts_max = split - (CONTEXT + 1); /* windows lie inside the training 90% */
    unsigned long long rng = o->seed ^ 0xC0FFEEull;
    vikt_optimizer *opt;
    if (make_optimizer(m, o->steps, &opt)) return 1;

    double before = heldout_loss(m, c, split);
    if (ex_failed(m, "held-out loss", 0)) goto fail;
    printf("step %5d  held-out loss %.3f  (uniform guess: %.3f = ln %d)\n", 0, before,
           log((double)c->vocab), c->vocab);

    long report_every = o->steps >= 10 ? o->steps / 10 : 1;
    double window_total = 0, t0 = seconds_now();
    long window_steps = 0;
    for (long step = 1; step <= o->steps; step++) {
        long starts[BATCH];
        for (int b = 0; b < BATCH; b++)
            starts[b] = (long)(next_random(&rng) % (unsigned long long)(starts_max + 1));
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *loss = window_loss(m, c, starts);
        vikt_backward(m, loss);
        int rc = vikt_optimizer_step(opt);
        if (ex_failed(m, "training step", 0)) goto fail;
        if (rc) {
            fprintf(stderr, "char_transformer: vikt_optimizer_step: %s\n", vikt_strerror(rc));
            goto fail;
        }
        window_total += vikt_tensor_data(loss)[0];
        window_steps++;
        if (step % report_every == 0 || step == o->steps) {
            double t1 = seconds_now(), lr;
            vikt_optimizer_get(opt, VIKT_OPT_CURRENT_LR, &lr);
            double held = heldout_loss(m, c, split);
            if (ex_failed(m, "held-out loss", 0)) goto fail;
            printf("step %5ld  train loss %.3f  held-out loss %.3f  lr %.2e  %.1f steps/s\n", step,
                   window_total / window_steps, held, lr, window_steps / (t1 - t0));
            fflush(stdout);
            window_total = 0;
            window_steps = 0;
            t0 = seconds_now(); /* the held-out pass is not counted as training time */
        }
    }
    vikt_optimizer_destroy(opt);
    return 0;
fail:
    vikt_optimizer_destroy(opt);
    return 1;
}

/* ------------------------------------------------------------- sampling */

/* Draws a token from softmax(logits / temperature) with a uniform number u. */
static int draw(const float *logits, int vocab, double temperature, double u) {
    double p[MAX_VOCAB], top = -HUGE_VAL, total = 0;
    for (int i = 0; i < vocab; i++)
        if (logits[i] > top) top = logits[i];
    for (int i = 0; i < vocab; i++) total += p[i] = exp((logits[i] - top) / temperature);
    double target = u * total;
    for (int i = 0; i < vocab; i++) {
        target -= p[i];
        if (target < 0) return i;
    }
    return vocab - 1; /* rounding left u·total just above the sum */
}

/* Whether every byte of the prompt occurs in the text (the model has no
 * token for any other); says which one does not. */
static int prompt_fits(const corpus *c, const char *prompt) {
    for (const unsigned char *p = (const unsigned char *)prompt; *p; p++)
        if (c->id_of[*p] < 0) {
            fprintf(stderr, "char_transformer: the prompt's byte 0x%02x ('%c') is not in the text\n",
                    *p, *p >= 32 && *p < 127 ? *p : '?');
            return 0;
        }
    return 1;
}

/* Continues the prompt one byte at a time, feeding the last CONTEXT bytes
 * back in with gradients off; prints as it goes. */
static int sample(vikt_model *m, const corpus *c, const options *o) {
    long cap = (long)strlen(o->prompt) + o->chars;
    int32_t *ids = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "char_transformer: out of memory\n");
        return 1;
    }
    long n = 0;
    for (const unsigned char *p = (const unsigned char *)o->prompt; *p; p++)
        ids[n++] = c->id_of[*p]; /* prompt_fits() checked every byte */
    unsigned long long rng = o->seed ^ 0x5A3B1Eull;
    printf("\n--- sample (temperature %.2f) ---\n%s", o->temperature, o->prompt);
    vikt_set_grad_enabled(m, 0);
    int rc = 0;
    for (long i = 0; i < o->chars; i++) {
        long t = n < CONTEXT ? n : CONTEXT;
        vikt_step_begin(m);
        vikt_tensor *logits = forward(m, ids + n - t, 1, t, c->vocab);
        if (ex_failed(m, "sampling", 0)) {
            rc = 1;
            break;
        }
        int next = draw(vikt_tensor_data(logits) + (t - 1) * c->vocab, c->vocab, o->temperature,
                        uniform01(&rng));
        ids[n++] = next;
        putchar(c->symbol[next]);
    }
    printf("\n---\n");
    vikt_set_grad_enabled(m, 1);
    free(ids);
    return rc;
}

/* ------------------------------------------------------ checkpoint files */

/* The vocabulary travels with the weights as a buffer of byte values, so a
 * checkpoint is never read with another text's alphabet. */
static int store_vocab(vikt_model *m, const corpus *c) {
    vikt_tensor *v = vikt_buffer(m, "vocab", 1, (int64_t[]){c->vocab}, VIKT_INIT_ZEROS);
    if (!v) return ex_failed(m, "vocab buffer", 0);
    float *values = vikt_tensor_data(v);
    for (int i = 0; i < c->vocab; i++) values[i] = c->symbol[i];
    return 0;
}

static int load_checkpoint(vikt_model *m, const corpus *c, const char *path) {
    if (vikt_load(m, path, VIKT_LOAD_STRICT)) {
        char report[1024];
        vikt_load_report(m, report, sizeof report);
        fprintf(stderr, "char_transformer: %s\n", report);
        return 1;
    }
    vikt_tensor *v = vikt_buffer_find(m, "vocab");
    if (!v) {
        fprintf(stderr, "char_transformer: %s has no \"vocab\" buffer: not a checkpoint of this "
                        "program\n", path);
        return 1;
    }
    int same = vikt_tensor_numel(v) == c->vocab;
    for (int i = 0; same && i < c->vocab; i++) same = vikt_tensor_data(v)[i] == c->symbol[i];
    if (!same) {
        fprintf(stderr, "char_transformer: %s was trained on a text with other bytes than this "
                        "one; pass the same text file\n", path);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- options */

static void usage(FILE *f) {
    fprintf(f,
            "usage: char_transformer [options] [text-file]\n"
            "Trains a small character-level transformer on a text file (default\n"
            "examples/data/weights.txt), printing train and held-out loss, then samples text.\n"
            "  --steps N        training steps (default 1500; 0 only samples)\n"
            "  --threads N      threads for matrix products, 1..64 (default 1)\n"
            "  --seed N         random seed (default 42)\n"
            "  --temperature F  sampling temperature > 0 (default 0.8)\n"
            "  --prompt TEXT    text the sample continues (default \"The model \")\n"
            "  --chars N        characters to sample (default 400)\n"
            "  --save PATH      save parameters and vocabulary (safetensors)\n"
            "  --load PATH      start from a saved file (same text alphabet)\n"
            "  --help           this text\n");
}

/* Returns 0 to run, 1 after --help, -1 on a bad option. */
static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.steps = 1500, .threads = 1, .chars = 400, .seed = 42, .temperature = 0.8,
                   .prompt = "The model ", .text = "examples/data/weights.txt"};
    int texts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--steps")) {
            if (ex_parse_long(a, v, 0, 100000000, &o->steps)) return -1;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (ex_parse_long(a, v, 1, 64, &o->threads)) return -1;
            i++;
        } else if (!strcmp(a, "--chars")) {
            if (ex_parse_long(a, v, 0, 1000000, &o->chars)) return -1;
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (ex_parse_long(a, v, 0, 2147483647, &n)) return -1;
            o->seed = (unsigned long long)n;
            i++;
        } else if (!strcmp(a, "--temperature")) {
            char *end;
            o->temperature = v ? strtod(v, &end) : 0;
            if (!v || end == v || *end || !(o->temperature > 0 && o->temperature <= 100)) {
                fprintf(stderr, "char_transformer: --temperature needs a number in (0, 100]\n");
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--prompt") || !strcmp(a, "--save") || !strcmp(a, "--load")) {
            if (!v) {
                fprintf(stderr, "char_transformer: %s needs a value\n", a);
                return -1;
            }
            *(a[2] == 'p' ? &o->prompt : a[2] == 's' ? &o->save : &o->load) = v;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "char_transformer: unknown option %s (try --help)\n", a);
            return -1;
        } else {
            o->text = a;
            texts++;
        }
    }
    if (texts > 1) {
        fprintf(stderr, "char_transformer: give one text file (try --help)\n");
        return -1;
    }
    if (!o->prompt[0]) {
        fprintf(stderr, "char_transformer: --prompt must not be empty\n");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    options o;
    int parsed = parse_options(argc, argv, &o);
    if (parsed) return parsed > 0 ? 0 : 2;

    corpus c = {0};
    if (read_text(o.text, &c) || !prompt_fits(&c, o.prompt)) {
        free_text(&c);
        return 1;
    }
    vikt_model *m;
    if (ex_model_create(o.seed, &m)) {
        free_text(&c);
        return 1;
    }
    int rc = vikt_set_num_threads(m, (int)o.threads);
    if (rc) fprintf(stderr, "char_transformer: vikt_set_num_threads: %s\n", vikt_strerror(rc));
    int status = rc != 0;
    if (!status && o.load) status = load_checkpoint(m, &c, o.load);
    if (!status) {
        /* A first forward creates the parameters (or checks a loaded file's
         * shapes against the layers), so the summary can list them. */
        vikt_set_grad_enabled(m, 0);
        vikt_step_begin(m);
        forward(m, c.ids, 1, 1, c.vocab);
        vikt_set_grad_enabled(m, 1);
        status = ex_failed(m, "building the model", 0);
    }
    if (!status) {
        char table[4096];
        vikt_model_summary(m, table, sizeof table);
        printf("vikt %s, %s kernel, %ld thread(s); text %s: %ld bytes, %d symbols; context %d, "
               "d_model %d, %d heads, %d layers, batch %d\n\n%s\n",
               vikt_version(), vikt_gemm_isa(), o.threads, o.text, c.size, c.vocab, CONTEXT,
               D_MODEL, HEADS, LAYERS, BATCH, table);
        status = train(m, &c, &o);
    }
    if (!status && o.save) {
        status = store_vocab(m, &c);
        if (!status && vikt_save(m, o.save)) status = ex_failed(m, "saving", 0);
        if (!status) printf("saved %s\n", o.save);
    }
    if (!status && o.chars > 0) status = sample(m, &c, &o);
    vikt_model_destroy(m);
    free_text(&c);
    return status;
}
