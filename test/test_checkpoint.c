/* Checkpoints: vikt_checkpoint_save and vikt_checkpoint_load.
 *
 * - exact resume: for every rule, with schedules, clipping, weight decay and
 *   a skipped step among the configurations, 40 uninterrupted steps of a
 *   dense / batch-norm / ReLU / dropout / cross-entropy model equal bitwise
 *   20 steps, a checkpoint, a load into a fresh model and optimizer (other
 *   seed, default settings) and 20 more steps, in this process and in a new
 *   one (this program runs itself with --resume); and the generator and the
 *   optimizer state are both needed for that;
 * - vikt_load reads a checkpoint's weights and ignores the optimizer state;
 * - every bad input is refused with a message naming the file and the
 *   problem, and leaves the model, its generator and the optimizer as they
 *   were: NULLs, another rule, other shapes, edited files (a missing state
 *   tensor, bad numbers, unknown keys …), a flipped bit anywhere, every
 *   truncation, out of memory at every allocation, an I/O fault at every file
 *   operation;
 * - a failed save leaves the previous file byte-identical and no temporary.
 *
 * This program links the library's objects, not the archive, for the fault
 * hook, the safetensors internals the file edits use and the optimizer's
 * structure (to compare states). */
#define _POSIX_C_SOURCE 200809L

#include "support.h"

#include "../src/io/io.h"
#include "../src/optim/optim.h"

#include <dirent.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* ------------------------------------------------------------- training */

enum { B = 8, D = 6, H = 12, C = 4, STEPS = 40, HALF = 20, LATE = 10 };

typedef struct setting {
    vikt_optim_param param;
    double value;
} setting;

typedef struct config {
    const char *name;
    vikt_optim_kind kind;
    float lr;
    int n;
    setting s[8];
    int nan_step; /* a step whose loss is NaN (to be skipped), or -1 */
} config;

static const config configs[] = {
    {"SGD, step schedule", VIKT_OPTIM_SGD, 0.1f, 3,
     {{VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_STEP}, {VIKT_OPT_STEP_SIZE, 7}, {VIKT_OPT_GAMMA, 0.5}}, -1},
    {"SGD Nesterov, weight decay, cosine warm-up, clip norm", VIKT_OPTIM_SGD, 0.05f, 8,
     {{VIKT_OPT_MOMENTUM, 0.9}, {VIKT_OPT_NESTEROV, 1}, {VIKT_OPT_WEIGHT_DECAY, 1e-3},
      {VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_COSINE}, {VIKT_OPT_WARMUP_STEPS, 5}, {VIKT_OPT_T_MAX, 30},
      {VIKT_OPT_ETA_MIN, 1e-3}, {VIKT_OPT_CLIP_NORM, 1.0}}, -1},
    {"AdaGrad, lr decay, exponential schedule, clip value", VIKT_OPTIM_ADAGRAD, 0.1f, 5,
     {{VIKT_OPT_LR_DECAY, 0.01}, {VIKT_OPT_INITIAL_ACCUMULATOR, 0.1}, {VIKT_OPT_CLIP_VALUE, 0.5},
      {VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_EXPONENTIAL}, {VIKT_OPT_GAMMA, 0.98}}, -1},
    {"RMSProp centered, momentum, cosine warm-up", VIKT_OPTIM_RMSPROP, 0.01f, 6,
     {{VIKT_OPT_CENTERED, 1}, {VIKT_OPT_MOMENTUM, 0.5}, {VIKT_OPT_WEIGHT_DECAY, 1e-4},
      {VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_COSINE}, {VIKT_OPT_WARMUP_STEPS, 4}, {VIKT_OPT_T_MAX, 40}}, -1},
    {"Adam, cosine warm-up, clip norm", VIKT_OPTIM_ADAM, 0.01f, 4,
     {{VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_COSINE}, {VIKT_OPT_WARMUP_STEPS, 3}, {VIKT_OPT_T_MAX, 35},
      {VIKT_OPT_CLIP_NORM, 0.5}}, -1},
    {"Adam amsgrad, weight decay, step schedule", VIKT_OPTIM_ADAM, 0.01f, 6,
     {{VIKT_OPT_AMSGRAD, 1}, {VIKT_OPT_WEIGHT_DECAY, 1e-3}, {VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_STEP},
      {VIKT_OPT_STEP_SIZE, 10}, {VIKT_OPT_GAMMA, 0.3}, {VIKT_OPT_BETA1, 0.8}}, -1},
    {"AdamW, cosine warm-up, clip value, a skipped step", VIKT_OPTIM_ADAMW, 0.01f, 5,
     {{VIKT_OPT_SCHEDULE, VIKT_SCHEDULE_COSINE}, {VIKT_OPT_WARMUP_STEPS, 6}, {VIKT_OPT_T_MAX, 30},
      {VIKT_OPT_SKIP_NONFINITE, 1}, {VIKT_OPT_CLIP_VALUE, 1.0}}, 7},
};
enum { NCONFIGS = sizeof configs / sizeof configs[0], ADAM_AMSGRAD = 5 };

/* One step on batch `step`: dense, batch norm (a buffer), ReLU, dropout (the
 * generator), dense, plus a layer that joins at step LATE (its parameters'
 * own step counts lag), cross-entropy. Returns the first error. */
static int train_step(vikt_model *m, vikt_optimizer *opt, const config *c, int step) {
    float x[B * D], scale = step == c->nan_step ? NAN : 1.0f;
    int32_t y[B];
    vt_fill(x, B * D, 100u + (uint32_t)step, -2, 2);
    for (int i = 0; i < B; i++) y[i] = (int32_t)((step * 7 + i * 3) % C);
    vikt_step_begin(m);
    vikt_zero_grad(m);
    vikt_tensor *in = vikt_input(m, 2, SHAPE(B, D), x);
    vikt_tensor *h = vikt_relu(m, vikt_batch_norm(m, "bn", vikt_dense(m, "fc1", in, H), 0.1f, 1e-5f));
    h = vikt_dropout(m, h, 0.25f);
    vikt_tensor *logits = vikt_dense(m, "fc2", h, C);
    if (step >= LATE) logits = vikt_add(m, logits, vikt_dense(m, "late", h, C));
    logits = vikt_mul(m, logits, vikt_input(m, 1, SHAPE(1), &scale));
    int rc = vikt_backward(m, vikt_cross_entropy_loss(m, logits, y));
    if (!rc) rc = vikt_optimizer_step(opt);
    return rc ? rc : vikt_model_errcode(m);
}

static vikt_optimizer *configured(vikt_model *m, const config *c) {
    vikt_optimizer *opt;
    assert_int_equal(vikt_optimizer_create(m, c->kind, c->lr, &opt), VIKT_OK);
    for (int i = 0; i < c->n; i++)
        assert_int_equal(vikt_optimizer_set(opt, c->s[i].param, c->s[i].value), VIKT_OK);
    return opt;
}

static void train(vikt_model *m, vikt_optimizer *opt, const config *c, int from, int to) {
    for (int step = from; step < to; step++) {
        int rc = train_step(m, opt, c, step);
        if (rc) fail_msg("%s, step %d: %s", c->name, step, vikt_model_errmsg(m));
    }
}

static double get(const vikt_optimizer *opt, vikt_optim_param p) {
    double v;
    assert_int_equal(vikt_optimizer_get(opt, p, &v), VIKT_OK);
    return v;
}

/* ---------------------------------------------------------------- files */

static int same_files(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *x = vt_read_file(a, &na), *y = vt_read_file(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return same;
}

/* ---------------------------------------------------- comparing states */

/* A CRC of everything a resumed run depends on: parameters and buffers
 * (names, shapes, values), the generator, and the optimizer's rule,
 * settings, counters and per-parameter state (a slot never updated counts
 * as absent, as a fresh optimizer's missing one). */
static uint32_t fingerprint(vikt_model *m, const vikt_optimizer *opt) {
    uint32_t crc = vikt__crc32c(0, &m->rng, sizeof m->rng);
    crc = vikt__crc32c(crc, &m->nparams, sizeof m->nparams);
    crc = vikt__crc32c(crc, &m->nbuffers, sizeof m->nbuffers);
    for (int64_t i = 0; i < m->nparams + m->nbuffers; i++) {
        const vikt_tensor *t = i < m->nparams ? m->params[i] : m->buffers[i - m->nparams];
        crc = vikt__crc32c(crc, t->name, strlen(t->name));
        crc = vikt__crc32c(crc, t->shape, sizeof t->shape);
        crc = vikt__crc32c(crc, t->data, (size_t)t->numel * sizeof(float));
    }
    if (!opt) return crc;
    crc = vikt__crc32c(crc, &opt->kind, sizeof opt->kind);
    crc = vikt__crc32c(crc, opt->hp, sizeof opt->hp);
    crc = vikt__crc32c(crc, &opt->steps, sizeof opt->steps);
    crc = vikt__crc32c(crc, &opt->skipped, sizeof opt->skipped);
    for (int64_t k = 0; k < opt->nslots; k++) {
        const vikt__slot *s = &opt->slots[k];
        if (s->step == 0 && s->live == 0) continue;
        crc = vikt__crc32c(crc, &k, sizeof k);
        crc = vikt__crc32c(crc, &s->step, sizeof s->step);
        crc = vikt__crc32c(crc, &s->live, sizeof s->live);
        for (int b = 0; b < VIKT__OPT_NBUF; b++)
            if (s->live & (1u << b)) crc = vikt__crc32c(crc, s->buf[b], (size_t)s->numel * sizeof(float));
    }
    return crc;
}

static uint32_t optimizer_fingerprint(const vikt_model *m, const vikt_optimizer *opt) {
    vikt_model copy = *m;
    copy.nparams = copy.nbuffers = 0; /* the generator and the optimizer only */
    return fingerprint(&copy, opt);
}

/* Each parameter and buffer of b bitwise equal to a's of the same name. */
static void assert_same_tensors(vikt_model *a, vikt_model *b, const char *what) {
    assert_int_equal(vikt_param_count(a), vikt_param_count(b));
    assert_int_equal(vikt_buffer_count(a), vikt_buffer_count(b));
    for (int64_t i = 0; i < vikt_param_count(a) + vikt_buffer_count(a); i++) {
        int param = i < vikt_param_count(a);
        vikt_tensor *t = param ? vikt_param_at(a, i) : vikt_buffer_at(a, i - vikt_param_count(a));
        vikt_tensor *u = param ? vikt_param_find(b, vikt_tensor_name(t))
                               : vikt_buffer_find(b, vikt_tensor_name(t));
        if (!u) fail_msg("%s: '%s' is missing", what, vikt_tensor_name(t));
        assert_int_equal(vikt_tensor_numel(t), vikt_tensor_numel(u));
        if (memcmp(vikt_tensor_data(t), vikt_tensor_data(u), (size_t)vikt_tensor_numel(t) * 4) != 0)
            fail_msg("%s: '%s' differs", what, vikt_tensor_name(t));
    }
}

/* ---------------------------------------------------------- exact resume */

/* The uninterrupted run: HALF steps, a checkpoint at mid, the rest, and a
 * checkpoint at the end. A save changes nothing, so this is the run that
 * never stopped. */
static void uninterrupted(const config *c, const char *mid, const char *end, vikt_model **m_out,
                          vikt_optimizer **opt_out, double *lr_mid) {
    vikt_model *m = vt_model(7);
    vikt_optimizer *opt = configured(m, c);
    train(m, opt, c, 0, HALF);
    assert_int_equal(vikt_checkpoint_save(m, opt, mid), VIKT_OK);
    *lr_mid = get(opt, VIKT_OPT_CURRENT_LR);
    train(m, opt, c, HALF, STEPS);
    assert_int_equal(vikt_checkpoint_save(m, opt, end), VIKT_OK);
    *m_out = m, *opt_out = opt;
}

static void exact_resume(void **state) {
    (void)state;
    char *dir = vt_tmpdir("ckpt"), *mid = vt_join(dir, "mid.ckpt"), *end = vt_join(dir, "end.ckpt");
    char *resumed_end = vt_join(dir, "resumed.ckpt");
    for (int ci = 0; ci < NCONFIGS; ci++) {
        const config *c = &configs[ci];
        vikt_model *a;
        vikt_optimizer *oa;
        double lr_mid;
        uninterrupted(c, mid, end, &a, &oa, &lr_mid);

        /* Another seed and the rule's defaults: the checkpoint brings all. */
        vikt_model *b = vt_model(12345);
        vikt_optimizer *ob;
        assert_int_equal(vikt_optimizer_create(b, c->kind, 0.5f, &ob), VIKT_OK);
        if (vikt_checkpoint_load(b, ob, mid) != VIKT_OK) fail_msg("%s: %s", c->name, vikt_model_errmsg(b));
        int skipped_early = c->nan_step >= 0 && c->nan_step < HALF;
        assert_true(get(ob, VIKT_OPT_STEP) == HALF - skipped_early);
        assert_true(get(ob, VIKT_OPT_CURRENT_LR) == lr_mid);
        assert_true(get(ob, VIKT_OPT_LR) == (double)c->lr);
        for (int i = 0; i < c->n; i++) assert_true(get(ob, c->s[i].param) == c->s[i].value);
        train(b, ob, c, HALF, STEPS);

        assert_same_tensors(a, b, c->name);
        assert_true(get(ob, VIKT_OPT_STEP) == STEPS - (c->nan_step >= 0));
        assert_true(get(ob, VIKT_OPT_CURRENT_LR) == get(oa, VIKT_OPT_CURRENT_LR));
        assert_true(get(ob, VIKT_OPT_SKIPPED_STEPS) == (c->nan_step >= 0 ? 1 : 0));
        assert_true(get(ob, VIKT_OPT_SKIPPED_STEPS) == get(oa, VIKT_OPT_SKIPPED_STEPS));
        assert_int_equal(fingerprint(a, oa), fingerprint(b, ob));
        assert_int_equal(vikt_checkpoint_save(b, ob, resumed_end), VIKT_OK);
        if (!same_files(end, resumed_end)) fail_msg("%s: the final checkpoints differ", c->name);
        print_message("%-55s resumed bitwise\n", c->name);
        vikt_optimizer_destroy(oa), vikt_optimizer_destroy(ob);
        vikt_model_destroy(a), vikt_model_destroy(b);
    }
    free(mid), free(end), free(resumed_end);
    vt_rmdir(dir);
}

/* The test is sensitive: without the saved generator (dropout masks) or
 * without the saved optimizer state, the resumed run differs. */
static void resume_needs_generator_and_state(void **state) {
    (void)state;
    const config *c = &configs[ADAM_AMSGRAD];
    char *dir = vt_tmpdir("ckpt"), *mid = vt_join(dir, "mid.ckpt"), *end = vt_join(dir, "end.ckpt");
    vikt_model *a;
    vikt_optimizer *oa;
    double lr_mid;
    uninterrupted(c, mid, end, &a, &oa, &lr_mid);
    uint32_t want = fingerprint(a, NULL);
    for (int variant = 0; variant < 3; variant++) {
        vikt_model *b = vt_model(12345);
        vikt_optimizer *ob = configured(b, c);
        /* 0: everything; 1: another generator state; 2: weights and generator only */
        assert_int_equal(vikt_checkpoint_load(b, variant == 2 ? NULL : ob, mid), VIKT_OK);
        if (variant == 1) vikt_model_seed(b, 99);
        if (variant == 2) assert_true(get(ob, VIKT_OPT_STEP) == 0); /* NULL: state not read */
        train(b, ob, c, HALF, STEPS);
        if ((fingerprint(b, NULL) == want) != (variant == 0)) fail_msg("variant %d", variant);
        vikt_optimizer_destroy(ob);
        vikt_model_destroy(b);
    }
    vikt_optimizer_destroy(oa);
    vikt_model_destroy(a);
    free(mid), free(end);
    vt_rmdir(dir);
}

/* Whether this program can run itself in a child process: under qemu-user
 * (make check-neon) a forked child can hang before its first instruction,
 * and exec of /proc/self/exe starts qemu, not this program. The child of
 * "--probe" exits 0 at once. */
static int child_works(void) {
    if (access("/proc/self/exe", X_OK) != 0) return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "test_checkpoint", "--probe", (char *)NULL);
        _exit(127);
    }
    if (pid < 0) return 0;
    for (int i = 0; i < 500; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}

/* The child's side of exact_resume_in_a_new_process (main runs it for
 * "--resume IN CONFIG OUT"): a new model and optimizer on the default
 * allocator, the checkpoint, the second half, a checkpoint at the end. */
static int resume_child(const char *in, int ci, const char *out) {
    vikt_model *m;
    vikt_optimizer *opt = NULL;
    if (ci < 0 || ci >= NCONFIGS || vikt_model_create(NULL, 4242, &m) != VIKT_OK) return 2;
    int rc = vikt_optimizer_create(m, configs[ci].kind, 0.5f, &opt);
    if (!rc) rc = vikt_checkpoint_load(m, opt, in);
    for (int step = HALF; !rc && step < STEPS; step++) rc = train_step(m, opt, &configs[ci], step);
    if (!rc) rc = vikt_checkpoint_save(m, opt, out);
    if (rc) fprintf(stderr, "resume child: %s\n", vikt_model_errmsg(m));
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    return rc ? 1 : 0;
}

static void exact_resume_in_a_new_process(void **state) {
    (void)state;
    if (!child_works()) {
        print_message("cannot run a child process here (qemu-user?): skipped\n");
        skip();
    }
    char *dir = vt_tmpdir("ckpt"), *mid = vt_join(dir, "mid.ckpt"), *end = vt_join(dir, "end.ckpt");
    char *resumed_end = vt_join(dir, "resumed.ckpt");
    for (int ci = 0; ci < NCONFIGS; ci++) {
        vikt_model *a;
        vikt_optimizer *oa;
        double lr_mid;
        uninterrupted(&configs[ci], mid, end, &a, &oa, &lr_mid);
        char index[16];
        snprintf(index, sizeof index, "%d", ci);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            execl("/proc/self/exe", "test_checkpoint", "--resume", mid, index, resumed_end, (char *)NULL);
            _exit(127);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("%s: the child failed (status %d)", configs[ci].name, status);
        if (!same_files(end, resumed_end)) fail_msg("%s: the final checkpoints differ", configs[ci].name);
        print_message("%-55s resumed bitwise in a new process\n", configs[ci].name);
        vikt_optimizer_destroy(oa);
        vikt_model_destroy(a);
    }
    free(mid), free(end), free(resumed_end);
    vt_rmdir(dir);
}

/* ------------------------------------------------------ weights and rest */

/* vikt_load reads a checkpoint's weights and counts the optimizer's tensors
 * as ignored; vikt_checkpoint_load with no optimizer takes the weights and
 * the generator. */
static void weights_from_a_checkpoint(void **state) {
    (void)state;
    const config *c = &configs[ADAM_AMSGRAD];
    char *dir = vt_tmpdir("ckpt"), *mid = vt_join(dir, "mid.ckpt"), *end = vt_join(dir, "end.ckpt");
    vikt_model *a;
    vikt_optimizer *oa;
    double lr_mid;
    uninterrupted(c, mid, end, &a, &oa, &lr_mid);
    int64_t states = 0;
    for (int64_t k = 0; k < oa->nslots; k++)
        for (int b = 0; b < VIKT__OPT_NBUF; b++) states += (oa->slots[k].live >> b) & 1u;
    assert_true(states == 3 * vikt_param_count(a)); /* amsgrad: three buffers each */

    vikt_model *b = vt_model(1);
    assert_int_equal(vikt_load(b, end, VIKT_LOAD_STRICT), VIKT_OK);
    assert_same_tensors(a, b, "vikt_load");
    assert_int_equal(vikt_load_report_count(b, VIKT_LOAD_LOADED), vikt_param_count(a) + vikt_buffer_count(a));
    assert_int_equal(vikt_load_report_count(b, VIKT_LOAD_IGNORED), states);
    assert_int_equal(vikt_load(b, end, VIKT_LOAD_STRICT), VIKT_OK); /* into the tensors it made */

    vikt_model *e = vt_model(1);
    assert_int_equal(vikt_checkpoint_load(e, NULL, end), VIKT_OK);
    assert_same_tensors(a, e, "vikt_checkpoint_load without an optimizer");
    assert_memory_equal(&e->rng, &a->rng, sizeof a->rng);
    assert_int_equal(vikt_load_report_count(e, VIKT_LOAD_IGNORED), states);
    char report[512];
    vikt_load_report(e, report, sizeof report);
    assert_non_null(strstr(report, "vikt_checkpoint_load: "));

    /* With an optimizer every state tensor is loaded too. */
    vikt_model *f = vt_model(1);
    vikt_optimizer *of;
    assert_int_equal(vikt_adam_create(f, 0.5f, &of), VIKT_OK);
    assert_int_equal(vikt_checkpoint_load(f, of, end), VIKT_OK);
    assert_int_equal(vikt_load_report_count(f, VIKT_LOAD_LOADED),
                     vikt_param_count(a) + vikt_buffer_count(a) + states);
    assert_int_equal(vikt_load_report_count(f, VIKT_LOAD_IGNORED), 0);
    assert_int_equal(fingerprint(f, of), fingerprint(a, oa));

    vikt_optimizer_destroy(of);
    vikt_model_destroy(f);
    vikt_model_destroy(e);
    vikt_model_destroy(b);
    vikt_optimizer_destroy(oa);
    vikt_model_destroy(a);
    free(mid), free(end);
    vt_rmdir(dir);
}

/* Hyperparameters survive exactly whatever their digits, and counts, the
 * generator and the format's numbers read back as written. */
static void numbers_are_exact(void **state) {
    (void)state;
    char *dir = vt_tmpdir("ckpt"), *path = vt_join(dir, "n.ckpt");
    static const double lrs[] = {0.1, 1e-300, 4.9406564584124654e-324, 2.2250738585072009e-308,
                                 1.7976931348623157e308, 0.0, 1.0 / 3.0, 123456789.125};
    for (size_t i = 0; i < sizeof lrs / sizeof lrs[0]; i++) {
        vikt_model *m = vt_model(3), *n = vt_model(4);
        vikt_param(m, "w", 1, SHAPE(2), VIKT_INIT_ZEROS);
        vikt_optimizer *om, *on;
        assert_int_equal(vikt_sgd_create(m, 0.0f, &om), VIKT_OK);
        assert_int_equal(vikt_sgd_create(n, 0.0f, &on), VIKT_OK);
        assert_int_equal(vikt_optimizer_set(om, VIKT_OPT_LR, lrs[i]), VIKT_OK);
        assert_int_equal(vikt_optimizer_set(om, VIKT_OPT_WEIGHT_DECAY, lrs[i] / 7), VIKT_OK);
        m->rng.state = UINT64_MAX, m->rng.inc = 0x8000000000000001ull;
        om->steps = INT64_MAX;
        assert_int_equal(vikt_checkpoint_save(m, om, path), VIKT_OK);
        assert_int_equal(vikt_checkpoint_load(n, on, path), VIKT_OK);
        double lr = get(on, VIKT_OPT_LR), wd = get(on, VIKT_OPT_WEIGHT_DECAY);
        assert_memory_equal(&lr, &lrs[i], sizeof lr);
        double want_wd = lrs[i] / 7;
        assert_memory_equal(&wd, &want_wd, sizeof wd);
        assert_memory_equal(&n->rng, &m->rng, sizeof m->rng);
        assert_true(on->steps == INT64_MAX);
        vikt_optimizer_destroy(om), vikt_optimizer_destroy(on);
        vikt_model_destroy(m), vikt_model_destroy(n);
    }
    free(path);
    vt_rmdir(dir);
}

/* The metadata's doubles (numbers.c): exact for edge values, one spelling
 * each, and no decimal spelling whatever the decimal point. */
static void metadata_numbers(void **state) {
    (void)state;
    static const struct {
        double v;
        const char *text;
    } cases[] = {{0.1, "0x1.999999999999ap-4"},
                 {1e-300, "0x1.56e1fc2f8f359p-997"},
                 {4.9406564584124654e-324, "0x0.0000000000001p-1022"},
                 {2.2250738585072009e-308, "0x0.fffffffffffffp-1022"},
                 {16.0, "0x1p+4"},
                 {0.0, "0x0p+0"},
                 {-0.0, "-0x0p+0"},
                 {-1.5, "-0x1.8p+0"},
                 {1.7976931348623157e308, "0x1.fffffffffffffp+1023"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[VIKT__NUM_MAX];
        double back = 42;
        vikt__put_double(cases[i].v, text);
        assert_string_equal(text, cases[i].text);
        assert_int_equal(vikt__get_double(text, &back), 1);
        assert_memory_equal(&back, &cases[i].v, sizeof back);
    }
    char text[VIKT__NUM_MAX];
    vikt__put_double(INFINITY, text), assert_string_equal(text, "inf");
    vikt__put_double(-INFINITY, text), assert_string_equal(text, "-inf");
    vikt__put_double(NAN, text), assert_string_equal(text, "nan");
    static const char *refused[] = {"0.1", "0,1", "1e-3", "16", "0x1.8P+0", "0X1p+0", "0x1.80p+0",
                                    "0x1p4", "0x2p+0", "0x1p+", "+0x1p+0", " 0x1p+0", "0x1p+0 ",
                                    "0x1p+1024", "inf", "nan", "", "0x1.g p+0", "0x0.8p+0"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        double v = 42;
        if (vikt__get_double(refused[i], &v)) fail_msg("accepted '%s'", refused[i]);
        assert_true(v == 42);
    }
}

/* A model with a LoRA adapter of the given alpha and dropout, run once. */
static vikt_model *lora_model(float alpha, float dropout) {
    vikt_model *m = vt_model(5);
    vikt_step_begin(m);
    vikt_tensor *x = vikt_input(m, 2, SHAPE(1, 4), (const float[]){1, 2, 3, 4});
    assert_non_null(vikt_dense(m, "fc", x, 3));
    if (alpha > 0) assert_int_equal(vikt_lora_attach(m, "fc", 2, alpha, dropout), 1);
    return m;
}

/* A LoRA adapter file and a checkpoint written under one LC_NUMERIC and read
 * under another are the same numbers: with a comma-decimal locale a "%g"
 * writer spells 1.5 as "1,5", which a reader in "C" takes for 1. */
static void files_ignore_the_locale(void **state) {
    (void)state;
    static const char *comma[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "sv_SE.UTF-8"};
    const char *loc = NULL;
    for (size_t i = 0; i < sizeof comma / sizeof *comma && !loc; i++)
        if (setlocale(LC_NUMERIC, comma[i])) loc = comma[i];
    setlocale(LC_NUMERIC, "C");
    if (!loc) {
        print_message("no comma-decimal locale installed; metadata_numbers covers the parser\n");
        skip();
    }
    char *dir = vt_tmpdir("ckpt"), *path = vt_join(dir, "a.safetensors"), *ckpt = vt_join(dir, "a.ckpt");
    for (int write_in_comma = 0; write_in_comma < 2; write_in_comma++) {
        setlocale(LC_NUMERIC, write_in_comma ? loc : "C");
        vikt_model *m = lora_model(1.5f, 0.1f);
        assert_int_equal(vikt_lora_save(m, path), VIKT_OK);
        vikt_optimizer *om, *on;
        assert_int_equal(vikt_sgd_create(m, 0.0f, &om), VIKT_OK);
        assert_int_equal(vikt_optimizer_set(om, VIKT_OPT_LR, 0.3), VIKT_OK);
        assert_int_equal(vikt_checkpoint_save(m, om, ckpt), VIKT_OK);

        setlocale(LC_NUMERIC, write_in_comma ? "C" : loc);
        vikt_model *n = lora_model(0, 0);
        assert_int_equal(vikt_lora_load(n, path), 1);
        const vikt__lora *l = vikt__lora_find(n, "fc");
        assert_non_null(l);
        assert_true(l->alpha == 1.5f && l->dropout == 0.1f);
        vikt_model *k = lora_model(1.5f, 0.1f);
        assert_int_equal(vikt_sgd_create(k, 0.0f, &on), VIKT_OK);
        assert_int_equal(vikt_checkpoint_load(k, on, ckpt), VIKT_OK);
        assert_true(get(on, VIKT_OPT_LR) == 0.3);
        setlocale(LC_NUMERIC, "C");
        vikt_optimizer_destroy(om), vikt_optimizer_destroy(on);
        vikt_model_destroy(m), vikt_model_destroy(n), vikt_model_destroy(k);
    }
    free(path), free(ckpt);
    vt_rmdir(dir);
}

/* -------------------------------------------------------------- refusals */

/* A model with Adam state at step 20, its fingerprint, and the mid
 * checkpoint of the same configuration from another run to load. */
typedef struct fixture {
    char *dir, *path;
    vikt_model *m;
    vikt_optimizer *opt;
    uint32_t before;
} fixture;

static void fixture_make(fixture *f, int with_state) {
    const config *c = &configs[ADAM_AMSGRAD];
    f->dir = vt_tmpdir("ckpt");
    f->path = vt_join(f->dir, "mid.ckpt");
    vikt_model *src = vt_model(7);
    vikt_optimizer *os = configured(src, c);
    train(src, os, c, 0, HALF);
    assert_int_equal(vikt_checkpoint_save(src, os, f->path), VIKT_OK);
    vikt_optimizer_destroy(os);
    vikt_model_destroy(src);
    f->m = vt_model(8);
    f->opt = configured(f->m, c);
    if (with_state) train(f->m, f->opt, c, 3, 3 + HALF / 2);
    f->before = fingerprint(f->m, f->opt);
}

static void fixture_free(fixture *f) {
    vikt_optimizer_destroy(f->opt);
    vikt_model_destroy(f->m);
    free(f->path);
    vt_rmdir(f->dir);
}

/* Load path into the fixture: err, a message naming the file and needle,
 * the same first line in the report, and nothing changed. */
static void refused(fixture *f, const char *path, int err, const char *needle) {
    int rc = vikt_checkpoint_load(f->m, f->opt, path);
    if (rc != err)
        fail_msg("%s: %d (%s), want %d", needle, rc, vikt_model_errmsg(f->m), err);
    const char *msg = vikt_model_errmsg(f->m);
    assert_non_null(strstr(msg, "vikt_checkpoint_load: "));
    assert_non_null(strstr(msg, strrchr(path, '/') + 1));
    if (!strstr(msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
    char report[VIKT__ERRMSG_MAX + 8];
    vikt_load_report(f->m, report, sizeof report);
    assert_memory_equal(report, msg, strlen(msg));
    vikt_model_clear_error(f->m);
    assert_int_equal(fingerprint(f->m, f->opt), f->before);
}

static void null_and_foreign_arguments(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f, 1);
    assert_int_equal(vikt_checkpoint_save(NULL, f.opt, f.path), VIKT_ERR_NULL);
    assert_int_equal(vikt_checkpoint_load(NULL, f.opt, f.path), VIKT_ERR_NULL);
    assert_int_equal(vikt_checkpoint_save(f.m, f.opt, NULL), VIKT_ERR_NULL);
    vt_expect_error(f.m, VIKT_ERR_NULL, "vikt_checkpoint_save: path is NULL", NULL);
    assert_int_equal(vikt_checkpoint_load(f.m, f.opt, NULL), VIKT_ERR_NULL);
    vt_expect_error(f.m, VIKT_ERR_NULL, "vikt_checkpoint_load: path is NULL", NULL);
    vikt_model *other = vt_model(1);
    vikt_optimizer *o2;
    assert_int_equal(vikt_sgd_create(other, 0.1f, &o2), VIKT_OK);
    assert_int_equal(vikt_checkpoint_save(f.m, o2, f.path), VIKT_ERR_ARG);
    vt_expect_error(f.m, VIKT_ERR_ARG, "the optimizer belongs to another model", NULL);
    assert_int_equal(vikt_checkpoint_load(f.m, o2, f.path), VIKT_ERR_ARG);
    vt_expect_error(f.m, VIKT_ERR_ARG, "the optimizer belongs to another model", NULL);
    assert_int_equal(fingerprint(f.m, f.opt), f.before);
    char *missing = vt_join(f.dir, "missing.ckpt");
    refused(&f, missing, VIKT_ERR_IO, "No such file");
    /* A model tensor named like optimizer state cannot be saved with state. */
    vikt_param(other, "optimizer.x", 1, SHAPE(1), VIKT_INIT_ZEROS);
    assert_int_equal(vikt_checkpoint_save(other, o2, missing), VIKT_ERR_ARG);
    vt_expect_error(other, VIKT_ERR_ARG, "'optimizer.x' is reserved for optimizer state", NULL);
    assert_int_equal(vikt_checkpoint_save(other, NULL, missing), VIKT_OK);
    free(missing);
    vikt_optimizer_destroy(o2);
    vikt_model_destroy(other);
    fixture_free(&f);
}

static void wrong_rule_or_model(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f, 1);
    char *path = vt_join(f.dir, "x.ckpt");
    /* Saved by another rule. */
    vikt_model *m = vt_model(1);
    vikt_optimizer *sgd;
    assert_int_equal(vikt_sgd_create(m, 0.1f, &sgd), VIKT_OK);
    train(m, sgd, &configs[0], 0, LATE + 1);
    assert_int_equal(vikt_checkpoint_save(m, sgd, path), VIKT_OK);
    refused(&f, path, VIKT_ERR_ARG, "the checkpoint holds SGD state, the optimizer is Adam");
    /* Saved without an optimizer: loadable without one only. */
    assert_int_equal(vikt_checkpoint_save(m, NULL, path), VIKT_OK);
    refused(&f, path, VIKT_ERR_ARG, "holds no optimizer state");
    /* A plain vikt_save file is not a checkpoint. */
    assert_int_equal(vikt_save(m, path), VIKT_OK);
    refused(&f, path, VIKT_ERR_FORMAT, "not a checkpoint");
    vikt_optimizer_destroy(sgd);
    vikt_model_destroy(m);

    /* A model with another shape of fc1, and one with a parameter more. */
    m = vt_model(1);
    for (int64_t i = 0; i < vikt_param_count(f.m); i++) {
        vikt_tensor *t = vikt_param_at(f.m, i);
        int64_t shape[4];
        memcpy(shape, t->shape, sizeof shape);
        if (strcmp(vikt_tensor_name(t), "fc1.bias") == 0) shape[0]++;
        assert_non_null(vikt_param(m, vikt_tensor_name(t), t->rank, shape, VIKT_INIT_ZEROS));
    }
    for (int64_t i = 0; i < vikt_buffer_count(f.m); i++) {
        vikt_tensor *t = vikt_buffer_at(f.m, i);
        assert_non_null(vikt_buffer(m, vikt_tensor_name(t), t->rank, t->shape, 0.0f));
    }
    vikt_optimizer *adam = configured(m, &configs[ADAM_AMSGRAD]);
    fixture g = {NULL, NULL, m, adam, fingerprint(m, adam)};
    refused(&g, f.path, VIKT_ERR_SHAPE, "mismatched 'fc1.bias'");
    vikt_param(m, "extra", 1, SHAPE(1), VIKT_INIT_ZEROS);
    g.before = fingerprint(m, adam);
    refused(&g, f.path, VIKT_ERR_SHAPE, "1 missing");
    vikt_optimizer_destroy(adam);
    vikt_model_destroy(m);
    free(path);
    fixture_free(&f);
}

/* ------------------------------------------------------------ file edits */

/* A checkpoint rewritten through the library's own reader and writer with
 * one change; the metadata CRC is recomputed unless told not to, so the
 * edit reaches the check behind it. */
typedef struct edit {
    const char *drop;       /* a tensor to leave out */
    const char *flatten;    /* a tensor to store as rank 1 */
    const char *add, *kind; /* a tensor to add (a copy of the first), of kind */
    const char *key;        /* metadata to set (or delete: value NULL) */
    const char *value;
    int stale_crc;          /* keep the old metadata CRC */
} edit;

enum { MAX_T = 64, MAX_META = 128 };

static void rewrite(const char *from, const char *to, const edit *e) {
    vikt_model *m = vt_model(1);
    vikt__file file;
    vikt__st st;
    assert_int_equal(vikt__file_open(&file, m, "edit", from), VIKT_OK);
    assert_int_equal(vikt__st_open(&st, &file), VIKT_OK);
    static vikt__st_entry t[MAX_T];
    static int64_t shapes[MAX_T][VIKT__ST_MAX_RANK];
    static const char *meta[2 * MAX_META];
    static char names[MAX_T][256], kinds[MAX_T][32], keys[MAX_META][256], values[MAX_META][256];
    float *data[MAX_T];
    unsigned char *chunk = malloc(VIKT__IO_CHUNK);
    int64_t n = 0, nmeta = 0;
    assert_true(st.ntensors < MAX_T - 1);
    for (int64_t i = 0; i < st.ntensors; i++) {
        vikt__st_tensor v;
        vikt__st_at(&st, i, &v);
        if (e->drop && strcmp(v.name, e->drop) == 0) continue;
        snprintf(names[n], sizeof names[n], "%s", v.name);
        snprintf(kinds[n], sizeof kinds[n], "%s", v.kind ? v.kind : "");
        memcpy(shapes[n], v.shape, sizeof shapes[n]);
        data[n] = malloc((size_t)v.numel * 4 + 4);
        assert_int_equal(vikt__st_read_f32(&st, &v, data[n], chunk), VIKT_OK);
        int flat = e->flatten && strcmp(v.name, e->flatten) == 0;
        if (flat) shapes[n][0] = v.numel;
        t[n] = (vikt__st_entry){names[n], v.kind ? kinds[n] : NULL, flat ? 1 : v.rank, shapes[n],
                                data[n], v.numel};
        n++;
    }
    if (e->add) {
        t[n] = t[0];
        t[n].name = e->add, t[n].kind = e->kind;
        data[n] = NULL;
        n++;
    }
    for (int64_t i = 0; i < st.nmeta; i++) {
        const char *k, *v;
        vikt__st_meta_at(&st, i, &k, &v);
        if (strcmp(k, "format") == 0 || strncmp(k, "vikt.crc32c.", 12) == 0 ||
            strncmp(k, "vikt.kind.", 10) == 0 || (e->key && strcmp(k, e->key) == 0))
            continue;
        snprintf(keys[nmeta], sizeof keys[nmeta], "%s", k);
        snprintf(values[nmeta], sizeof values[nmeta], "%s", v);
        nmeta++;
    }
    if (e->key && e->value) {
        snprintf(keys[nmeta], sizeof keys[nmeta], "%s", e->key);
        snprintf(values[nmeta], sizeof values[nmeta], "%s", e->value);
        nmeta++;
    }
    int64_t crc_at = -1;
    for (int64_t i = 0; i < nmeta; i++) {
        meta[2 * i] = keys[i], meta[2 * i + 1] = values[i];
        if (strcmp(keys[i], "vikt.checkpoint.crc32c") == 0) crc_at = i;
    }
    if (!e->stale_crc && crc_at >= 0)
        snprintf(values[crc_at], sizeof values[crc_at], "%08x", (unsigned)vikt__checkpoint_crc(t, n, meta, nmeta));
    vikt__st_close(&st);
    vikt__file_close(&file);
    assert_int_equal(vikt__st_write(m, "edit", to, t, n, meta, nmeta), VIKT_OK);
    for (int64_t i = 0; i < n; i++) free(data[i]);
    free(chunk);
    vikt_model_destroy(m);
}

static void edited_files(void **state) {
    (void)state;
    static const struct {
        edit e;
        int err;
        const char *needle;
    } cases[] = {
        {{.drop = "optimizer.exp_avg.fc1.weight"}, VIKT_ERR_FORMAT,
         "optimizer state tensor 'optimizer.exp_avg.fc1.weight' is missing"},
        {{.flatten = "optimizer.exp_avg_sq.fc2.weight"}, VIKT_ERR_FORMAT,
         "'optimizer.exp_avg_sq.fc2.weight' is 48 F32 of kind 'optimizer'; want F32 4x12"},
        {{.add = "optimizer.exp_avg.ghost", .kind = "optimizer"}, VIKT_ERR_FORMAT,
         "'optimizer.exp_avg.ghost' of kind 'optimizer' is in no parameter's optimizer state"},
        {{.add = "ema.fc1.weight", .kind = "ema"}, VIKT_ERR_FORMAT,
         "is of kind 'ema', which this library cannot restore"},
        {{.add = "fc3.weight", .kind = NULL}, VIKT_ERR_NOT_FOUND, "1 unexpected"},
        {{.key = "vikt.checkpoint.version", .value = "2"}, VIKT_ERR_FORMAT,
         "checkpoint format version '2'; this library reads 1"},
        {{.key = "vikt.checkpoint.version"}, VIKT_ERR_FORMAT, "not a checkpoint"},
        {{.key = "vikt.optimizer.lr", .value = "0x1.47ae147ae147bp-6", .stale_crc = 1},
         VIKT_ERR_FORMAT, "checkpoint metadata CRC32C mismatch"},
        {{.key = "vikt.checkpoint.crc32c"}, VIKT_ERR_FORMAT, "'vikt.checkpoint.crc32c' is missing"},
        {{.key = "vikt.checkpoint.crc32c", .value = "1234567", .stale_crc = 1}, VIKT_ERR_FORMAT,
         "is not 8 hexadecimal digits"},
        {{.key = "vikt.extra", .value = "1"}, VIKT_ERR_FORMAT, "unknown checkpoint metadata 'vikt.extra'"},
        {{.key = "vikt.rng.inc", .value = "0000000000000002"}, VIKT_ERR_FORMAT, "odd increment"},
        {{.key = "vikt.rng.state", .value = "123"}, VIKT_ERR_FORMAT, "random generator state '123'"},
        {{.key = "vikt.rng.state"}, VIKT_ERR_FORMAT, "'vikt.rng.state' is missing"},
        {{.key = "vikt.optimizer", .value = "Adamax"}, VIKT_ERR_FORMAT, "unknown optimizer 'Adamax'"},
        {{.key = "vikt.optimizer", .value = "RMSProp"}, VIKT_ERR_ARG,
         "the checkpoint holds RMSProp state, the optimizer is Adam"},
        {{.key = "vikt.optimizer.beta1", .value = "0x1p+0"}, VIKT_ERR_FORMAT,
         "Adam hyperparameters: beta1 must be in [0, 1), got 1"},
        {{.key = "vikt.optimizer.eps", .value = "0x0p+0"}, VIKT_ERR_FORMAT, "eps must be finite and > 0"},
        {{.key = "vikt.optimizer.lr", .value = "0.01"}, VIKT_ERR_FORMAT,
         "'vikt.optimizer.lr' = '0.01' is not a number as vikt writes it"},
        {{.key = "vikt.optimizer.lr", .value = "0x1.47ae147ae147b0p-7"}, VIKT_ERR_FORMAT,
         "is not a number as vikt writes it"},
        {{.key = "vikt.optimizer.lr", .value = "0x1p+1024"}, VIKT_ERR_FORMAT, "is not a number"},
        {{.key = "vikt.optimizer.lr", .value = "inf"}, VIKT_ERR_FORMAT, "is not a number"},
        {{.key = "vikt.optimizer.eps"}, VIKT_ERR_FORMAT, "'vikt.optimizer.eps' is missing"},
        {{.key = "vikt.optimizer.momentum", .value = "0x0p+0"}, VIKT_ERR_FORMAT,
         "'vikt.optimizer.momentum' is not a setting of Adam"},
        {{.key = "vikt.optimizer.step", .value = "020"}, VIKT_ERR_FORMAT,
         "'vikt.optimizer.step' = '020' is not a count"},
        {{.key = "vikt.optimizer.step", .value = "-1"}, VIKT_ERR_FORMAT, "is not a count"},
        {{.key = "vikt.optimizer.skipped_steps", .value = "99999999999999999999"}, VIKT_ERR_FORMAT,
         "is not a count"},
        {{.key = "vikt.optimizer.step"}, VIKT_ERR_FORMAT, "'vikt.optimizer.step' is missing"},
        {{.key = "vikt.optimizer.current_lr", .value = "x"}, VIKT_ERR_FORMAT, "is not a number"},
        {{.key = "vikt.optimizer.state.fc1.weight", .value = "0 exp_avg exp_avg_sq max_exp_avg_sq"},
         VIKT_ERR_FORMAT, "optimizer state of 'fc1.weight': '0 exp_avg"},
        {{.key = "vikt.optimizer.state.fc1.weight", .value = "21 exp_avg exp_avg_sq max_exp_avg_sq"},
         VIKT_ERR_FORMAT, "optimizer state of 'fc1.weight': 21 updates in 20 steps"},
        {{.key = "vikt.optimizer.state.fc1.weight", .value = "20 exp_avg_sq exp_avg max_exp_avg_sq"},
         VIKT_ERR_FORMAT, "is not a step count >= 1 and Adam buffer names"},
        {{.key = "vikt.optimizer.state.fc1.weight", .value = "20 exp_avg exp_avg exp_avg_sq"},
         VIKT_ERR_FORMAT, "is not a step count"},
        {{.key = "vikt.optimizer.state.fc1.weight", .value = "20 exp_avg momentum_buffer"},
         VIKT_ERR_FORMAT, "is not a step count"},
        {{.key = "vikt.optimizer.state.fc1.weight", .value = "20 exp_avg "}, VIKT_ERR_FORMAT,
         "is not a step count"},
        {{.key = "vikt.optimizer.state.fc1.weight", .value = "20 exp_avg"}, VIKT_ERR_FORMAT,
         "'optimizer.exp_avg_sq.fc1.weight' of kind 'optimizer' is in no parameter's"},
        {{.key = "vikt.optimizer.state.ghost", .value = "3"}, VIKT_ERR_FORMAT,
         "optimizer state for 'ghost', which is no parameter"},
        {{.key = "vikt.optimizer.state.bn.running_mean", .value = "3"}, VIKT_ERR_FORMAT,
         "optimizer state for 'bn.running_mean', which is no parameter"},
    };
    fixture f;
    fixture_make(&f, 1);
    char *path = vt_join(f.dir, "edited.ckpt");
    /* An edit that changes nothing loads: the rewriting itself is sound. */
    edit none = {0};
    rewrite(f.path, path, &none);
    vikt_model *m = vt_model(1);
    vikt_optimizer *o = configured(m, &configs[ADAM_AMSGRAD]);
    assert_int_equal(vikt_checkpoint_load(m, o, path), VIKT_OK);
    vikt_optimizer_destroy(o);
    vikt_model_destroy(m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite(f.path, path, &cases[i].e);
        refused(&f, path, cases[i].err, cases[i].needle);
    }
    print_message("%zu edited checkpoints refused\n", sizeof cases / sizeof cases[0]);
    free(path);
    fixture_free(&f);
}

/* VIKT_TEST_QUICK=1 (make check-neon, under qemu) thins the sweeps. */
static int quick(void) { return getenv("VIKT_TEST_QUICK") && *getenv("VIKT_TEST_QUICK") == '1'; }

/* The byte offsets a sweep visits: every one in the length and the header,
 * every 13th in the data (CRC32C catches any flip there; test_safetensors
 * covers that in depth); every 7th and 101st when quick. */
static size_t next_offset(const unsigned char *bytes, size_t i) {
    uint64_t header = 0;
    for (int b = 7; b >= 0; b--) header = header << 8 | bytes[b];
    if (i < 8 + header) return i + (quick() ? 7 : 1);
    return i + (quick() ? 101 : 13);
}

/* A flipped bit (one per visited byte, cycling through the bit positions)
 * is refused and changes nothing, or loads exactly the state that was saved
 * (a bit that does not matter: in "format": "pt", which safetensors defines
 * and vikt does not read, or a hex digit's case). The copy is changed in
 * place: rewriting a file thousands of times is slow on some file systems. */
static void flipped_bits(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f, 1);
    char *path = vt_join(f.dir, "flipped.ckpt"), *orig = vt_join(f.dir, "orig.ckpt");
    assert_int_equal(vikt_checkpoint_save(f.m, f.opt, orig), VIKT_OK);
    vikt_model *src = vt_model(1);
    vikt_optimizer *os = configured(src, &configs[ADAM_AMSGRAD]);
    assert_int_equal(vikt_checkpoint_load(src, os, f.path), VIKT_OK);
    uint32_t saved = fingerprint(src, os);
    size_t n;
    unsigned char *bytes = vt_read_file(f.path, &n);
    vt_write_file(path, bytes, n);
    FILE *file = fopen(path, "r+b");
    assert_non_null(file);
    int64_t refused = 0, harmless = 0;
    for (size_t i = 0; i < n; i = next_offset(bytes, i)) {
        unsigned char flipped = bytes[i] ^ (unsigned char)(1u << (i % 8));
        assert_int_equal(fseek(file, (long)i, SEEK_SET), 0);
        assert_int_equal(fwrite(&flipped, 1, 1, file), 1);
        assert_int_equal(fflush(file), 0);
        int rc = vikt_checkpoint_load(f.m, f.opt, path);
        vikt_model_clear_error(f.m);
        if (rc == VIKT_OK) {
            if (fingerprint(f.m, f.opt) != saved) fail_msg("byte %zu: a flipped bit loaded wrong state", i);
            assert_int_equal(vikt_checkpoint_load(f.m, f.opt, orig), VIKT_OK);
            harmless++;
        } else {
            refused++;
        }
        if (fingerprint(f.m, f.opt) != f.before) fail_msg("byte %zu: refused but changed", i);
        assert_int_equal(fseek(file, (long)i, SEEK_SET), 0);
        assert_int_equal(fwrite(&bytes[i], 1, 1, file), 1);
        assert_int_equal(fflush(file), 0);
    }
    print_message("single-bit flips in a %zu-byte checkpoint: %lld refused, %lld load the same "
                  "state\n", n, (long long)refused, (long long)harmless);
    assert_true(harmless < 40);
    fclose(file);
    free(bytes);
    vikt_optimizer_destroy(os);
    vikt_model_destroy(src);
    free(path), free(orig);
    fixture_free(&f);
}

/* Every truncation is refused and changes nothing (every length within the
 * header, every 13th in the data). The copy is shortened in place. */
static void truncated_files(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f, 1);
    char *path = vt_join(f.dir, "short.ckpt");
    size_t n;
    unsigned char *bytes = vt_read_file(f.path, &n);
    vt_write_file(path, bytes, n);
    size_t lens[16384], count = 0;
    for (size_t len = 0; len < n && count < 16384; len = next_offset(bytes, len)) lens[count++] = len;
    while (count-- > 0) { /* longest first: the file only shrinks */
        size_t len = lens[count];
        assert_int_equal(truncate(path, (off_t)len), 0);
        assert_int_equal(vikt_checkpoint_load(f.m, f.opt, path), VIKT_ERR_FORMAT);
        vikt_model_clear_error(f.m);
        if (fingerprint(f.m, f.opt) != f.before) fail_msg("%zu bytes: refused but changed", len);
    }
    free(bytes);
    free(path);
    fixture_free(&f);
}

/* ---------------------------------------------------- allocation and I/O */

/* Out of memory at every allocation of a load, into a model and optimizer
 * with state of their own and into a new model and optimizer: each failure
 * changes nothing, and the first run that gets through loads it all. */
static void out_of_memory(void **state) {
    (void)state;
    for (int fresh = 0; fresh < 2; fresh++) {
        fixture f;
        fixture_make(&f, 1);
        vikt_model *m = f.m;
        vikt_optimizer *opt = f.opt;
        if (fresh) {
            m = vt_model(3);
            assert_int_equal(vikt_adam_create(m, 0.5f, &opt), VIKT_OK);
        }
        uint32_t before = fingerprint(m, opt);
        int64_t n;
        int rc = VIKT_ERR_NOMEM;
        for (n = 1; rc == VIKT_ERR_NOMEM; n++) {
            vt_alloc_reset();
            vt_stats.fail_at = n;
            rc = vikt_checkpoint_load(m, opt, f.path);
            vt_stats.fail_at = 0;
            if (rc == VIKT_OK) break;
            if (rc != VIKT_ERR_NOMEM) fail_msg("allocation %lld: %d (%s)", (long long)n, rc, vikt_model_errmsg(m));
            vikt_model_clear_error(m);
            if (fingerprint(m, opt) != before) fail_msg("allocation %lld failed but changed", (long long)n);
        }
        assert_int_equal(rc, VIKT_OK);
        print_message("load into a %s model: out of memory at each of %lld allocations\n",
                      fresh ? "new" : "trained", (long long)n - 1);
        vikt_model *src = vt_model(1);
        vikt_optimizer *os = configured(src, &configs[ADAM_AMSGRAD]);
        assert_int_equal(vikt_checkpoint_load(src, os, f.path), VIKT_OK);
        assert_int_equal(fingerprint(m, opt), fingerprint(src, os));
        vikt_optimizer_destroy(os);
        vikt_model_destroy(src);
        if (fresh) vikt_optimizer_destroy(opt), vikt_model_destroy(m);
        fixture_free(&f);
    }
}

/* Out of memory at every allocation of a save, and a fault at every file
 * operation: the previous file stays byte-identical, with no temporary
 * beside it, or (a short transfer) the new one is complete. */
static void failed_saves(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f, 1);
    char *ref = vt_join(f.dir, "../ckpt-new.ref");
    size_t old_n, new_n;
    unsigned char *old_bytes = vt_read_file(f.path, &old_n);
    assert_int_equal(vikt_checkpoint_save(f.m, f.opt, ref), VIKT_OK);
    unsigned char *new_bytes = vt_read_file(ref, &new_n);
    unlink(ref);
    free(ref);
    int rc = VIKT_ERR_NOMEM;
    int64_t n;
    for (n = 1; rc != VIKT_OK; n++) {
        vt_alloc_reset();
        vt_stats.fail_at = n;
        rc = vikt_checkpoint_save(f.m, f.opt, f.path);
        vt_stats.fail_at = 0;
        assert_int_equal(vt_count_entries(f.dir, ""), 1);
        if (rc == VIKT_OK) break;
        assert_int_equal(rc, VIKT_ERR_NOMEM);
        vikt_model_clear_error(f.m);
        size_t k;
        unsigned char *now = vt_read_file(f.path, &k);
        assert_true(k == old_n && memcmp(now, old_bytes, k) == 0);
        free(now);
    }
    print_message("save: out of memory at each of %lld allocations\n", (long long)n - 1);
    static const int kinds[] = {VIKT__FAULT_EIO, VIKT__FAULT_ENOSPC, VIKT__FAULT_SHORT};
    for (int k = 0; k < 3; k++) {
        int64_t ops = 0;
        for (n = 1;; n++) {
            vt_write_file(f.path, old_bytes, old_n);
            assert_true(vikt__io_fault(f.m, kinds[k], n) >= 0);
            rc = vikt_checkpoint_save(f.m, f.opt, f.path);
            ops = vikt__io_fault(f.m, VIKT__FAULT_NONE, 0);
            assert_int_equal(vt_count_entries(f.dir, ""), 1);
            size_t got;
            unsigned char *now = vt_read_file(f.path, &got);
            int is_old = got == old_n && memcmp(now, old_bytes, got) == 0;
            int is_new = got == new_n && memcmp(now, new_bytes, got) == 0;
            free(now);
            if (ops < n || kinds[k] == VIKT__FAULT_SHORT) {
                assert_int_equal(rc, VIKT_OK);
                assert_true(is_new);
                if (ops < n) break;
                continue;
            }
            assert_int_equal(rc, VIKT_ERR_IO);
            const char *msg = vikt_model_errmsg(f.m);
            assert_non_null(strstr(msg, "vikt_checkpoint_save: "));
            assert_non_null(strstr(msg, "mid.ckpt: "));
            if (strstr(msg, "syncing its directory")) assert_true(is_new);
            else if (!is_old) fail_msg("fault at operation %lld: the old file changed (%s)", (long long)n, msg);
            vikt_model_clear_error(f.m);
        }
        assert_true(ops >= 9);
    }
    assert_int_equal(fingerprint(f.m, f.opt), f.before);
    free(old_bytes), free(new_bytes);
    fixture_free(&f);
}

/* An I/O error at every file operation of a load: the optimizer and the
 * generator never change; the parameters change only if the fault hits a
 * read of the copy pass (one per tensor, the last operations), as vikt_load
 * documents. */
static void failed_loads(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f, 1);
    vikt_model *probe = vt_model(1);
    vikt_optimizer *po = configured(probe, &configs[ADAM_AMSGRAD]);
    vikt__io_fault(probe, VIKT__FAULT_NONE, 0);
    assert_int_equal(vikt_checkpoint_load(probe, po, f.path), VIKT_OK);
    int64_t total = vikt__io_fault(probe, VIKT__FAULT_NONE, 0);
    int64_t copies = vikt_load_report_count(probe, VIKT_LOAD_LOADED);
    vikt_optimizer_destroy(po);
    vikt_model_destroy(probe);
    uint32_t opt_before = optimizer_fingerprint(f.m, f.opt);
    for (int64_t n = 1; n <= total; n++) {
        vikt__io_fault(f.m, VIKT__FAULT_EIO, n);
        int rc = vikt_checkpoint_load(f.m, f.opt, f.path);
        vikt__io_fault(f.m, VIKT__FAULT_NONE, 0);
        assert_int_equal(rc, VIKT_ERR_IO);
        vikt_model_clear_error(f.m);
        assert_int_equal(optimizer_fingerprint(f.m, f.opt), opt_before);
        if (n <= total - copies) assert_int_equal(fingerprint(f.m, f.opt), f.before);
    }
    print_message("load: EIO at each of %lld file operations (%lld copy reads)\n", (long long)total,
                  (long long)copies);
    fixture_free(&f);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--probe") == 0) return 0;
    if (argc == 5 && strcmp(argv[1], "--resume") == 0) return resume_child(argv[2], atoi(argv[3]), argv[4]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_resume),
        cmocka_unit_test(resume_needs_generator_and_state),
        cmocka_unit_test(exact_resume_in_a_new_process),
        cmocka_unit_test(weights_from_a_checkpoint),
        cmocka_unit_test(numbers_are_exact),
        cmocka_unit_test(metadata_numbers),
        cmocka_unit_test(files_ignore_the_locale),
        cmocka_unit_test(null_and_foreign_arguments),
        cmocka_unit_test(wrong_rule_or_model),
        cmocka_unit_test(edited_files),
        cmocka_unit_test(flipped_bits),
        cmocka_unit_test(truncated_files),
        cmocka_unit_test(out_of_memory),
        cmocka_unit_test(failed_saves),
        cmocka_unit_test(failed_loads),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}
