/* The trainer: learning, metrics, early stopping with restore, callbacks,
 * progress text, the CSV log, evaluation mode, zero allocations in steady
 * state, out-of-memory at the start, bad arguments. */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 64, D = 2, CLASSES = 2, NV = 32 };

/* Points in [-1, 1]² labelled by the sign of x0 + x1 (or its opposite). */
typedef struct problem {
    float x[N * D], xv[NV * D];
    int32_t y[N], yv[NV];
    float t[N], tv[NV]; /* the same labels as float targets */
} problem;

static void make_problem(problem *p, int flip_val) {
    vt_fill(p->x, N * D, 11, -1, 1);
    vt_fill(p->xv, NV * D, 12, -1, 1);
    for (int i = 0; i < N; i++) {
        p->y[i] = p->x[2 * i] + p->x[2 * i + 1] > 0;
        p->t[i] = (float)p->y[i];
    }
    for (int i = 0; i < NV; i++) {
        p->yv[i] = (p->xv[2 * i] + p->xv[2 * i + 1] > 0) != flip_val;
        p->tv[i] = (float)p->yv[i];
    }
}

/* The model: one dense layer to `width` outputs (ud points at width). */
static vikt_tensor *linear(vikt_model *m, vikt_tensor *x, void *ud) {
    return vikt_dense(m, "fc", x, *(const int64_t *)ud);
}

static int64_t two = CLASSES, one = 1;

typedef struct rig {
    problem p;
    vikt_model *m;
    vikt_optimizer *opt;
    vikt_trainer *t;
    vikt_dataset *train, *val;
} rig;

static void rig_open(rig *r, uint64_t seed, int flip_val, vikt_loss_kind loss) {
    memset(r, 0, sizeof *r);
    make_problem(&r->p, flip_val);
    r->m = vt_model(seed);
    assert_int_equal(vikt_adam_create(r->m, 0.05f, &r->opt), VIKT_OK);
    int ce = loss == VIKT_LOSS_CROSS_ENTROPY;
    assert_int_equal(vikt_trainer_create(r->m, r->opt, linear, ce ? &two : &one, &r->t), VIKT_OK);
    assert_int_equal(vikt_trainer_set(r->t, VIKT_FIT_LOSS, loss), VIKT_OK);
    assert_int_equal(vikt_trainer_set(r->t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF), VIKT_OK);
    assert_int_equal(vikt_trainer_set(r->t, VIKT_FIT_BATCH_SIZE, 10), VIKT_OK);
    const int64_t d[] = {D};
    assert_int_equal(vikt_dataset_create(r->m, N, 1, d, r->p.x, ce ? r->p.y : NULL,
                                         ce ? NULL : r->p.t, ce ? 0 : 1, &r->train), VIKT_OK);
    assert_int_equal(vikt_dataset_create(r->m, NV, 1, d, r->p.xv, ce ? r->p.yv : NULL,
                                         ce ? NULL : r->p.tv, ce ? 0 : 1, &r->val), VIKT_OK);
}

static void rig_close(rig *r) {
    vikt_trainer_destroy(r->t);
    vikt_dataset_destroy(r->train);
    vikt_dataset_destroy(r->val);
    vikt_optimizer_destroy(r->opt);
    vikt_model_destroy(r->m);
}

static double get(const vikt_trainer *t, vikt_fit_param p) {
    double v;
    assert_int_equal(vikt_trainer_get(t, p, &v), VIKT_OK);
    return v;
}

/* ------------------------------------------------------------ learning */

static void fit_learns_each_loss(void **state) {
    (void)state;
    const vikt_loss_kind kinds[] = {VIKT_LOSS_CROSS_ENTROPY, VIKT_LOSS_BCE_WITH_LOGITS, VIKT_LOSS_MSE};
    for (int k = 0; k < 3; k++) {
        rig r;
        rig_open(&r, 3, 0, kinds[k]);
        double loss0, acc0, loss1, acc1;
        assert_int_equal(vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 1), VIKT_OK);
        /* One epoch creates the parameters; measure, then train more. */
        assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
        assert_int_equal(vikt_trainer_evaluate(r.t, r.val, &loss0, &acc0), VIKT_OK);
        assert_true(get(r.t, VIKT_FIT_VAL_LOSS) == loss0);
        assert_int_equal(vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 30), VIKT_OK);
        assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
        assert_int_equal(vikt_trainer_evaluate(r.t, r.val, &loss1, &acc1), VIKT_OK);
        assert_true(loss1 < loss0 * 0.8);
        assert_true(get(r.t, VIKT_FIT_TRAIN_LOSS) < loss0);
        assert_true(get(r.t, VIKT_FIT_EPOCH) == 30);
        assert_true(get(r.t, VIKT_FIT_STEPS_PER_EPOCH) == 7); /* 64 in batches of 10 */
        assert_true(get(r.t, VIKT_FIT_GLOBAL_STEP) == 210);
        assert_true(get(r.t, VIKT_FIT_STOPPED) == 0);
        if (kinds[k] == VIKT_LOSS_MSE) {
            assert_true(isnan(acc1) && isnan(get(r.t, VIKT_FIT_TRAIN_ACCURACY)));
        } else {
            assert_true(acc1 >= 0.9);
            assert_true(get(r.t, VIKT_FIT_TRAIN_ACCURACY) >= 0.9);
        }
        assert_int_equal(vikt_model_errcode(r.m), VIKT_OK);
        rig_close(&r);
    }
}

/* Accuracy and loss of evaluate match a computation by hand. */
static void evaluate_matches_a_hand_computation(void **state) {
    (void)state;
    rig r;
    rig_open(&r, 4, 0, VIKT_LOSS_CROSS_ENTROPY);
    assert_int_equal(vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 2), VIKT_OK);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_OK);
    assert_true(isnan(get(r.t, VIKT_FIT_VAL_LOSS)));
    double loss, acc;
    assert_int_equal(vikt_trainer_evaluate(r.t, r.val, &loss, &acc), VIKT_OK);
    vikt_step_begin(r.m);
    vikt_tensor *z = linear(r.m, vikt_input(r.m, 2, (int64_t[]){NV, D}, r.p.xv), &two);
    vikt_tensor *l = vikt_cross_entropy_loss(r.m, z, r.p.yv);
    assert_non_null(l);
    int correct = 0;
    for (int i = 0; i < NV; i++)
        correct += (vikt_tensor_data(z)[2 * i + 1] > vikt_tensor_data(z)[2 * i]) == r.p.yv[i];
    assert_float_equal(loss, vikt_tensor_data(l)[0], 1e-5);
    assert_float_equal(acc, (double)correct / NV, 1e-12);
    rig_close(&r);
}

/* Evaluation records no tape, turns dropout off, and changes nothing. */
static int eval_checked;
static vikt_tensor *checking_forward(vikt_model *m, vikt_tensor *x, void *ud) {
    (void)ud;
    if (!vikt_grad_enabled(m)) {
        assert_int_equal(vikt_training(m), 0);
        eval_checked++;
    } else {
        assert_int_equal(vikt_training(m), 1);
    }
    vikt_tensor *y = vikt_dense(m, "fc", x, CLASSES);
    /* With the tape off an op's result requires no gradient. */
    if (!vikt_grad_enabled(m) && y) assert_int_equal(vikt_tensor_requires_grad(y), 0);
    return y;
}

static void evaluate_changes_nothing(void **state) {
    (void)state;
    rig r;
    rig_open(&r, 5, 0, VIKT_LOSS_CROSS_ENTROPY);
    vikt_trainer_destroy(r.t);
    assert_int_equal(vikt_trainer_create(r.m, r.opt, checking_forward, NULL, &r.t), VIKT_OK);
    vikt_trainer_set(r.t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 2);
    eval_checked = 0;
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(eval_checked, 2); /* two epochs of 32 samples in one batch of 32 */
    vikt_set_training(r.m, 1);
    vikt_tensor *w = vikt_param_find(r.m, "fc.weight");
    assert_non_null(w);
    for (int i = 0; i < 4; i++) vikt_tensor_grad(w)[i] = (float)i + 0.5f;
    float before[4], grad_before[4];
    memcpy(before, vikt_tensor_data(w), sizeof before);
    memcpy(grad_before, vikt_tensor_grad(w), sizeof grad_before);
    eval_checked = 0;
    vikt_trainer_set(r.t, VIKT_FIT_BATCH_SIZE, 7);
    double loss, acc;
    assert_int_equal(vikt_trainer_evaluate(r.t, r.train, &loss, &acc), VIKT_OK);
    assert_int_equal(eval_checked, 10); /* ceil(64 / 7) */
    assert_memory_equal(vikt_tensor_data(w), before, sizeof before);
    assert_memory_equal(vikt_tensor_grad(w), grad_before, sizeof grad_before);
    assert_int_equal(vikt_grad_enabled(r.m), 1);
    assert_int_equal(vikt_training(r.m), 1);
    /* Modes are put back, whatever they were. */
    vikt_set_grad_enabled(r.m, 0);
    vikt_set_training(r.m, 0);
    assert_int_equal(vikt_trainer_evaluate(r.t, r.val, NULL, NULL), VIKT_OK);
    assert_int_equal(vikt_grad_enabled(r.m), 0);
    assert_int_equal(vikt_training(r.m), 0);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 1);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_OK);
    assert_int_equal(vikt_grad_enabled(r.m), 0);
    assert_int_equal(vikt_training(r.m), 0);
    rig_close(&r);
}

static void same_seed_same_parameters(void **state) {
    (void)state;
    float w[2][4];
    for (int run = 0; run < 2; run++) {
        rig r;
        rig_open(&r, 9, 0, VIKT_LOSS_CROSS_ENTROPY);
        vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 3);
        assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
        memcpy(w[run], vikt_tensor_data(vikt_param_find(r.m, "fc.weight")), sizeof w[run]);
        rig_close(&r);
    }
    assert_memory_equal(w[0], w[1], sizeof w[0]);
}

static void drop_last_and_no_shuffle(void **state) {
    (void)state;
    rig r;
    rig_open(&r, 6, 0, VIKT_LOSS_CROSS_ENTROPY);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 1);
    vikt_trainer_set(r.t, VIKT_FIT_DROP_LAST, 1);
    vikt_trainer_set(r.t, VIKT_FIT_SHUFFLE, 0);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_OK);
    assert_true(get(r.t, VIKT_FIT_STEPS_PER_EPOCH) == 6);
    int32_t ids[N];
    assert_int_equal(vikt_dataset_copy_batch(r.train, 0, N, NULL, ids, NULL), VIKT_OK);
    assert_memory_equal(ids, r.p.y, sizeof ids); /* order untouched */
    vikt_trainer_set(r.t, VIKT_FIT_BATCH_SIZE, N + 1);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_ERR_ARG);
    vt_expect_error(r.m, VIKT_ERR_ARG, "drop-last with 64 training samples leaves no batch of 65",
                    NULL);
    rig_close(&r);
}

/* ------------------------------------------------------- early stopping */

typedef struct history {
    int steps, epochs;
    int stop_at_step, stop_at_epoch;
    double val_loss[64];
    float snapshot[64][4 + 2]; /* fc.weight and fc.bias at each epoch's end */
    int64_t calls_after_first_step;
} history;

static int record(vikt_trainer *t, vikt_fit_event event, void *ud) {
    history *h = ud;
    double v;
    if (event == VIKT_FIT_STEP_END) {
        h->steps++;
        assert_int_equal(vikt_trainer_get(t, VIKT_FIT_GLOBAL_STEP, &v), VIKT_OK);
        assert_true(v == h->steps);
        return h->steps == h->stop_at_step;
    }
    int e = h->epochs++;
    vikt_trainer_get(t, VIKT_FIT_EPOCH, &v);
    assert_true(v == h->epochs);
    vikt_trainer_get(t, VIKT_FIT_VAL_LOSS, &h->val_loss[e]);
    return h->epochs == h->stop_at_epoch;
}

typedef struct snap_ctx {
    history h;
    vikt_model *m;
} snap_ctx;

static int record_and_snapshot(vikt_trainer *t, vikt_fit_event event, void *ud) {
    snap_ctx *c = ud;
    if (event == VIKT_FIT_EPOCH_END) {
        memcpy(c->h.snapshot[c->h.epochs], vikt_tensor_data(vikt_param_find(c->m, "fc.weight")),
               4 * sizeof(float));
        memcpy(c->h.snapshot[c->h.epochs] + 4, vikt_tensor_data(vikt_param_find(c->m, "fc.bias")),
               2 * sizeof(float));
    }
    return record(t, event, &c->h);
}

/* Validation labels are the opposite of the training labels: every epoch
 * that fits the training set better makes validation worse, so the best
 * epoch is the first and patience 2 stops after the third. */
static void early_stopping_restores_the_best_epoch(void **state) {
    (void)state;
    for (int restore = 1; restore >= 0; restore--) {
        rig r;
        rig_open(&r, 7, 1, VIKT_LOSS_CROSS_ENTROPY);
        static snap_ctx c;
        memset(&c, 0, sizeof c);
        c.m = r.m;
        vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 20);
        vikt_trainer_set(r.t, VIKT_FIT_PATIENCE, 2);
        vikt_trainer_set(r.t, VIKT_FIT_RESTORE_BEST, restore);
        vikt_trainer_set_callback(r.t, record_and_snapshot, &c);
        assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
        assert_int_equal(c.h.epochs, 3);
        assert_true(c.h.val_loss[0] < c.h.val_loss[1] && c.h.val_loss[1] < c.h.val_loss[2]);
        assert_true(get(r.t, VIKT_FIT_STOPPED) == 1);
        assert_true(get(r.t, VIKT_FIT_EPOCH) == 3);
        assert_true(get(r.t, VIKT_FIT_BEST_EPOCH) == 1);
        assert_true(get(r.t, VIKT_FIT_BEST_VAL_LOSS) == c.h.val_loss[0]);
        float now[6];
        memcpy(now, vikt_tensor_data(vikt_param_find(r.m, "fc.weight")), 4 * sizeof(float));
        memcpy(now + 4, vikt_tensor_data(vikt_param_find(r.m, "fc.bias")), 2 * sizeof(float));
        /* Restored: exactly epoch 1's values; otherwise the last epoch's. */
        assert_memory_equal(now, c.h.snapshot[restore ? 0 : 2], sizeof now);
        assert_memory_not_equal(c.h.snapshot[0], c.h.snapshot[2], sizeof now);
        rig_close(&r);
    }
}

/* min_delta: a validation set that does improve, but never by 100. */
static void min_delta_counts_small_gains_as_none(void **state) {
    (void)state;
    rig r;
    rig_open(&r, 8, 0, VIKT_LOSS_CROSS_ENTROPY);
    static history h;
    memset(&h, 0, sizeof h);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 20);
    vikt_trainer_set(r.t, VIKT_FIT_PATIENCE, 3);
    vikt_trainer_set(r.t, VIKT_FIT_MIN_DELTA, 100);
    vikt_trainer_set_callback(r.t, record, &h);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(h.epochs, 4);
    assert_true(h.val_loss[3] < h.val_loss[0]);
    assert_true(get(r.t, VIKT_FIT_BEST_EPOCH) == 1);
    /* Without min_delta it trains on. */
    vikt_trainer_set(r.t, VIKT_FIT_MIN_DELTA, 0);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 6);
    memset(&h, 0, sizeof h);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(h.epochs, 6);
    assert_true(get(r.t, VIKT_FIT_STOPPED) == 0);
    rig_close(&r);
}

/* ------------------------------------------------------------ callbacks */

static void callbacks_count_and_stop(void **state) {
    (void)state;
    rig r;
    rig_open(&r, 10, 0, VIKT_LOSS_CROSS_ENTROPY);
    static history h;
    memset(&h, 0, sizeof h);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 4);
    vikt_trainer_set_callback(r.t, record, &h);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(h.steps, 4 * 7);
    assert_int_equal(h.epochs, 4);

    memset(&h, 0, sizeof h);
    h.stop_at_step = 9; /* epoch 2, step 2 */
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(h.steps, 9);
    assert_int_equal(h.epochs, 1);
    assert_true(get(r.t, VIKT_FIT_STOPPED) == 2);
    assert_true(get(r.t, VIKT_FIT_EPOCH) == 2 && get(r.t, VIKT_FIT_STEP) == 2);

    memset(&h, 0, sizeof h);
    h.stop_at_epoch = 2;
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(h.steps, 14);
    assert_int_equal(h.epochs, 2);
    assert_true(get(r.t, VIKT_FIT_STOPPED) == 2);

    vikt_trainer_set_callback(r.t, NULL, NULL);
    memset(&h, 0, sizeof h);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(h.steps, 0);
    rig_close(&r);
}

/* ------------------------------------------------------------- progress */

typedef struct capture {
    char text[8192];
    size_t len;
    int calls;
} capture;

static void capture_write(void *ud, const char *text, size_t len) {
    capture *c = ud;
    assert_int_equal(strlen(text), len);
    assert_true(c->len + len < sizeof c->text);
    memcpy(c->text + c->len, text, len + 1);
    c->len += len;
    c->calls++;
}

/* Empties `c` and sends the trainer's progress text into it in `mode`. */
static void capture_progress(vikt_trainer *t, capture *c, vikt_progress mode) {
    memset(c, 0, sizeof *c);
    vikt_trainer_set_output(t, capture_write, c);
    vikt_trainer_set(t, VIKT_FIT_PROGRESS, mode);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void progress_plain_lines(void **state) {
    (void)state;
    rig r;
    rig_open(&r, 12, 0, VIKT_LOSS_CROSS_ENTROPY);
    static capture c;
    capture_progress(r.t, &c, VIKT_PROGRESS_PLAIN);
    vikt_trainer_set(r.t, VIKT_FIT_PRINT_EVERY, 3);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 2);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    /* Steps 3 and 6 of 7 in each epoch, then the epoch line. */
    assert_int_equal(count_lines(c.text), 6);
    assert_null(strchr(c.text, '\r'));
    assert_null(strchr(c.text, '\033'));
    char *line = c.text;
    const char *want[] = {"epoch 1/2  step 3/7  loss ", "epoch 1/2  step 6/7  loss ",
                          "epoch 1/2  loss ", "epoch 2/2  step 3/7  loss ",
                          "epoch 2/2  step 6/7  loss ", "epoch 2/2  loss "};
    for (int i = 0; i < 6; i++) {
        char *end = strchr(line, '\n');
        *end = '\0';
        if (strncmp(line, want[i], strlen(want[i])) != 0)
            fail_msg("line %d: \"%s\" does not start with \"%s\"", i, line, want[i]);
        if (strstr(want[i], "step")) {
            float loss;
            char eta[16];
            double speed;
            assert_non_null(strstr(line, " samples/s  ETA "));
            assert_int_equal(sscanf(strstr(line, "loss "), "loss %f  %lf samples/s  ETA %15s",
                                    &loss, &speed, eta), 3);
            assert_true(loss > 0 && speed >= 0 && strchr(eta, ':'));
        } else {
            double l, a, vl, va, sec;
            int n = sscanf(line + strlen(want[i]) - 5,
                           "loss %lf  accuracy %lf  val_loss %lf  val_accuracy %lf  %lfs", &l, &a,
                           &vl, &va, &sec);
            assert_int_equal(n, 5);
            assert_true(line[strlen(line) - 1] == 's');
            if (i == 5) {
                assert_float_equal(vl, get(r.t, VIKT_FIT_VAL_LOSS), 1e-4);
                assert_float_equal(a, get(r.t, VIKT_FIT_TRAIN_ACCURACY), 1e-4);
            }
        }
        line = end + 1;
    }

    /* No validation set, MSE: only the defined fields. */
    rig_close(&r);
    rig_open(&r, 12, 0, VIKT_LOSS_MSE);
    capture_progress(r.t, &c, VIKT_PROGRESS_AUTO); /* a writer: plain */
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 1);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_OK);
    assert_int_equal(count_lines(c.text), 1);
    double l, sec;
    assert_int_equal(sscanf(c.text, "epoch 1/1  loss %lf  %lfs\n", &l, &sec), 2);
    assert_null(strstr(c.text, "accuracy"));

    /* Silenced: nothing at all. */
    memset(&c, 0, sizeof c);
    vikt_trainer_set(r.t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF);
    vikt_trainer_set(r.t, VIKT_FIT_PRINT_EVERY, 1);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(c.calls, 0);
    rig_close(&r);
}

static void progress_redraw_and_early_stop_line(void **state) {
    (void)state;
    rig r;
    rig_open(&r, 7, 1, VIKT_LOSS_CROSS_ENTROPY);
    static capture c;
    capture_progress(r.t, &c, VIKT_PROGRESS_REDRAW);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 20);
    vikt_trainer_set(r.t, VIKT_FIT_PATIENCE, 2);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    /* Three epoch lines and the stop line; step lines redraw in place. */
    assert_int_equal(count_lines(c.text), 4);
    assert_non_null(strstr(c.text, "\repoch 1/20  step 7/7  loss "));
    assert_non_null(strstr(c.text, "\033[K\repoch 1/20  loss "));
    assert_non_null(strstr(c.text, "early stopping: val_loss did not improve for 2 epochs; "
                                   "best epoch 1 (val_loss "));
    assert_non_null(strstr(c.text, "), parameters restored\n"));
    const char *last_epoch = strstr(c.text, "\repoch 3/20  loss ");
    assert_non_null(last_epoch);
    assert_non_null(strstr(last_epoch, "s\033[K\nearly stopping"));
    rig_close(&r);
}

/* ----------------------------------------------------------------- log */

static int epoch_values(vikt_trainer *t, vikt_fit_event event, void *ud) {
    if (event == VIKT_FIT_EPOCH_END) {
        double *rows = ud, e;
        vikt_trainer_get(t, VIKT_FIT_EPOCH, &e);
        double *row = rows + 4 * ((int)e - 1);
        vikt_trainer_get(t, VIKT_FIT_TRAIN_LOSS, &row[0]);
        vikt_trainer_get(t, VIKT_FIT_TRAIN_ACCURACY, &row[1]);
        vikt_trainer_get(t, VIKT_FIT_VAL_LOSS, &row[2]);
        vikt_trainer_get(t, VIKT_FIT_VAL_ACCURACY, &row[3]);
    }
    return 0;
}

static void read_file(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void csv_log_has_one_line_per_epoch(void **state) {
    (void)state;
    char dir[] = "/tmp/vikt_test_fit_XXXXXX", path[64], text[2048];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/log.csv", dir);
    rig r;
    rig_open(&r, 13, 0, VIKT_LOSS_CROSS_ENTROPY);
    double rows[3 * 4];
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 3);
    vikt_trainer_set_callback(r.t, epoch_values, rows);
    assert_int_equal(vikt_trainer_set_log(r.t, path), VIKT_OK);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    read_file(path, text, sizeof text);
    char *line = strtok(text, "\n");
    assert_string_equal(line, "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds");
    for (int e = 0; e < 3; e++) {
        line = strtok(NULL, "\n");
        assert_non_null(line);
        int epoch;
        double v[4], sec;
        assert_int_equal(sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf", &epoch, &v[0], &v[1], &v[2], &v[3],
                                &sec), 6);
        assert_int_equal(epoch, e + 1);
        for (int k = 0; k < 4; k++) assert_float_equal(v[k], rows[4 * e + k], 1e-5 * (1 + fabs(v[k])));
        assert_true(sec >= 0);
    }
    assert_null(strtok(NULL, "\n"));
    rig_close(&r);

    /* MSE without validation: the undefined fields are empty. */
    rig_open(&r, 13, 0, VIKT_LOSS_MSE);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 1);
    assert_int_equal(vikt_trainer_set_log(r.t, path), VIKT_OK);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_OK);
    read_file(path, text, sizeof text);
    double l, sec;
    assert_int_equal(sscanf(strchr(text, '\n') + 1, "1,%lf,,,,%lf\n", &l, &sec), 2);
    /* Logging off again, and an unwritable path. */
    assert_int_equal(vikt_trainer_set_log(r.t, NULL), VIKT_OK);
    unlink(path);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_OK);
    assert_int_equal(access(path, F_OK), -1);
    char bad[96];
    snprintf(bad, sizeof bad, "%s/no/such/dir/log.csv", dir);
    assert_int_equal(vikt_trainer_set_log(r.t, bad), VIKT_OK);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_ERR_IO);
    vt_expect_error(r.m, VIKT_ERR_IO, bad, "cannot write the log");
    rig_close(&r);
    assert_int_equal(rmdir(dir), 0);
}

/* With no writer, AUTO writes plain lines to stderr when it is a file. */
static void progress_on_stderr_when_not_a_terminal(void **state) {
    (void)state;
    char path[] = "/tmp/vikt_test_fit_stderr_XXXXXX", text[1024];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fd, 2) == 2);
    rig r;
    rig_open(&r, 12, 0, VIKT_LOSS_CROSS_ENTROPY);
    vikt_trainer_set(r.t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_AUTO);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 2);
    int err = vikt_trainer_fit(r.t, r.train, r.val);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    assert_int_equal(err, VIKT_OK);
    read_file(path, text, sizeof text);
    unlink(path);
    assert_int_equal(count_lines(text), 2);
    assert_null(strchr(text, '\r'));
    assert_true(strncmp(text, "epoch 1/2  loss ", 16) == 0);
    assert_non_null(strstr(text, "\nepoch 2/2  loss "));
    rig_close(&r);
}

/* ------------------------------------------------------------- memory */

static int no_allocations_after_first_step(vikt_trainer *t, vikt_fit_event event, void *ud) {
    history *h = ud;
    double step;
    vikt_trainer_get(t, VIKT_FIT_GLOBAL_STEP, &step);
    if (event == VIKT_FIT_STEP_END && step == 1) {
        h->calls_after_first_step = vt_stats.calls;
    } else if (vt_stats.calls != h->calls_after_first_step) {
        fail_msg("allocator called at global step %.0f (event %d): %lld calls after the first "
                 "step, %lld now", step, (int)event, (long long)h->calls_after_first_step,
                 (long long)vt_stats.calls);
    }
    if (event == VIKT_FIT_STEP_END) h->steps++;
    return 0;
}

/* A two-layer network with dropout, Adam, validation, early stopping with a
 * best copy, a log and progress text: after the first step nothing in the
 * fit calls the allocator, the partial last batch and evaluation included. */
static vikt_tensor *mlp(vikt_model *m, vikt_tensor *x, void *ud) {
    (void)ud;
    vikt_tensor *h = vikt_dropout(m, vikt_relu(m, vikt_dense(m, "fc1", x, 16)), 0.1f);
    return vikt_dense(m, "fc2", h, CLASSES);
}

static void silent_write(void *ud, const char *text, size_t len) {
    (void)ud;
    (void)text;
    (void)len;
}

static void steady_state_allocates_nothing(void **state) {
    (void)state;
    char dir[] = "/tmp/vikt_test_fit_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/log.csv", dir);
    rig r;
    rig_open(&r, 14, 0, VIKT_LOSS_CROSS_ENTROPY);
    vikt_trainer_destroy(r.t);
    assert_int_equal(vikt_trainer_create(r.m, r.opt, mlp, NULL, &r.t), VIKT_OK);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 5);
    vikt_trainer_set(r.t, VIKT_FIT_BATCH_SIZE, 10);
    vikt_trainer_set(r.t, VIKT_FIT_PATIENCE, 50);
    vikt_trainer_set(r.t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_PLAIN);
    vikt_trainer_set(r.t, VIKT_FIT_PRINT_EVERY, 1);
    vikt_trainer_set_output(r.t, silent_write, NULL);
    vikt_trainer_set_log(r.t, path);
    static history h;
    memset(&h, 0, sizeof h);
    vikt_trainer_set_callback(r.t, no_allocations_after_first_step, &h);
    int64_t before = vt_stats.calls;
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(h.steps, 5 * 7);
    assert_true(h.calls_after_first_step > before); /* the first step did allocate */
    assert_int_equal(vt_stats.calls, h.calls_after_first_step);
    /* A second fit of the same shapes allocates nothing at all. */
    before = vt_stats.calls;
    memset(&h, 0, sizeof h);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
    assert_int_equal(vt_stats.calls, before);
    rig_close(&r);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

/* Fail each allocation of a first fit in turn: the fit reports
 * out-of-memory, the model and trainer stay usable and nothing leaks. */
static void out_of_memory_at_the_start(void **state) {
    (void)state;
    int succeeded = 0;
    for (int64_t k = 1; k < 200 && !succeeded; k++) {
        vt_alloc_reset();
        rig r;
        rig_open(&r, 15, 0, VIKT_LOSS_CROSS_ENTROPY);
        vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 2);
        vikt_trainer_set(r.t, VIKT_FIT_PATIENCE, 1);
        vt_stats.fail_at = vt_stats.calls + k;
        int err = vikt_trainer_fit(r.t, r.train, r.val);
        vt_stats.fail_at = 0;
        if (err == VIKT_OK) {
            succeeded = 1;
        } else {
            assert_int_equal(err, VIKT_ERR_NOMEM);
            vt_expect_error(r.m, VIKT_ERR_NOMEM, NULL, NULL);
            assert_int_equal(vikt_grad_enabled(r.m), 1);
            /* A retry succeeds. */
            assert_int_equal(vikt_trainer_fit(r.t, r.train, r.val), VIKT_OK);
        }
        rig_close(&r);
        assert_int_equal(vt_stats.live, 0);
    }
    assert_true(succeeded);
    /* The trainer itself and the log path. */
    vt_alloc_reset();
    vikt_model *m = vt_model(1);
    vikt_trainer *t = (vikt_trainer *)&t;
    vt_stats.fail_at = vt_stats.calls + 1;
    assert_int_equal(vikt_trainer_create(m, NULL, linear, &two, &t), VIKT_ERR_NOMEM);
    assert_null(t);
    vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_trainer_create", NULL);
    assert_int_equal(vikt_trainer_create(m, NULL, linear, &two, &t), VIKT_OK);
    assert_int_equal(vikt_trainer_set_log(t, "a.csv"), VIKT_OK);
    vt_stats.fail_at = vt_stats.calls + 1;
    assert_int_equal(vikt_trainer_set_log(t, "b.csv"), VIKT_ERR_NOMEM);
    vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_trainer_set_log", NULL);
    vikt_trainer_destroy(t);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

/* ------------------------------------------------------- bad arguments */

static vikt_tensor *null_forward(vikt_model *m, vikt_tensor *x, void *ud) {
    (void)m, (void)x, (void)ud;
    return NULL;
}

static vikt_tensor *three_classes(vikt_model *m, vikt_tensor *x, void *ud) {
    (void)ud;
    return vikt_dense(m, "fc", x, 3);
}

static void bad_arguments(void **state) {
    (void)state;
    rig r;
    rig_open(&r, 16, 0, VIKT_LOSS_CROSS_ENTROPY);
    vikt_trainer *t;
    assert_int_equal(vikt_trainer_create(r.m, r.opt, linear, NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_create(NULL, r.opt, linear, NULL, &t), VIKT_ERR_NULL);
    assert_null(t);
    assert_int_equal(vikt_trainer_create(r.m, r.opt, NULL, NULL, &t), VIKT_ERR_NULL);
    vt_expect_error(r.m, VIKT_ERR_NULL, "forward", NULL);

    const struct {
        vikt_fit_param p;
        double v;
    } bad[] = {
        {VIKT_FIT_EPOCHS, 0},        {VIKT_FIT_EPOCHS, 1.5},     {VIKT_FIT_BATCH_SIZE, -1},
        {VIKT_FIT_BATCH_SIZE, NAN},  {VIKT_FIT_LOSS, 3},         {VIKT_FIT_SHUFFLE, 2},
        {VIKT_FIT_DROP_LAST, -1},    {VIKT_FIT_PATIENCE, -1},    {VIKT_FIT_MIN_DELTA, -0.1},
        {VIKT_FIT_MIN_DELTA, INFINITY}, {VIKT_FIT_RESTORE_BEST, 0.5}, {VIKT_FIT_PROGRESS, 4},
        {VIKT_FIT_PRINT_EVERY, -2},  {VIKT_FIT_EPOCH, 1},        {VIKT_FIT_STOPPED, 0},
        {(vikt_fit_param)99, 0},     {(vikt_fit_param)-1, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double before = 0;
        vikt_trainer_get(r.t, bad[i].p, &before);
        assert_int_equal(vikt_trainer_set(r.t, bad[i].p, bad[i].v), VIKT_ERR_ARG);
        vt_expect_error(r.m, VIKT_ERR_ARG, "vikt_trainer_set", NULL);
        double after = 0;
        vikt_trainer_get(r.t, bad[i].p, &after);
        assert_true(before == after || (isnan(before) && isnan(after)));
    }
    assert_int_equal(vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 0), VIKT_ERR_ARG);
    vt_expect_error(r.m, VIKT_ERR_ARG, "VIKT_FIT_EPOCHS = 0 is out of range", NULL);
    double v;
    assert_int_equal(vikt_trainer_get(r.t, (vikt_fit_param)23, &v), VIKT_ERR_ARG);
    assert_int_equal(vikt_trainer_get(r.t, VIKT_FIT_EPOCHS, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_get(NULL, VIKT_FIT_EPOCHS, &v), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_get(r.t, VIKT_FIT_EPOCHS, &v), VIKT_OK);
    assert_true(v == 10);
    assert_int_equal(vikt_trainer_set(NULL, VIKT_FIT_EPOCHS, 1), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_set_output(NULL, NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_set_callback(NULL, NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_set_log(NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_fit(NULL, r.train, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_fit(r.t, NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_evaluate(NULL, r.val, &v, &v), VIKT_ERR_NULL);
    assert_int_equal(vikt_trainer_evaluate(r.t, NULL, &v, &v), VIKT_ERR_NULL);
    vikt_trainer_destroy(NULL);

    /* Targets the loss cannot use. */
    vikt_trainer_set(r.t, VIKT_FIT_LOSS, VIKT_LOSS_MSE);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_ERR_ARG);
    vt_expect_error(r.m, VIKT_ERR_ARG, "the training set has no float targets", NULL);
    assert_int_equal(vikt_trainer_evaluate(r.t, r.val, &v, NULL), VIKT_ERR_ARG);
    vt_expect_error(r.m, VIKT_ERR_ARG, "vikt_trainer_evaluate: the evaluation set has no float", NULL);
    assert_true(isnan(v));
    vikt_trainer_set(r.t, VIKT_FIT_LOSS, VIKT_LOSS_CROSS_ENTROPY);

    /* A dataset of another model. */
    vikt_model *other = vt_model(1);
    vikt_dataset *foreign;
    assert_int_equal(vikt_dataset_create(other, N, 1, (int64_t[]){D}, r.p.x, r.p.y, NULL, 0, &foreign),
                     VIKT_OK);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, foreign), VIKT_ERR_ARG);
    vt_expect_error(r.m, VIKT_ERR_ARG, "the validation set belongs to another model", NULL);
    vikt_dataset_destroy(foreign);
    vikt_model_destroy(other);

    /* No optimizer: evaluation only. */
    assert_int_equal(vikt_trainer_create(r.m, NULL, linear, &two, &t), VIKT_OK);
    assert_int_equal(vikt_trainer_fit(t, r.train, NULL), VIKT_ERR_STATE);
    vt_expect_error(r.m, VIKT_ERR_STATE, "no optimizer", NULL);
    vikt_trainer_destroy(t);

    /* A model that holds an error is refused. */
    vikt_mean(r.m, vikt_input(r.m, 5, (int64_t[]){1, 1, 1, 1, 1}, NULL));
    assert_int_not_equal(vikt_model_errcode(r.m), VIKT_OK);
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_ERR_STATE);
    assert_int_equal(vikt_trainer_evaluate(r.t, r.val, NULL, NULL), VIKT_ERR_STATE);
    vt_expect_error(r.m, VIKT_ERR_SHAPE, "vikt_input", NULL); /* the first error is kept */

    /* A forward function that fails without an error, or with one. */
    assert_int_equal(vikt_trainer_create(r.m, r.opt, null_forward, NULL, &t), VIKT_OK);
    vikt_trainer_set(t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF);
    assert_int_equal(vikt_trainer_fit(t, r.train, NULL), VIKT_ERR_STATE);
    vt_expect_error(r.m, VIKT_ERR_STATE, "forward function returned NULL", NULL);
    assert_int_equal(vikt_grad_enabled(r.m), 1);
    vikt_trainer_destroy(t);
    vikt_trainer_set(r.t, VIKT_FIT_EPOCHS, 1); /* makes fc with 2 outputs */
    assert_int_equal(vikt_trainer_fit(r.t, r.train, NULL), VIKT_OK);
    assert_int_equal(vikt_trainer_create(r.m, r.opt, three_classes, NULL, &t), VIKT_OK);
    vikt_trainer_set(t, VIKT_FIT_PROGRESS, VIKT_PROGRESS_OFF);
    assert_int_equal(vikt_trainer_fit(t, r.train, NULL), VIKT_ERR_SHAPE);
    vt_expect_error(r.m, VIKT_ERR_SHAPE, "vikt_dense", NULL);
    vikt_trainer_destroy(t);
    rig_close(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fit_learns_each_loss),
        cmocka_unit_test(evaluate_matches_a_hand_computation),
        cmocka_unit_test(evaluate_changes_nothing),
        cmocka_unit_test(same_seed_same_parameters),
        cmocka_unit_test(drop_last_and_no_shuffle),
        cmocka_unit_test(early_stopping_restores_the_best_epoch),
        cmocka_unit_test(min_delta_counts_small_gains_as_none),
        cmocka_unit_test(callbacks_count_and_stop),
        cmocka_unit_test(progress_plain_lines),
        cmocka_unit_test(progress_redraw_and_early_stop_line),
        cmocka_unit_test(progress_on_stderr_when_not_a_terminal),
        cmocka_unit_test(csv_log_has_one_line_per_epoch),
        cmocka_unit_test(steady_state_allocates_nothing),
        cmocka_unit_test(out_of_memory_at_the_start),
        cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
