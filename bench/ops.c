/* Hot elementwise paths at the sizes real models run them, through the public
 * API, one line per case:
 *
 *   ops isa=I case=NAME shape=S elems=N fwd_ns_per_elem=F step_ns_per_elem=T
 *
 * fwd is the op's forward pass alone; step is a whole training step around it
 * (forward, a sum to a scalar loss, backward), so it includes the sum's
 * forward and backward (one read, one broadcast write). The optimizer cases
 * time vikt_optimizer_step over ~270K parameters and print
 *
 *   ops isa=I case=adam params=N step_ns_per_elem=T gb_per_s=G
 *
 * with G counting the floats the rule must read and write once (parameter,
 * gradient, state). Each figure is the best of REPS timed runs after a
 * warm-up. VIKT_ISA picks the kernel set, as everywhere; `make bench-ops`
 * runs every usable one. Not a test: nothing here fails on a slow result. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "vikt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPS 15

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef enum { K_RELU, K_SIGMOID, K_TANH, K_GELU, K_EXP, K_BIAS, K_MUL, K_SOFTMAX,
               K_LOGSOFTMAX, K_CE, K_SUM } kind;

typedef struct {
    const char *name;
    kind k;
    int rank;
    int64_t shape[4];
} op_case;

static const op_case cases[] = {
    {"mlp_relu", K_RELU, 2, {64, 256}},
    {"mlp_sigmoid", K_SIGMOID, 2, {64, 256}},
    {"mlp_tanh", K_TANH, 2, {64, 256}},
    {"mlp_gelu", K_GELU, 2, {64, 256}},
    {"mlp_exp", K_EXP, 2, {64, 256}},
    {"mlp_bias_add", K_BIAS, 2, {64, 256}},
    {"cnn_relu", K_RELU, 4, {32, 8, 26, 26}},
    {"cnn_mul", K_MUL, 4, {32, 8, 26, 26}},
    {"cnn_bias_add", K_BIAS, 4, {32, 8, 26, 26}},
    {"attn_softmax64", K_SOFTMAX, 3, {16, 64, 64}},
    {"attn_log_softmax64", K_LOGSOFTMAX, 3, {16, 64, 64}},
    {"lm_cross_entropy65", K_CE, 2, {1024, 65}},
    {"sum_270k", K_SUM, 1, {270000}},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static int64_t numel_of(const op_case *c) {
    int64_t n = 1;
    for (int i = 0; i < c->rank; i++) n *= c->shape[i];
    return n;
}

/* The op under test on x; the second operand and labels come from the caller. */
static vikt_tensor *apply(vikt_model *m, const op_case *c, vikt_tensor *x, vikt_tensor *other,
                          const int32_t *labels) {
    switch (c->k) {
    case K_RELU: return vikt_relu(m, x);
    case K_SIGMOID: return vikt_sigmoid(m, x);
    case K_TANH: return vikt_tanh(m, x);
    case K_GELU: return vikt_gelu(m, x);
    case K_EXP: return vikt_exp(m, x);
    case K_BIAS: return vikt_add(m, x, other);
    case K_MUL: return vikt_mul(m, x, other);
    case K_SOFTMAX: return vikt_softmax(m, x);
    case K_LOGSOFTMAX: return vikt_log_softmax(m, x);
    case K_CE: return vikt_cross_entropy_loss(m, x, labels);
    case K_SUM: return vikt_sum(m, x);
    }
    return NULL;
}

/* A parameter filled from N(0, 1) (any rank). */
static vikt_tensor *param_normal(vikt_model *m, const char *name, int rank, const int64_t *shape) {
    vikt_tensor *p = vikt_param(m, name, rank, shape, VIKT_INIT_ZEROS);
    if (p) vikt_tensor_fill_normal(p, 0.0f, 1.0f);
    return p;
}

/* The second operand: a bias broadcast along rows (MLP [C]) or over maps
 * (CNN [C,1,1]), or a same-shape tensor. */
static vikt_tensor *second(vikt_model *m, const op_case *c) {
    if (c->k == K_BIAS && c->rank == 2)
        return param_normal(m, "b", 1, &c->shape[1]);
    if (c->k == K_BIAS) {
        int64_t s[3] = {c->shape[1], 1, 1};
        return param_normal(m, "b", 3, s);
    }
    if (c->k == K_MUL) return param_normal(m, "w", c->rank, c->shape);
    return NULL;
}

static int run_case(const op_case *c, const char *isa) {
    vikt_model *m;
    if (vikt_model_create(NULL, 1, &m) != VIKT_OK) return 1;
    int64_t n = numel_of(c);
    vikt_tensor *x = param_normal(m, "x", c->rank, c->shape);
    vikt_tensor *other = second(m, c);
    int32_t *labels = malloc((size_t)c->shape[0] * sizeof *labels);
    if (!labels) return 1;
    for (int64_t r = 0; r < c->shape[0]; r++) labels[r] = c->rank == 2 ? (int32_t)((r * 7) % c->shape[1]) : 0;
    double best_fwd = 1e30, best_step = 1e30;
    for (int rep = 0; rep <= REPS; rep++) { /* rep 0 warms up */
        vikt_set_grad_enabled(m, 0);
        vikt_step_begin(m);
        double t0 = now();
        apply(m, c, x, other, labels);
        double t1 = now();
        vikt_set_grad_enabled(m, 1);
        vikt_step_begin(m);
        vikt_zero_grad(m);
        double t2 = now();
        vikt_tensor *y = apply(m, c, x, other, labels);
        vikt_tensor *loss = y && vikt_tensor_rank(y) == 0 ? y : vikt_sum(m, y);
        vikt_backward(m, loss);
        double t3 = now();
        if (rep > 0) {
            if (t1 - t0 < best_fwd) best_fwd = t1 - t0;
            if (t3 - t2 < best_step) best_step = t3 - t2;
        }
    }
    int err = vikt_model_errcode(m);
    if (err) fprintf(stderr, "%s: %s\n", c->name, vikt_model_errmsg(m));
    char shape[64] = "";
    for (int i = 0; i < c->rank; i++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), i ? "x%lld" : "%lld",
                 (long long)c->shape[i]);
    printf("ops isa=%s case=%s shape=%s elems=%lld fwd_ns_per_elem=%.3f step_ns_per_elem=%.3f\n",
           isa, c->name, shape, (long long)n, best_fwd * 1e9 / (double)n,
           best_step * 1e9 / (double)n);
    free(labels);
    vikt_model_destroy(m);
    return err != 0;
}

typedef struct {
    const char *name;
    vikt_optim_kind kind;
    double momentum;
    int amsgrad;
    int state_floats; /* state buffers the rule reads and writes */
} optim_case;

static const optim_case optims[] = {
    {"sgd_momentum", VIKT_OPTIM_SGD, 0.9, 0, 1},
    {"adam", VIKT_OPTIM_ADAM, 0, 0, 2},
    {"adamw", VIKT_OPTIM_ADAMW, 0, 0, 2},
    {"adamw_amsgrad", VIKT_OPTIM_ADAMW, 0, 1, 3},
    {"rmsprop", VIKT_OPTIM_RMSPROP, 0, 0, 1},
    {"adagrad", VIKT_OPTIM_ADAGRAD, 0, 0, 1},
};

/* An MLP-sized parameter set: 784·320 + 320 + 320·32 + 32 + 32·10 + 10 ≈ 270K. */
static int run_optim(const optim_case *c, const char *isa) {
    vikt_model *m;
    if (vikt_model_create(NULL, 1, &m) != VIKT_OK) return 1;
    static const int64_t shapes[6][2] = {{320, 784}, {320, 1}, {32, 320}, {32, 1}, {10, 32}, {10, 1}};
    int64_t total = 0;
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        vikt_tensor *p = param_normal(m, name, shapes[i][1] == 1 ? 1 : 2, shapes[i]);
        if (!p) return 1;
        float *g = vikt_tensor_grad(p);
        for (int64_t j = 0; g && j < vikt_tensor_numel(p); j++) g[j] = 1e-3f * (float)(j % 17 - 8);
        total += vikt_tensor_numel(p);
    }
    vikt_optimizer *opt;
    if (vikt_optimizer_create(m, c->kind, 1e-3f, &opt) != VIKT_OK) return 1;
    if (c->momentum) vikt_optimizer_set(opt, VIKT_OPT_MOMENTUM, c->momentum);
    if (c->amsgrad) vikt_optimizer_set(opt, VIKT_OPT_AMSGRAD, 1);
    double best = 1e30;
    for (int rep = 0; rep <= REPS; rep++) {
        double t0 = now();
        vikt_optimizer_step(opt);
        double t1 = now();
        if (rep > 0 && t1 - t0 < best) best = t1 - t0;
    }
    int err = vikt_model_errcode(m);
    if (err) fprintf(stderr, "%s: %s\n", c->name, vikt_model_errmsg(m));
    /* parameter read+write, gradient read, each state buffer read+write */
    double bytes = (double)total * 4.0 * (3 + 2 * c->state_floats);
    printf("ops isa=%s case=%s params=%lld step_ns_per_elem=%.3f gb_per_s=%.2f\n", isa, c->name,
           (long long)total, best * 1e9 / (double)total, bytes / best * 1e-9);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    return err != 0;
}

/* One training step of an MLP 784-256-10 on a batch of 64 (ReLU,
 * cross-entropy, Adam): the end-to-end figure, GEMM included. */
static int run_mlp_step(const char *isa) {
    vikt_model *m;
    if (vikt_model_create(NULL, 1, &m) != VIKT_OK) return 1;
    enum { B = 64, IN = 784, HID = 256, OUT = 10 };
    float *x = malloc(sizeof(float) * B * IN);
    int32_t labels[B];
    if (!x) return 1;
    for (int i = 0; i < B * IN; i++) x[i] = (float)((i * 37) % 101) / 101.0f;
    for (int i = 0; i < B; i++) labels[i] = i % OUT;
    vikt_optimizer *opt = NULL;
    double best = 1e30;
    for (int rep = 0; rep <= 4 * REPS; rep++) {
        double t0 = now();
        vikt_step_begin(m);
        vikt_tensor *in = vikt_input(m, 2, (int64_t[]){B, IN}, x);
        vikt_tensor *h = vikt_relu(m, vikt_dense(m, "fc1", in, HID));
        vikt_tensor *loss = vikt_cross_entropy_loss(m, vikt_dense(m, "fc2", h, OUT), labels);
        vikt_zero_grad(m);
        vikt_backward(m, loss);
        if (!opt && vikt_adam_create(m, 1e-3f, &opt) != VIKT_OK) break;
        vikt_optimizer_step(opt);
        double t1 = now();
        if (rep > 0 && t1 - t0 < best) best = t1 - t0;
    }
    int err = vikt_model_errcode(m);
    if (err) fprintf(stderr, "mlp_step: %s\n", vikt_model_errmsg(m));
    printf("ops isa=%s case=mlp_train_step shape=64x784-256-10 adam step_us=%.1f\n", isa,
           best * 1e6);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    free(x);
    return err != 0;
}

int main(void) {
    const char *isa = vikt_gemm_isa();
    int bad = 0;
    for (int i = 0; i < NCASES; i++) bad |= run_case(&cases[i], isa);
    for (size_t i = 0; i < sizeof optims / sizeof optims[0]; i++) bad |= run_optim(&optims[i], isa);
    bad |= run_mlp_step(isa);
    return bad;
}
