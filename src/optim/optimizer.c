/* Optimizers: SGD (momentum, dampening, Nesterov), AdaGrad, RMSProp (momentum,
 * centered), Adam and AdamW (amsgrad), each as torch.optim 1.13's
 * single-tensor implementation; coupled or decoupled weight decay, gradient
 * clipping by value and by global norm, learning-rate schedules, and an
 * option that skips steps with non-finite gradients.
 *
 * Float32 parity: torch computes scalar factors (bias corrections, step
 * sizes, 1 - beta) in double, as Python floats, and casts them to float when
 * a tensor op uses them; each element then goes through the same float ops in
 * the same order (addcdiv is (value·t1)/t2, addcmul (value·t1)·t2, add with
 * alpha a + alpha·b). The rules below do exactly that, one element at a time
 * (in the vector kernels of src/kernels/vec.h, which keep that order).
 *
 * Hyperparameters live in one double array indexed by vikt_optim_param and
 * are validated against one table. Per-parameter state is keyed by the
 * parameter's index in the model's registry; buffers are allocated from the
 * model's allocator when a parameter is first updated (or an option needing
 * one is turned on) and initialized when first used, so a failed allocation
 * changes nothing and a steady-state step allocates nothing. */
#include "../kernels/vec.h"
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { NPARAM = VIKT__OPT_NPARAM, NBUF = VIKT__OPT_NBUF, NKIND = VIKT__OPT_NKIND };
typedef vikt__slot slot;

/* ----------------------------------------------------------- the table */

enum spec_type { REAL, FLAG, COUNT, READONLY };

#define RULE(k) (1u << (k))
#define ANY_RULE (RULE(NKIND) - 1u)
#define ADAMS (RULE(VIKT_OPTIM_ADAM) | RULE(VIKT_OPTIM_ADAMW))
#define SGD_ RULE(VIKT_OPTIM_SGD)
#define ADAGRAD_ RULE(VIKT_OPTIM_ADAGRAD)
#define RMSPROP_ RULE(VIKT_OPTIM_RMSPROP)
#define MAX_COUNT 1e15 /* counts stay exact in a double */

/* A hyperparameter: its name for messages, the rules that use it, its type
 * and its range (REAL values are finite; FLAG and COUNT are whole numbers). */
typedef struct spec {
    const char *name;
    unsigned rules;
    int type;
    double lo, hi;
    int lo_open, hi_open;
} spec;

static const spec specs[NPARAM] = {
    [VIKT_OPT_LR] = {"lr", ANY_RULE, REAL, 0, HUGE_VAL, 0, 1},
    [VIKT_OPT_WEIGHT_DECAY] = {"weight_decay", ANY_RULE, REAL, 0, HUGE_VAL, 0, 1},
    [VIKT_OPT_MOMENTUM] = {"momentum", SGD_ | RMSPROP_, REAL, 0, 1, 0, 1},
    [VIKT_OPT_DAMPENING] = {"dampening", SGD_, REAL, 0, 1, 0, 0},
    [VIKT_OPT_NESTEROV] = {"nesterov", SGD_, FLAG, 0, 1, 0, 0},
    [VIKT_OPT_BETA1] = {"beta1", ADAMS, REAL, 0, 1, 0, 1},
    [VIKT_OPT_BETA2] = {"beta2", ADAMS, REAL, 0, 1, 0, 1},
    [VIKT_OPT_EPS] = {"eps", ADAGRAD_ | RMSPROP_ | ADAMS, REAL, 0, HUGE_VAL, 1, 1},
    [VIKT_OPT_AMSGRAD] = {"amsgrad", ADAMS, FLAG, 0, 1, 0, 0},
    [VIKT_OPT_ALPHA] = {"alpha", RMSPROP_, REAL, 0, 1, 0, 1},
    [VIKT_OPT_CENTERED] = {"centered", RMSPROP_, FLAG, 0, 1, 0, 0},
    [VIKT_OPT_LR_DECAY] = {"lr_decay", ADAGRAD_, REAL, 0, HUGE_VAL, 0, 1},
    [VIKT_OPT_INITIAL_ACCUMULATOR] = {"initial_accumulator", ADAGRAD_, REAL, 0, HUGE_VAL, 0, 1},
    [VIKT_OPT_CLIP_NORM] = {"clip_norm", ANY_RULE, REAL, 0, HUGE_VAL, 0, 1},
    [VIKT_OPT_CLIP_VALUE] = {"clip_value", ANY_RULE, REAL, 0, HUGE_VAL, 0, 1},
    [VIKT_OPT_SKIP_NONFINITE] = {"skip_nonfinite", ANY_RULE, FLAG, 0, 1, 0, 0},
    [VIKT_OPT_SCHEDULE] = {"schedule", ANY_RULE, COUNT, 0, VIKT_SCHEDULE_COSINE, 0, 0},
    [VIKT_OPT_STEP_SIZE] = {"step_size", ANY_RULE, COUNT, 1, MAX_COUNT, 0, 0},
    [VIKT_OPT_GAMMA] = {"gamma", ANY_RULE, REAL, 0, 1, 1, 0},
    [VIKT_OPT_WARMUP_STEPS] = {"warmup_steps", ANY_RULE, COUNT, 0, MAX_COUNT, 0, 0},
    [VIKT_OPT_T_MAX] = {"t_max", ANY_RULE, COUNT, 1, MAX_COUNT, 0, 0},
    [VIKT_OPT_ETA_MIN] = {"eta_min", ANY_RULE, REAL, 0, HUGE_VAL, 0, 1},
    [VIKT_OPT_STEP] = {"step", ANY_RULE, READONLY, 0, 0, 0, 0},
    [VIKT_OPT_CURRENT_LR] = {"current_lr", ANY_RULE, READONLY, 0, 0, 0, 0},
    [VIKT_OPT_SKIPPED_STEPS] = {"skipped_steps", ANY_RULE, READONLY, 0, 0, 0, 0},
};

static const char *const rule_names[NKIND] = {"SGD", "AdaGrad", "RMSProp", "Adam", "AdamW"};

/* ------------------------------------------------- the handle (optim.h) */

/* torch's names of the state buffers (its state dict keys), by rule. */
static const char *const buffer_names[NKIND][NBUF] = {
    [VIKT_OPTIM_SGD] = {"momentum_buffer"},
    [VIKT_OPTIM_ADAGRAD] = {"sum"},
    [VIKT_OPTIM_RMSPROP] = {"square_avg", "momentum_buffer", "grad_avg"},
    [VIKT_OPTIM_ADAM] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    [VIKT_OPTIM_ADAMW] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
};

static int trainable(const vikt_tensor *p) { return p->requires_grad && p->grad; }

/* ------------------------------------------------------------ creation */

static void set_defaults(double *hp, vikt_optim_kind kind, double lr) {
    memset(hp, 0, NPARAM * sizeof *hp);
    hp[VIKT_OPT_LR] = lr;
    hp[VIKT_OPT_WEIGHT_DECAY] = kind == VIKT_OPTIM_ADAMW ? 0.01 : 0.0;
    hp[VIKT_OPT_BETA1] = 0.9;
    hp[VIKT_OPT_BETA2] = 0.999;
    hp[VIKT_OPT_EPS] = kind == VIKT_OPTIM_ADAGRAD ? 1e-10 : 1e-8;
    hp[VIKT_OPT_ALPHA] = 0.99;
    hp[VIKT_OPT_STEP_SIZE] = 1;
    hp[VIKT_OPT_GAMMA] = 0.1;
    hp[VIKT_OPT_T_MAX] = 1;
}

static int create(vikt_model *m, vikt_optim_kind kind, float lr, vikt_optimizer **out,
                  const char *fn) {
    if (!out) return vikt__fail(m, VIKT_ERR_NULL, "%s: out is NULL", fn);
    *out = NULL;
    if (!m) return VIKT_ERR_NULL;
    if ((int)kind < 0 || (int)kind >= NKIND)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: unknown optimizer kind %d", fn, (int)kind);
    if (!(lr >= 0.0f) || !isfinite(lr))
        return vikt__fail(m, VIKT_ERR_ARG, "%s: lr must be finite and >= 0, got %g", fn,
                          (double)lr);
    vikt_optimizer *opt = vikt__alloc(m, sizeof *opt);
    if (!opt) return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", fn);
    memset(opt, 0, sizeof *opt);
    opt->model = m;
    opt->kind = kind;
    set_defaults(opt->hp, kind, lr);
    *out = opt;
    return VIKT_OK;
}

int vikt_optimizer_create(vikt_model *m, vikt_optim_kind kind, float lr, vikt_optimizer **out) {
    return create(m, kind, lr, out, "vikt_optimizer_create");
}

int vikt_sgd_create(vikt_model *m, float lr, vikt_optimizer **out) {
    return create(m, VIKT_OPTIM_SGD, lr, out, "vikt_sgd_create");
}

int vikt_adam_create(vikt_model *m, float lr, vikt_optimizer **out) {
    return create(m, VIKT_OPTIM_ADAM, lr, out, "vikt_adam_create");
}

void vikt__optim_slot_free(vikt_model *m, slot *s) {
    for (int b = 0; b < NBUF; b++) vikt__free(m, s->buf[b], (size_t)s->numel * sizeof(float));
}

void vikt_optimizer_destroy(vikt_optimizer *opt) {
    if (!opt) return;
    vikt_model *m = opt->model;
    for (int64_t k = 0; k < opt->nslots; k++) vikt__optim_slot_free(m, &opt->slots[k]);
    vikt__free(m, opt->slots, (size_t)opt->nslots * sizeof *opt->slots);
    vikt__free(m, opt, sizeof *opt);
}

/* ------------------------------------------------------ set and get */

static int in_range(const spec *s, double v) {
    if (!(s->lo_open ? v > s->lo : v >= s->lo)) return 0; /* NaN fails here */
    if (!(s->hi_open ? v < s->hi : v <= s->hi)) return 0; /* +inf fails here */
    return s->type == REAL || v == floor(v);
}

/* "in [0, 1)", "finite and >= 0", "0 or 1", "a whole number from 1 to 1e+15" … */
static void describe(const spec *s, char *buf, size_t n) {
    if (s->type == FLAG)
        snprintf(buf, n, "0 or 1");
    else if (s->type == COUNT && s->hi == MAX_COUNT)
        snprintf(buf, n, "a whole number from %g to %g", s->lo, s->hi);
    else if (s->type == COUNT)
        snprintf(buf, n, "a whole number in [%g, %g]", s->lo, s->hi);
    else if (s->hi == HUGE_VAL)
        snprintf(buf, n, "finite and %s %g", s->lo_open ? ">" : ">=", s->lo);
    else
        snprintf(buf, n, "in %c%g, %g%c", s->lo_open ? '(' : '[', s->lo, s->hi,
                 s->hi_open ? ')' : ']');
}

/* Settings that are each valid but not together: SGD's Nesterov momentum
 * needs momentum > 0 and dampening 0 (torch checks this at construction).
 * NULL if hp is fine, else what is wrong. */
static const char *bad_combination(int kind, const double *hp) {
    if (kind != VIKT_OPTIM_SGD || hp[VIKT_OPT_NESTEROV] == 0 ||
        (hp[VIKT_OPT_MOMENTUM] > 0 && hp[VIKT_OPT_DAMPENING] == 0))
        return NULL;
    return "Nesterov momentum needs momentum > 0 and dampening 0";
}

static int check_combination(vikt_optimizer *opt, vikt_optim_param param, double value) {
    double hp[NPARAM];
    memcpy(hp, opt->hp, sizeof hp);
    hp[param] = value;
    const char *why = bad_combination(opt->kind, hp);
    if (!why) return VIKT_OK;
    return vikt__fail(opt->model, VIKT_ERR_ARG,
                      "vikt_optimizer_set: %s = %g: %s (would be momentum %g, dampening %g)",
                      specs[param].name, value, why, hp[VIKT_OPT_MOMENTUM],
                      hp[VIKT_OPT_DAMPENING]);
}

int vikt_optimizer_set(vikt_optimizer *opt, vikt_optim_param param, double value) {
    if (!opt) return VIKT_ERR_NULL;
    vikt_model *m = opt->model;
    if ((int)param < 0 || (int)param >= NPARAM)
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_optimizer_set: unknown parameter %d (value %g)",
                          (int)param, value);
    const spec *s = &specs[param];
    if (s->type == READONLY)
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_optimizer_set: %s is read-only (value %g)",
                          s->name, value);
    if (!(s->rules & RULE(opt->kind)))
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_optimizer_set: %s is not used by %s (value %g)",
                          s->name, rule_names[opt->kind], value);
    if (!in_range(s, value)) {
        char range[64];
        describe(s, range, sizeof range);
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_optimizer_set: %s must be %s, got %g", s->name,
                          range, value);
    }
    if (param == VIKT_OPT_INITIAL_ACCUMULATOR && opt->steps > 0)
        return vikt__fail(m, VIKT_ERR_STATE,
                          "vikt_optimizer_set: initial_accumulator = %g: only before the first "
                          "step (%lld taken)",
                          value, (long long)opt->steps);
    int err = check_combination(opt, param, value);
    if (err) return err;
    opt->hp[param] = value;
    return VIKT_OK;
}

/* The learning rate at schedule position t (steps taken). */
static double scheduled_lr(const double *hp, int64_t t) {
    const double lr = hp[VIKT_OPT_LR], pi = 3.14159265358979323846;
    switch ((int)hp[VIKT_OPT_SCHEDULE]) {
    case VIKT_SCHEDULE_STEP:
        return lr * pow(hp[VIKT_OPT_GAMMA], (double)(t / (int64_t)hp[VIKT_OPT_STEP_SIZE]));
    case VIKT_SCHEDULE_EXPONENTIAL:
        return lr * pow(hp[VIKT_OPT_GAMMA], (double)t);
    case VIKT_SCHEDULE_COSINE: {
        double warmup = hp[VIKT_OPT_WARMUP_STEPS], t_max = hp[VIKT_OPT_T_MAX];
        double eta_min = hp[VIKT_OPT_ETA_MIN];
        if ((double)t < warmup) return lr * (double)t / warmup;
        double after = fmin((double)t - warmup, t_max);
        return eta_min + (lr - eta_min) * (1.0 + cos(pi * after / t_max)) / 2.0;
    }
    default:
        return lr;
    }
}

int vikt_optimizer_get(const vikt_optimizer *opt, vikt_optim_param param, double *value) {
    if (!opt) return VIKT_ERR_NULL;
    if (!value) return vikt__fail(opt->model, VIKT_ERR_NULL, "vikt_optimizer_get: value is NULL");
    if ((int)param < 0 || (int)param >= NPARAM)
        return vikt__fail(opt->model, VIKT_ERR_ARG, "vikt_optimizer_get: unknown parameter %d",
                          (int)param);
    switch (param) {
    case VIKT_OPT_STEP: *value = (double)opt->steps; break;
    case VIKT_OPT_CURRENT_LR: *value = scheduled_lr(opt->hp, opt->steps); break;
    case VIKT_OPT_SKIPPED_STEPS: *value = (double)opt->skipped; break;
    default: *value = opt->hp[param]; break;
    }
    return VIKT_OK;
}

/* ------------------------------------------------- checkpoints (optim.h) */

const char *vikt__optim_kind_name(int kind) { return rule_names[kind]; }

const char *vikt__optim_param_name(int param) { return specs[param].name; }

int vikt__optim_param_stored(int kind, int param) {
    return specs[param].type != READONLY && (specs[param].rules & RULE(kind)) != 0;
}

const char *vikt__optim_buffer_name(int kind, int b) { return buffer_names[kind][b]; }

int vikt__optim_check(int kind, const double *hp, char *why, size_t size) {
    for (int i = 0; i < NPARAM; i++) {
        if (!vikt__optim_param_stored(kind, i) || in_range(&specs[i], hp[i])) continue;
        char range[64];
        describe(&specs[i], range, sizeof range);
        snprintf(why, size, "%s must be %s, got %.17g", specs[i].name, range, hp[i]);
        return VIKT_ERR_ARG;
    }
    const char *bad = bad_combination(kind, hp);
    if (bad) snprintf(why, size, "%s (momentum %.17g, dampening %.17g)", bad,
                      hp[VIKT_OPT_MOMENTUM], hp[VIKT_OPT_DAMPENING]);
    return bad ? VIKT_ERR_ARG : VIKT_OK;
}

/* ------------------------------------------------------------ state */

/* The buffers the rule needs with the current settings (bit b: buf[b]). */
static unsigned buffers_needed(const vikt_optimizer *opt) {
    const double *hp = opt->hp;
    switch (opt->kind) {
    case VIKT_OPTIM_SGD: return hp[VIKT_OPT_MOMENTUM] != 0 ? 1u : 0u;
    case VIKT_OPTIM_ADAGRAD: return 1u;
    case VIKT_OPTIM_RMSPROP:
        return 1u | (hp[VIKT_OPT_MOMENTUM] > 0 ? 2u : 0u) | (hp[VIKT_OPT_CENTERED] != 0 ? 4u : 0u);
    default: return 3u | (hp[VIKT_OPT_AMSGRAD] != 0 ? 4u : 0u);
    }
}

/* One slot per registry index; parameters added since the last step get
 * empty slots. */
static int grow_slots(vikt_optimizer *opt) {
    vikt_model *m = opt->model;
    if (opt->nslots >= m->nparams) return VIKT_OK;
    slot *grown = vikt__alloc(m, (size_t)m->nparams * sizeof *grown);
    if (!grown)
        return vikt__fail(m, VIKT_ERR_NOMEM,
                          "vikt_optimizer_step: out of memory for the state of %lld parameters",
                          (long long)m->nparams);
    if (opt->nslots) memcpy(grown, opt->slots, (size_t)opt->nslots * sizeof *grown);
    memset(grown + opt->nslots, 0, (size_t)(m->nparams - opt->nslots) * sizeof *grown);
    vikt__free(m, opt->slots, (size_t)opt->nslots * sizeof *opt->slots);
    opt->slots = grown;
    opt->nslots = m->nparams;
    return VIKT_OK;
}

/* Allocate every missing buffer of every trainable parameter. Buffers are
 * not initialized here, so stopping half way changes nothing observable. */
static int allocate_buffers(vikt_optimizer *opt, unsigned need) {
    vikt_model *m = opt->model;
    for (int64_t k = 0; k < m->nparams; k++) {
        vikt_tensor *p = m->params[k];
        slot *s = &opt->slots[k];
        if (!trainable(p)) continue;
        s->numel = p->numel;
        for (int b = 0; b < NBUF; b++) {
            if (!(need & (1u << b)) || s->buf[b]) continue;
            s->buf[b] = vikt__alloc(m, (size_t)p->numel * sizeof(float));
            if (!s->buf[b])
                return vikt__fail(m, VIKT_ERR_NOMEM,
                                  "vikt_optimizer_step: out of memory for the %s state of '%s' "
                                  "(%lld values)",
                                  rule_names[opt->kind], p->name, (long long)p->numel);
        }
    }
    return VIKT_OK;
}

/* Give buffers used for the first time their starting value: AdaGrad's sum
 * the initial accumulator, everything else zero. SGD's momentum buffer starts
 * as a copy of the first update direction, which sgd_rule writes itself. */
static void initialize_buffers(const vikt_optimizer *opt, slot *s, unsigned need) {
    if (opt->kind == VIKT_OPTIM_SGD) return;
    for (int b = 0; b < NBUF; b++) {
        if (!(need & (1u << b)) || (s->live & (1u << b))) continue;
        float v = opt->kind == VIKT_OPTIM_ADAGRAD ? (float)opt->hp[VIKT_OPT_INITIAL_ACCUMULATOR]
                                                  : 0.0f;
        for (int64_t i = 0; i < s->numel; i++) s->buf[b][i] = v;
        s->live |= 1u << b;
    }
}

/* ------------------------------------------------------------ the rules */

typedef void (*rule_fn)(const vikt_optimizer *opt, vikt_tensor *t, slot *s, double lr);

/* Each rule turns the hyperparameters into the float factors torch uses and
 * hands the per-element loop to the vector kernel of the ISA in use
 * (src/kernels/vec.h); the kernels repeat the scalar reference's float
 * operations in the same order, so every ISA gives the same bits. */

static void sgd_rule(const vikt_optimizer *opt, vikt_tensor *t, slot *s, double lr) {
    const double *hp = opt->hp;
    vikt__optim_args a;
    memset(&a, 0, sizeof a);
    a.decay = hp[VIKT_OPT_WEIGHT_DECAY] != 0;
    a.momentum = hp[VIKT_OPT_MOMENTUM] != 0;
    a.nesterov = hp[VIKT_OPT_NESTEROV] != 0;
    a.fresh = !(s->live & 1u);
    a.wd = (float)hp[VIKT_OPT_WEIGHT_DECAY];
    a.mu = (float)hp[VIKT_OPT_MOMENTUM];
    a.keep = (float)(1.0 - hp[VIKT_OPT_DAMPENING]);
    a.step = (float)-lr;
    vikt__vec_get()->sgd(t->numel, t->data, t->grad, s->buf[0], &a);
    if (a.momentum) s->live |= 1u;
}

static void adagrad_rule(const vikt_optimizer *opt, vikt_tensor *t, slot *s, double lr) {
    const double *hp = opt->hp;
    const double clr = lr / (1.0 + (double)(s->step - 1) * hp[VIKT_OPT_LR_DECAY]);
    vikt__optim_args a;
    memset(&a, 0, sizeof a);
    a.decay = hp[VIKT_OPT_WEIGHT_DECAY] != 0;
    a.wd = (float)hp[VIKT_OPT_WEIGHT_DECAY];
    a.eps = (float)hp[VIKT_OPT_EPS];
    a.step = (float)-clr;
    vikt__vec_get()->adagrad(t->numel, t->data, t->grad, s->buf[0], &a);
}

static void rmsprop_rule(const vikt_optimizer *opt, vikt_tensor *t, slot *s, double lr) {
    const double *hp = opt->hp;
    vikt__optim_args a;
    memset(&a, 0, sizeof a);
    a.decay = hp[VIKT_OPT_WEIGHT_DECAY] != 0;
    a.momentum = hp[VIKT_OPT_MOMENTUM] > 0;
    a.centered = hp[VIKT_OPT_CENTERED] != 0;
    a.wd = (float)hp[VIKT_OPT_WEIGHT_DECAY];
    a.eps = (float)hp[VIKT_OPT_EPS];
    a.alpha = (float)hp[VIKT_OPT_ALPHA];
    a.one_minus_alpha = (float)(1.0 - hp[VIKT_OPT_ALPHA]);
    a.mu = (float)hp[VIKT_OPT_MOMENTUM];
    a.step = (float)-lr;
    vikt__vec_get()->rmsprop(t->numel, t->data, t->grad, s->buf[0], s->buf[1], s->buf[2], &a);
}

/* Adam couples weight decay into the gradient; AdamW shrinks the parameter
 * by (1 − lr·weight_decay) first and leaves the gradient alone. */
static void adam_rule(const vikt_optimizer *opt, vikt_tensor *t, slot *s, double lr) {
    const double *hp = opt->hp;
    const double b1 = hp[VIKT_OPT_BETA1], b2 = hp[VIKT_OPT_BETA2];
    const double step_size = lr / (1.0 - pow(b1, (double)s->step));
    vikt__optim_args a;
    memset(&a, 0, sizeof a);
    a.decoupled = opt->kind == VIKT_OPTIM_ADAMW;
    a.amsgrad = hp[VIKT_OPT_AMSGRAD] != 0;
    a.decay = !a.decoupled && hp[VIKT_OPT_WEIGHT_DECAY] != 0;
    a.bc2_sqrt = (float)sqrt(1.0 - pow(b2, (double)s->step));
    a.wd = (float)hp[VIKT_OPT_WEIGHT_DECAY];
    a.eps = (float)hp[VIKT_OPT_EPS];
    a.shrink = (float)(1.0 - lr * hp[VIKT_OPT_WEIGHT_DECAY]);
    a.beta1 = (float)b1;
    a.one_minus_b1 = (float)(1.0 - b1);
    a.beta2 = (float)b2;
    a.one_minus_b2 = (float)(1.0 - b2);
    a.step = (float)-step_size;
    vikt__vec_get()->adam(t->numel, t->data, t->grad, s->buf[0], s->buf[1], s->buf[2], &a);
}

static const rule_fn rules[NKIND] = {sgd_rule, adagrad_rule, rmsprop_rule, adam_rule,
                                     adam_rule};

/* ------------------------------------------------------------ clipping */

static int grads_finite(const vikt_model *m) {
    for (int64_t k = 0; k < m->nparams; k++) {
        const vikt_tensor *p = m->params[k];
        if (!trainable(p)) continue;
        for (int64_t i = 0; i < p->numel; i++)
            if (!isfinite(p->grad[i])) return 0;
    }
    return 1;
}

/* torch.nn.utils.clip_grad_value_: clamp to [−v, v]; NaN stays NaN. */
static void clip_by_value(vikt_model *m, double value) {
    const float hi = (float)value, lo = -hi;
    for (int64_t k = 0; k < m->nparams; k++) {
        vikt_tensor *p = m->params[k];
        if (!trainable(p)) continue;
        for (int64_t i = 0; i < p->numel; i++) {
            if (p->grad[i] > hi) p->grad[i] = hi;
            else if (p->grad[i] < lo) p->grad[i] = lo;
        }
    }
}

/* torch.nn.utils.clip_grad_norm_: the L2 norm of the per-tensor float norms,
 * coef = max_norm / (total + 1e-6) in float, applied when below 1 (and when
 * NaN, which torch's clamp passes on: a non-finite norm poisons every
 * gradient, as in torch). Sums are in double, then rounded as torch's float
 * results are. */
static void clip_by_norm(vikt_model *m, double max_norm) {
    double total_sq = 0;
    for (int64_t k = 0; k < m->nparams; k++) {
        const vikt_tensor *p = m->params[k];
        if (!trainable(p)) continue;
        double sq = 0;
        for (int64_t i = 0; i < p->numel; i++) sq += (double)p->grad[i] * p->grad[i];
        float norm = (float)sqrt(sq);
        total_sq += (double)norm * norm;
    }
    float coef = (float)max_norm / ((float)sqrt(total_sq) + 1e-6f);
    if (coef >= 1.0f) return;
    for (int64_t k = 0; k < m->nparams; k++) {
        vikt_tensor *p = m->params[k];
        if (!trainable(p)) continue;
        for (int64_t i = 0; i < p->numel; i++) p->grad[i] = p->grad[i] * coef;
    }
}

/* ------------------------------------------------------------ the step */

int vikt_optimizer_step(vikt_optimizer *opt) {
    if (!opt) return VIKT_ERR_NULL;
    vikt_model *m = opt->model;
    if (m->errcode)
        return vikt__fail(m, VIKT_ERR_STATE, "vikt_optimizer_step: the model holds an error");
    if (opt->hp[VIKT_OPT_SKIP_NONFINITE] != 0 && !grads_finite(m)) {
        opt->skipped++;
        return VIKT_OK;
    }
    unsigned need = buffers_needed(opt);
    int err = grow_slots(opt);
    if (!err) err = allocate_buffers(opt, need);
    if (err) return err;

    vikt__prune_mask_grads(m); /* pruned weights: no gradient, no state */
    if (opt->hp[VIKT_OPT_CLIP_VALUE] > 0) clip_by_value(m, opt->hp[VIKT_OPT_CLIP_VALUE]);
    if (opt->hp[VIKT_OPT_CLIP_NORM] > 0) clip_by_norm(m, opt->hp[VIKT_OPT_CLIP_NORM]);
    double lr = scheduled_lr(opt->hp, opt->steps);
    for (int64_t k = 0; k < m->nparams; k++) {
        vikt_tensor *p = m->params[k];
        if (!trainable(p)) continue;
        slot *s = &opt->slots[k];
        s->step++;
        initialize_buffers(opt, s, need);
        rules[opt->kind](opt, p, s, lr);
    }
    vikt__prune_mask_weights(m); /* and exactly 0 despite decay and old state */
    opt->steps++;
    return VIKT_OK;
}
