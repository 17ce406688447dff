/* The fit loop (documented in vikt.h, "Training"): mini-batch steps over a
 * dataset with the public calls a user would write, per-epoch evaluation,
 * early stopping with a copy of the best values, progress text, a CSV log
 * and callbacks. Everything a step needs is allocated before the second
 * step, so the loop's steady state makes no allocator call. */
#define _POSIX_C_SOURCE 200809L

#include "vikt_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_LINE_MAX 320
#define REDRAW_SECONDS 0.1

enum { NSETTINGS = VIKT_FIT_PRINT_EVERY + 1, NPARAMS = VIKT_FIT_EPOCH_SECONDS + 1 };

struct vikt_trainer {
    vikt_model *model;
    vikt_optimizer *opt;
    vikt_forward_fn forward;
    void *forward_ud;
    double values[NPARAMS]; /* settings and results, indexed by vikt_fit_param */
    vikt_write_fn writer;
    void *writer_ud;
    vikt_fit_callback_fn callback;
    void *callback_ud;
    vikt_penalty_fn penalty; /* added to each training step's loss, or NULL */
    void *penalty_ud;
    char *log_path;
    size_t log_path_size;
    /* Buffers kept between fits: labels of one batch; the best epoch's
     * values of every parameter and buffer. */
    int32_t *labels;
    int64_t labels_cap;
    float *best;
    int64_t best_cap;
    int64_t best_len; /* floats held in best; 0 = no copy taken */
    /* Progress state of the running fit. */
    int redraw;
    double epoch_start, last_draw;
    int64_t epoch_samples;
    double loss_sum, correct_sum, accuracy_count;
};

static const char *const NAMES[NPARAMS] = {
    "VIKT_FIT_EPOCHS", "VIKT_FIT_BATCH_SIZE", "VIKT_FIT_LOSS", "VIKT_FIT_SHUFFLE",
    "VIKT_FIT_DROP_LAST", "VIKT_FIT_PATIENCE", "VIKT_FIT_MIN_DELTA", "VIKT_FIT_RESTORE_BEST",
    "VIKT_FIT_PROGRESS", "VIKT_FIT_PRINT_EVERY"};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* -------------------------------------------------------------- settings */

int vikt_trainer_create(vikt_model *m, vikt_optimizer *opt, vikt_forward_fn forward, void *ud,
                        vikt_trainer **out) {
    if (!out) return VIKT_ERR_NULL;
    *out = NULL;
    if (!m) return VIKT_ERR_NULL;
    if (!forward) return vikt__fail(m, VIKT_ERR_NULL, "vikt_trainer_create: forward is NULL");
    vikt_trainer *t = vikt__alloc(m, sizeof *t);
    if (!t) return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_trainer_create: out of memory");
    memset(t, 0, sizeof *t);
    t->model = m;
    t->opt = opt;
    t->forward = forward;
    t->forward_ud = ud;
    t->values[VIKT_FIT_EPOCHS] = 10;
    t->values[VIKT_FIT_BATCH_SIZE] = 32;
    t->values[VIKT_FIT_LOSS] = VIKT_LOSS_CROSS_ENTROPY;
    t->values[VIKT_FIT_SHUFFLE] = 1;
    t->values[VIKT_FIT_RESTORE_BEST] = 1;
    t->values[VIKT_FIT_PROGRESS] = VIKT_PROGRESS_AUTO;
    t->values[VIKT_FIT_VAL_LOSS] = NAN;
    t->values[VIKT_FIT_VAL_ACCURACY] = NAN;
    t->values[VIKT_FIT_BEST_VAL_LOSS] = NAN;
    t->values[VIKT_FIT_TRAIN_ACCURACY] = NAN;
    t->values[VIKT_FIT_TRAIN_LOSS] = NAN;
    t->values[VIKT_FIT_BATCH_LOSS] = NAN;
    *out = t;
    return VIKT_OK;
}

void vikt_trainer_destroy(vikt_trainer *t) {
    if (!t) return;
    vikt_model *m = t->model;
    vikt__free(m, t->labels, (size_t)t->labels_cap * sizeof *t->labels);
    vikt__free(m, t->best, (size_t)t->best_cap * sizeof *t->best);
    vikt__free(m, t->log_path, t->log_path_size);
    vikt__free(m, t, sizeof *t);
}

static int whole(double v) { return v == floor(v) && fabs(v) < 9.0e15; }

static int setting_ok(vikt_fit_param p, double v) {
    switch (p) {
    case VIKT_FIT_EPOCHS:
    case VIKT_FIT_BATCH_SIZE: return whole(v) && v >= 1 && v <= 2147483647.0;
    case VIKT_FIT_LOSS: return v == 0 || v == 1 || v == 2;
    case VIKT_FIT_SHUFFLE:
    case VIKT_FIT_DROP_LAST:
    case VIKT_FIT_RESTORE_BEST: return v == 0 || v == 1;
    case VIKT_FIT_PATIENCE:
    case VIKT_FIT_PRINT_EVERY: return whole(v) && v >= 0 && v <= 2147483647.0;
    case VIKT_FIT_MIN_DELTA: return isfinite(v) && v >= 0;
    case VIKT_FIT_PROGRESS: return v == 0 || v == 1 || v == 2 || v == 3;
    default: return 0;
    }
}

int vikt_trainer_set(vikt_trainer *t, vikt_fit_param param, double value) {
    if (!t) return VIKT_ERR_NULL;
    if ((int)param < 0 || (int)param >= NSETTINGS)
        return vikt__fail(t->model, VIKT_ERR_ARG,
                          "vikt_trainer_set: parameter %d is read-only or unknown", (int)param);
    if (!setting_ok(param, value))
        return vikt__fail(t->model, VIKT_ERR_ARG, "vikt_trainer_set: %s = %g is out of range",
                          NAMES[param], value);
    t->values[param] = value;
    return VIKT_OK;
}

int vikt_trainer_get(const vikt_trainer *t, vikt_fit_param param, double *value) {
    if (!t || !value) return VIKT_ERR_NULL;
    if ((int)param < 0 || (int)param >= NPARAMS) return VIKT_ERR_ARG;
    *value = t->values[param];
    return VIKT_OK;
}

int vikt_trainer_set_output(vikt_trainer *t, vikt_write_fn writer, void *ud) {
    if (!t) return VIKT_ERR_NULL;
    t->writer = writer;
    t->writer_ud = ud;
    return VIKT_OK;
}

int vikt_trainer_set_callback(vikt_trainer *t, vikt_fit_callback_fn fn, void *ud) {
    if (!t) return VIKT_ERR_NULL;
    t->callback = fn;
    t->callback_ud = ud;
    return VIKT_OK;
}

int vikt_trainer_set_penalty(vikt_trainer *t, vikt_penalty_fn fn, void *ud) {
    if (!t) return VIKT_ERR_NULL;
    t->penalty = fn;
    t->penalty_ud = ud;
    return VIKT_OK;
}

/* The loss a step minimizes: the data loss plus the caller's penalty. */
static vikt_tensor *objective(vikt_trainer *t, vikt_tensor *loss) {
    if (!loss || !t->penalty) return loss;
    vikt_model *m = t->model;
    vikt_tensor *p = t->penalty(m, t->penalty_ud);
    if (!p && !m->errcode)
        vikt__fail(m, VIKT_ERR_STATE, "vikt_trainer: the penalty function returned NULL "
                                      "without recording an error");
    return p ? vikt_add(m, loss, p) : NULL;
}

int vikt_trainer_set_log(vikt_trainer *t, const char *path) {
    if (!t) return VIKT_ERR_NULL;
    char *copy = NULL;
    size_t size = 0;
    if (path) {
        size = strlen(path) + 1;
        copy = vikt__alloc(t->model, size);
        if (!copy) return vikt__fail(t->model, VIKT_ERR_NOMEM, "vikt_trainer_set_log: out of memory");
        memcpy(copy, path, size);
    }
    vikt__free(t->model, t->log_path, t->log_path_size);
    t->log_path = copy;
    t->log_path_size = size;
    return VIKT_OK;
}

/* ------------------------------------------------------------- one batch */

static int loss_kind(const vikt_trainer *t) { return (int)t->values[VIKT_FIT_LOSS]; }
static int64_t batch_size(const vikt_trainer *t) { return (int64_t)t->values[VIKT_FIT_BATCH_SIZE]; }

/* The dataset fits the trainer: same model, the targets its loss needs. */
static int check_dataset(vikt_trainer *t, const char *op, const char *what, const vikt_dataset *ds) {
    if (ds->model != t->model)
        return vikt__fail(t->model, VIKT_ERR_ARG, "%s: the %s set belongs to another model", op, what);
    int ce = loss_kind(t) == VIKT_LOSS_CROSS_ENTROPY;
    if (ce ? !ds->samples->labels : !ds->samples->targets)
        return vikt__fail(t->model, VIKT_ERR_ARG, "%s: the %s set has no %s, which %s needs", op,
                          what, ce ? "class labels" : "float targets",
                          ce ? "cross-entropy" : "this loss");
    return VIKT_OK;
}

/* Room for one batch of labels; allocates only when the batch size grew. */
static int reserve_labels(vikt_trainer *t, const char *op) {
    int64_t need = batch_size(t);
    if (loss_kind(t) != VIKT_LOSS_CROSS_ENTROPY || need <= t->labels_cap) return VIKT_OK;
    int32_t *p = vikt__alloc(t->model, (size_t)need * sizeof *p);
    if (!p) return vikt__fail(t->model, VIKT_ERR_NOMEM, "%s: out of memory for %lld labels", op,
                              (long long)need);
    vikt__free(t->model, t->labels, (size_t)t->labels_cap * sizeof *t->labels);
    t->labels = p;
    t->labels_cap = need;
    return VIKT_OK;
}

/* Correct predictions of a batch for the accuracy, and how many were
 * judged (rows for cross-entropy, elements for BCE, none for MSE). */
static void count_correct(const vikt_trainer *t, int64_t count, const vikt_tensor *pred,
                          const vikt_tensor *target, double *correct, double *judged) {
    const float *z = pred->data;
    if (loss_kind(t) == VIKT_LOSS_CROSS_ENTROPY) {
        int64_t classes = pred->numel / count;
        for (int64_t i = 0; i < count; i++) {
            int64_t best = 0;
            for (int64_t c = 1; c < classes; c++)
                if (z[i * classes + c] > z[i * classes + best]) best = c;
            *correct += best == t->labels[i];
        }
        *judged += (double)count;
    } else if (loss_kind(t) == VIKT_LOSS_BCE_WITH_LOGITS) {
        for (int64_t i = 0; i < pred->numel; i++)
            *correct += (z[i] > 0) == (target->data[i] >= 0.5f);
        *judged += (double)pred->numel;
    }
}

/* Forward and loss of positions [start, start + count) in a fresh step.
 * Returns the loss tensor, or NULL with the error on the model. */
static vikt_tensor *batch_loss(vikt_trainer *t, const vikt_dataset *ds, int64_t start,
                               int64_t count, double *correct, double *judged) {
    vikt_model *m = t->model;
    vikt_step_begin(m);
    vikt_tensor *x = vikt_dataset_input(ds, start, count);
    if (!x) return NULL;
    vikt_tensor *pred = t->forward(m, x, t->forward_ud);
    if (!pred) {
        if (!m->errcode)
            vikt__fail(m, VIKT_ERR_STATE, "vikt_trainer: the forward function returned NULL "
                                          "without recording an error");
        return NULL;
    }
    vikt_tensor *target = NULL, *loss;
    if (loss_kind(t) == VIKT_LOSS_CROSS_ENTROPY) {
        if (vikt_dataset_copy_batch(ds, start, count, NULL, t->labels, NULL)) return NULL;
        loss = vikt_cross_entropy_loss(m, pred, t->labels);
    } else {
        target = vikt_dataset_target_input(ds, start, count);
        loss = loss_kind(t) == VIKT_LOSS_MSE ? vikt_mse_loss(m, pred, target)
                                             : vikt_bce_with_logits_loss(m, pred, target);
    }
    if (!loss) return NULL;
    count_correct(t, count, pred, target, correct, judged);
    return loss;
}

/* ------------------------------------------------------------ evaluation */

static int evaluate(vikt_trainer *t, const vikt_dataset *ds, double *loss, double *accuracy) {
    vikt_model *m = t->model;
    int grad = m->grad_enabled, training = m->training;
    m->grad_enabled = 0;
    m->training = 0;
    double sum = 0, correct = 0, judged = 0;
    int64_t b = batch_size(t);
    int err = VIKT_OK;
    for (int64_t start = 0; start < ds->n && !err; start += b) {
        int64_t count = ds->n - start < b ? ds->n - start : b;
        vikt_tensor *l = batch_loss(t, ds, start, count, &correct, &judged);
        if (!l)
            err = m->errcode ? m->errcode : VIKT_ERR_STATE;
        else
            sum += (double)l->data[0] * (double)count;
    }
    m->grad_enabled = grad;
    m->training = training;
    *loss = sum / (double)ds->n;
    *accuracy = judged > 0 ? correct / judged : NAN;
    return err;
}

int vikt_trainer_evaluate(vikt_trainer *t, const vikt_dataset *ds, double *loss,
                          double *accuracy) {
    static const char op[] = "vikt_trainer_evaluate";
    if (!t || !ds) return VIKT_ERR_NULL;
    vikt_model *m = t->model;
    if (m->errcode)
        return vikt__fail(m, VIKT_ERR_STATE, "%s: the model holds an error", op);
    int err = check_dataset(t, op, "evaluation", ds);
    if (!err) err = reserve_labels(t, op);
    double l = NAN, a = NAN;
    if (!err) err = evaluate(t, ds, &l, &a);
    if (loss) *loss = err ? NAN : l;
    if (accuracy) *accuracy = err ? NAN : a;
    return err;
}

/* -------------------------------------------------------------- progress */

static void emit(vikt_trainer *t, const char *text) {
    size_t len = strlen(text);
    if (t->writer) {
        t->writer(t->writer_ud, text, len);
    } else {
        fwrite(text, 1, len, stderr);
        fflush(stderr);
    }
}

static int progress_mode(const vikt_trainer *t) { return (int)t->values[VIKT_FIT_PROGRESS]; }

static void format_duration(double seconds, char *buf, size_t size) {
    long s = seconds > 0 && seconds < 1e9 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

static void step_line(vikt_trainer *t, double now) {
    const double *v = t->values;
    double elapsed = now - t->epoch_start;
    double speed = elapsed > 0 ? (double)t->epoch_samples / elapsed : 0;
    double per_step = v[VIKT_FIT_STEP] > 0 ? elapsed / v[VIKT_FIT_STEP] : 0;
    char eta[32], line[PROGRESS_LINE_MAX];
    format_duration(per_step * (v[VIKT_FIT_STEPS_PER_EPOCH] - v[VIKT_FIT_STEP]), eta, sizeof eta);
    snprintf(line, sizeof line, "%sepoch %.0f/%.0f  step %.0f/%.0f  loss %.4f  %.0f samples/s  ETA %s%s",
             t->redraw ? "\r" : "", v[VIKT_FIT_EPOCH], v[VIKT_FIT_EPOCHS], v[VIKT_FIT_STEP],
             v[VIKT_FIT_STEPS_PER_EPOCH], v[VIKT_FIT_TRAIN_LOSS], speed, eta,
             t->redraw ? "\033[K" : "\n");
    emit(t, line);
}

static void progress_step(vikt_trainer *t) {
    int mode = progress_mode(t);
    if (mode == VIKT_PROGRESS_OFF) return;
    double now = now_seconds();
    if (t->redraw) {
        int last = t->values[VIKT_FIT_STEP] == t->values[VIKT_FIT_STEPS_PER_EPOCH];
        if (!last && now - t->last_draw < REDRAW_SECONDS) return;
        t->last_draw = now;
        step_line(t, now);
    } else {
        double every = t->values[VIKT_FIT_PRINT_EVERY];
        if (every > 0 && fmod(t->values[VIKT_FIT_STEP], every) == 0) step_line(t, now);
    }
}

/* "  name 0.1234" for a defined value, nothing for NaN. */
static void append_metric(vikt__text *o, const char *name, double v) {
    if (!isnan(v)) vikt__emit(o, "  %s %.4f", name, v);
}

static void progress_epoch(vikt_trainer *t) {
    if (progress_mode(t) == VIKT_PROGRESS_OFF) return;
    const double *v = t->values;
    char line[PROGRESS_LINE_MAX];
    vikt__text o = {line, sizeof line, 0};
    vikt__emit(&o, "%sepoch %.0f/%.0f", t->redraw ? "\r" : "", v[VIKT_FIT_EPOCH], v[VIKT_FIT_EPOCHS]);
    append_metric(&o, "loss", v[VIKT_FIT_TRAIN_LOSS]);
    append_metric(&o, "accuracy", v[VIKT_FIT_TRAIN_ACCURACY]);
    append_metric(&o, "val_loss", v[VIKT_FIT_VAL_LOSS]);
    append_metric(&o, "val_accuracy", v[VIKT_FIT_VAL_ACCURACY]);
    vikt__emit(&o, "  %.1fs%s\n", v[VIKT_FIT_EPOCH_SECONDS], t->redraw ? "\033[K" : "");
    emit(t, line);
}

static void progress_stop(vikt_trainer *t, int restored) {
    if (progress_mode(t) == VIKT_PROGRESS_OFF) return;
    const double *v = t->values;
    char line[PROGRESS_LINE_MAX];
    snprintf(line, sizeof line,
             "early stopping: val_loss did not improve for %.0f epochs; best epoch %.0f "
             "(val_loss %.4f)%s\n",
             v[VIKT_FIT_PATIENCE], v[VIKT_FIT_BEST_EPOCH], v[VIKT_FIT_BEST_VAL_LOSS],
             restored ? ", parameters restored" : "");
    emit(t, line);
}

/* ---------------------------------------------------------------- logging */

static int log_open(vikt_trainer *t, FILE **log) {
    *log = NULL;
    if (!t->log_path) return VIKT_OK;
    *log = fopen(t->log_path, "w");
    if (!*log || fputs("epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n", *log) < 0) {
        if (*log) fclose(*log);
        *log = NULL;
        return vikt__fail(t->model, VIKT_ERR_IO, "vikt_trainer_fit: %s: cannot write the log",
                          t->log_path);
    }
    return VIKT_OK;
}

static void log_field(FILE *log, double v) {
    if (!isnan(v)) fprintf(log, "%.6g", v);
    fputc(',', log);
}

static int log_epoch(vikt_trainer *t, FILE *log) {
    if (!log) return VIKT_OK;
    const double *v = t->values;
    fprintf(log, "%.0f,", v[VIKT_FIT_EPOCH]);
    log_field(log, v[VIKT_FIT_TRAIN_LOSS]);
    log_field(log, v[VIKT_FIT_TRAIN_ACCURACY]);
    log_field(log, v[VIKT_FIT_VAL_LOSS]);
    log_field(log, v[VIKT_FIT_VAL_ACCURACY]);
    fprintf(log, "%.3f\n", v[VIKT_FIT_EPOCH_SECONDS]);
    if (fflush(log) != 0 || ferror(log))
        return vikt__fail(t->model, VIKT_ERR_IO, "vikt_trainer_fit: %s: writing the log failed",
                          t->log_path);
    return VIKT_OK;
}

/* ------------------------------------------------------- best parameters */

static int64_t values_in_model(const vikt_model *m) {
    int64_t n = 0;
    for (int64_t i = 0; i < m->nparams; i++) n += m->params[i]->numel;
    for (int64_t i = 0; i < m->nbuffers; i++) n += m->buffers[i]->numel;
    return n;
}

/* Room for a copy of every parameter and buffer; called after the first
 * step, when define-by-run layers have made their parameters. */
static int reserve_best(vikt_trainer *t) {
    int64_t need = values_in_model(t->model);
    if (need <= t->best_cap) return VIKT_OK;
    float *p = vikt__alloc(t->model, (size_t)need * sizeof *p);
    if (!p)
        return vikt__fail(t->model, VIKT_ERR_NOMEM,
                          "vikt_trainer_fit: out of memory for a copy of %lld values",
                          (long long)need);
    vikt__free(t->model, t->best, (size_t)t->best_cap * sizeof *t->best);
    t->best = p;
    t->best_cap = need;
    return VIKT_OK;
}

/* Copy the model's values into best (save) or back (restore). */
static void copy_values(vikt_trainer *t, int save) {
    vikt_model *m = t->model;
    float *at = t->best;
    for (int pass = 0; pass < 2; pass++) {
        int64_t n = pass ? m->nbuffers : m->nparams;
        for (int64_t i = 0; i < n; i++) {
            vikt_tensor *x = pass ? m->buffers[i] : m->params[i];
            size_t bytes = (size_t)x->numel * sizeof(float);
            if (save)
                memcpy(at, x->data, bytes);
            else
                memcpy(x->data, at, bytes);
            at += x->numel;
        }
    }
    if (save) t->best_len = at - t->best;
}

/* -------------------------------------------------------------------- fit */

typedef struct fit_run {
    vikt_dataset *train;
    const vikt_dataset *val;
    FILE *log;
    int early; /* early stopping is on */
    int since_best;
} fit_run;

static int check_fit(vikt_trainer *t, vikt_dataset *train, const vikt_dataset *val) {
    static const char op[] = "vikt_trainer_fit";
    vikt_model *m = t->model;
    if (m->errcode) return vikt__fail(m, VIKT_ERR_STATE, "%s: the model holds an error", op);
    if (!t->opt)
        return vikt__fail(m, VIKT_ERR_STATE, "%s: the trainer has no optimizer (evaluation only)", op);
    int err = check_dataset(t, op, "training", train);
    if (!err && val) err = check_dataset(t, op, "validation", val);
    if (!err && t->values[VIKT_FIT_DROP_LAST] == 1 && train->n < batch_size(t))
        err = vikt__fail(m, VIKT_ERR_ARG,
                         "%s: drop-last with %lld training samples leaves no batch of %lld", op,
                         (long long)train->n, (long long)batch_size(t));
    return err;
}

static void start_fit(vikt_trainer *t, const fit_run *run) {
    double *v = t->values;
    int64_t b = batch_size(t), n = run->train->n;
    v[VIKT_FIT_STEPS_PER_EPOCH] = (double)(v[VIKT_FIT_DROP_LAST] == 1 ? n / b : (n + b - 1) / b);
    v[VIKT_FIT_EPOCH] = v[VIKT_FIT_STEP] = v[VIKT_FIT_GLOBAL_STEP] = 0;
    v[VIKT_FIT_BATCH_LOSS] = v[VIKT_FIT_TRAIN_LOSS] = v[VIKT_FIT_TRAIN_ACCURACY] = NAN;
    v[VIKT_FIT_VAL_LOSS] = v[VIKT_FIT_VAL_ACCURACY] = v[VIKT_FIT_BEST_VAL_LOSS] = NAN;
    v[VIKT_FIT_BEST_EPOCH] = v[VIKT_FIT_STOPPED] = v[VIKT_FIT_EPOCH_SECONDS] = 0;
    t->best_len = 0;
    int mode = progress_mode(t);
    t->redraw = mode == VIKT_PROGRESS_REDRAW ||
                (mode == VIKT_PROGRESS_AUTO && !t->writer && isatty(fileno(stderr)));
}

static int call_back(vikt_trainer *t, vikt_fit_event event) {
    if (!t->callback || !t->callback(t, event, t->callback_ud)) return 0;
    t->values[VIKT_FIT_STOPPED] = 2;
    return 1;
}

/* One optimizer step on batch `step` (0-based) of the epoch. */
static int train_step(vikt_trainer *t, fit_run *run, int64_t step) {
    vikt_model *m = t->model;
    double *v = t->values;
    int64_t b = batch_size(t), start = step * b;
    int64_t count = run->train->n - start < b ? run->train->n - start : b;
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *loss = batch_loss(t, run->train, start, count, &t->correct_sum, &t->accuracy_count);
    vikt_tensor *total = objective(t, loss);
    int err = total ? vikt_backward(m, total) : m->errcode ? m->errcode : VIKT_ERR_STATE;
    if (!err) err = vikt_optimizer_step(t->opt);
    if (!err && m->errcode) err = m->errcode;
    if (err) return err;
    /* After the first step every parameter exists: size the best copy now,
     * so later steps allocate nothing. */
    if (run->early && v[VIKT_FIT_GLOBAL_STEP] == 0 && v[VIKT_FIT_RESTORE_BEST] == 1 &&
        (err = reserve_best(t)))
        return err;
    t->epoch_samples += count;
    t->loss_sum += (double)loss->data[0] * (double)count;
    v[VIKT_FIT_STEP] = (double)(step + 1);
    v[VIKT_FIT_GLOBAL_STEP] += 1;
    v[VIKT_FIT_BATCH_LOSS] = loss->data[0];
    v[VIKT_FIT_TRAIN_LOSS] = t->loss_sum / (double)t->epoch_samples;
    v[VIKT_FIT_TRAIN_ACCURACY] = t->accuracy_count > 0 ? t->correct_sum / t->accuracy_count : NAN;
    v[VIKT_FIT_EPOCH_SECONDS] = now_seconds() - t->epoch_start;
    progress_step(t);
    return VIKT_OK;
}

/* Validation, early-stopping bookkeeping, progress and log after an epoch.
 * Sets *stop when the fit should end. */
static int end_epoch(vikt_trainer *t, fit_run *run, int *stop) {
    double *v = t->values;
    if (run->val) {
        double loss, acc;
        int err = evaluate(t, run->val, &loss, &acc);
        if (err) return err;
        v[VIKT_FIT_VAL_LOSS] = loss;
        v[VIKT_FIT_VAL_ACCURACY] = acc;
        if (v[VIKT_FIT_BEST_EPOCH] == 0 || loss < v[VIKT_FIT_BEST_VAL_LOSS] - v[VIKT_FIT_MIN_DELTA]) {
            v[VIKT_FIT_BEST_EPOCH] = v[VIKT_FIT_EPOCH];
            v[VIKT_FIT_BEST_VAL_LOSS] = loss;
            run->since_best = 0;
            if (run->early && v[VIKT_FIT_RESTORE_BEST] == 1) {
                int e = reserve_best(t);
                if (e) return e;
                copy_values(t, 1);
            }
        } else {
            run->since_best++;
        }
    }
    v[VIKT_FIT_EPOCH_SECONDS] = now_seconds() - t->epoch_start;
    progress_epoch(t);
    int err = log_epoch(t, run->log);
    if (err) return err;
    if (call_back(t, VIKT_FIT_EPOCH_END)) *stop = 1;
    if (!*stop && run->early && run->since_best >= (int)v[VIKT_FIT_PATIENCE]) {
        v[VIKT_FIT_STOPPED] = 1;
        *stop = 1;
    }
    return VIKT_OK;
}

static int run_epochs(vikt_trainer *t, fit_run *run) {
    double *v = t->values;
    int stop = 0;
    for (int64_t epoch = 1; epoch <= (int64_t)v[VIKT_FIT_EPOCHS] && !stop; epoch++) {
        v[VIKT_FIT_EPOCH] = (double)epoch;
        v[VIKT_FIT_STEP] = 0;
        t->epoch_start = t->last_draw = now_seconds();
        t->epoch_samples = 0;
        t->loss_sum = t->correct_sum = t->accuracy_count = 0;
        if (v[VIKT_FIT_SHUFFLE] == 1) vikt_dataset_shuffle(run->train);
        int64_t steps = (int64_t)v[VIKT_FIT_STEPS_PER_EPOCH];
        for (int64_t s = 0; s < steps; s++) {
            int err = train_step(t, run, s);
            if (err) return err;
            if (call_back(t, VIKT_FIT_STEP_END)) return VIKT_OK;
        }
        int err = end_epoch(t, run, &stop);
        if (err) return err;
    }
    return VIKT_OK;
}

int vikt_trainer_fit(vikt_trainer *t, vikt_dataset *train, const vikt_dataset *val) {
    if (!t || !train) return VIKT_ERR_NULL;
    vikt_model *m = t->model;
    int err = check_fit(t, train, val);
    if (!err) err = reserve_labels(t, "vikt_trainer_fit");
    fit_run run = {train, val, NULL, val && t->values[VIKT_FIT_PATIENCE] > 0, 0};
    if (!err) err = log_open(t, &run.log);
    if (err) return err;
    int grad = m->grad_enabled, training = m->training;
    m->grad_enabled = 1;
    m->training = 1;
    start_fit(t, &run);
    err = run_epochs(t, &run);
    if (err && t->redraw && progress_mode(t) != VIKT_PROGRESS_OFF) emit(t, "\n");
    if (!err && run.early && t->values[VIKT_FIT_RESTORE_BEST] == 1 && t->best_len > 0 &&
        t->best_len == values_in_model(m))
        copy_values(t, 0);
    if (!err && t->values[VIKT_FIT_STOPPED] == 1)
        progress_stop(t, t->values[VIKT_FIT_RESTORE_BEST] == 1 && t->best_len > 0);
    m->grad_enabled = grad;
    m->training = training;
    if (run.log && fclose(run.log) != 0 && !err)
        err = vikt__fail(m, VIKT_ERR_IO, "vikt_trainer_fit: %s: closing the log failed",
                         t->log_path);
    return err;
}
