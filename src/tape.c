/* The tape: ops append records as they run; backward replays them newest
 * first, accumulating gradients. Records, outputs and step gradients all live
 * in the step arena. */
#include "vikt_internal.h"

#include <stdio.h>
#include <string.h>

static int check_inputs(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n) {
    for (int i = 0; i < n; i++) {
        if (!in[i])
            /* An earlier failure usually explains the NULL; keep that message. */
            return vikt__fail(m, VIKT_ERR_NULL, "%s: input %d is NULL", op->name, i);
        if (in[i]->model != m)
            return vikt__fail(m, VIKT_ERR_ARG, "%s: input %d belongs to another model", op->name,
                              i);
    }
    return VIKT_OK;
}

/* ------------------------------------------------------------ anomaly mode */

static int64_t first_nan(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (isnan(x[i])) return i;
    return -1;
}

/* What a tensor is, for messages: "parameter 'fc1.weight'", "the output of
 * vikt_exp" or "a leaf tensor". */
static const char *describe(const vikt_tensor *t, char *buf, size_t size) {
    if (t->storage == VIKT__PARAM || t->storage == VIKT__BUFFER)
        snprintf(buf, size, "%s '%s'", t->storage == VIKT__PARAM ? "parameter" : "buffer",
                 t->name);
    else if (t->op_name)
        snprintf(buf, size, "the output of %s", t->op_name);
    else
        snprintf(buf, size, "a leaf tensor");
    return buf;
}

/* "2x3, 3x4": the shapes of an op's inputs. */
static const char *input_shapes(vikt_tensor *const *in, int n, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < size; i++) {
        char s[VIKT__SHAPE_STR];
        int k = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", vikt__shape_str(in[i], s));
        if (k < 0) break;
        used += (size_t)k;
    }
    return buf;
}

/* Anomaly mode after a forward computation: NaN in the output, or an
 * infinity where every input was finite, fails the op. */
static int anomaly_forward(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                           const vikt_tensor *out) {
    int64_t at = vikt__first_nonfinite(out->data, out->numel);
    if (at < 0) return VIKT_OK;
    char s[VIKT__SHAPE_STR], w[VIKT__WHERE_STR], shapes[128], what[VIKT__NAME_MAX + 16],
            v[VIKT__VALUE_STR];
    int64_t nan_at = first_nan(out->data + at, out->numel - at);
    int nonfinite_input = 0;
    for (int i = 0; i < n; i++) {
        int64_t bad = vikt__first_nonfinite(in[i]->data, in[i]->numel);
        if (bad < 0) continue;
        nonfinite_input = 1;
        int64_t in_nan = first_nan(in[i]->data + bad, in[i]->numel - bad);
        if (nan_at >= 0 && in_nan >= 0)
            return vikt__fail(m, VIKT_ERR_NONFINITE,
                              "anomaly: %s: input %d (%s, %s) holds NaN at %s", op->name, i,
                              describe(in[i], what, sizeof what), vikt__shape_str(in[i], s),
                              vikt__where_str(in[i], bad + in_nan, w));
    }
    if (nan_at < 0 && (nonfinite_input || op->makes_infinities)) return VIKT_OK;
    if (nan_at >= 0) at += nan_at;
    return vikt__fail(m, VIKT_ERR_NONFINITE, "anomaly: %s made %s at %s of its output %s from %s "
                      "inputs (%s)", op->name, vikt__value_str(out->data[at], v), vikt__where_str(out, at, w),
                      vikt__shape_str(out, s), nonfinite_input ? "NaN-free" : "finite",
                      input_shapes(in, n, shapes, sizeof shapes));
}

/* Anomaly mode before backward: a persistent tensor's gradient must not
 * hold NaN or infinity already, or the first op to add to it would be
 * blamed. */
static int anomaly_held_grads(vikt_model *m, const vikt__record *from) {
    for (const vikt__record *r = from; r; r = r->prev)
        for (int i = 0; i < r->n; i++) {
            const vikt_tensor *t = r->in[i];
            int64_t at = t->storage != VIKT__STEP && t->requires_grad && t->grad
                             ? vikt__first_nonfinite(t->grad, t->numel) : -1;
            if (at < 0) continue;
            char s[VIKT__SHAPE_STR], w[VIKT__WHERE_STR], what[VIKT__NAME_MAX + 16],
                v[VIKT__VALUE_STR];
            return vikt__fail(m, VIKT_ERR_NONFINITE,
                              "vikt_backward: anomaly: the gradient of %s (%s) holds %s at %s "
                              "before backward (vikt_zero_grad clears it)",
                              describe(t, what, sizeof what), vikt__shape_str(t, s),
                              vikt__value_str(t->grad[at], v), vikt__where_str(t, at, w));
        }
    return VIKT_OK;
}

/* Anomaly mode after an op's backward: the gradients it wrote. */
static int anomaly_backward(vikt_model *m, const vikt__record *r) {
    for (int i = 0; i < r->n; i++) {
        const vikt_tensor *t = r->in[i];
        int64_t at = t->requires_grad && t->grad ? vikt__first_nonfinite(t->grad, t->numel) : -1;
        if (at < 0) continue;
        char s[VIKT__SHAPE_STR], w[VIKT__WHERE_STR], shapes[128], what[VIKT__NAME_MAX + 16],
            v[VIKT__VALUE_STR];
        return vikt__fail(m, VIKT_ERR_NONFINITE,
                          "vikt_backward: anomaly: the backward of %s made %s at %s of the "
                          "gradient of input %d (%s, %s); inputs %s",
                          r->op->name, vikt__value_str(t->grad[at], v), vikt__where_str(t, at, w), i,
                          describe(t, what, sizeof what), vikt__shape_str(t, s),
                          input_shapes(r->in, r->n, shapes, sizeof shapes));
    }
    return VIKT_OK;
}

vikt_tensor *vikt__apply(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                         const vikt__args *args_in) {
    if (!m) return NULL;
    if (check_inputs(m, op, in, n)) return NULL;
    vikt__args args;
    if (args_in)
        args = *args_in;
    else
        memset(&args, 0, sizeof args);

    int64_t shape[VIKT_MAX_RANK];
    int rank = 0;
    if (op->shape(m, op, in, n, &args, shape, &rank)) return NULL;

    int needs_grad = 0;
    for (int i = 0; i < n; i++) needs_grad |= in[i]->requires_grad;
    needs_grad &= m->grad_enabled;

    vikt_tensor *out = vikt__step_tensor(m, op->name, rank, shape);
    vikt__record *rec = out && needs_grad ? vikt__arena_alloc(m, sizeof *rec) : NULL;
    vikt_tensor **inputs = rec ? vikt__arena_alloc(m, (size_t)n * sizeof *inputs) : NULL;
    if (!out || (needs_grad && !inputs)) {
        vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", op->name);
        return NULL;
    }
    if (op->forward(m, in, n, &args, out)) return NULL;
    out->op_name = op->name;
    if (m->anomaly && anomaly_forward(m, op, in, n, out)) return NULL;
    if (!needs_grad) return out;

    rec->op = op;
    rec->out = out;
    rec->n = n;
    rec->in = inputs;
    for (int i = 0; i < n; i++) inputs[i] = in[i];
    rec->args = args;
    rec->prev = m->tape;
    m->tape = rec;
    out->producer = rec;
    out->requires_grad = 1;
    return out;
}

float *vikt__grad(vikt_tensor *t) {
    if (!t->requires_grad) return NULL;
    if (t->grad) return t->grad;
    size_t bytes = (size_t)t->numel * sizeof(float);
    t->grad = vikt__arena_alloc(t->model, bytes);
    if (!t->grad) {
        char s[VIKT__SHAPE_STR];
        vikt__fail(t->model, VIKT_ERR_NOMEM, "vikt_backward: out of memory for the gradient of %s",
                   vikt__shape_str(t, s));
        return NULL;
    }
    memset(t->grad, 0, bytes);
    return t->grad;
}

/* Step tensors' gradients belong to one backward pass; clear what an earlier
 * pass in this step left, so only persistent tensors accumulate. */
static void clear_step_grads(vikt_model *m) {
    for (vikt__record *r = m->tape; r; r = r->prev) {
        if (r->out->grad) memset(r->out->grad, 0, (size_t)r->out->numel * sizeof(float));
        for (int i = 0; i < r->n; i++) {
            vikt_tensor *t = r->in[i];
            if (t->storage == VIKT__STEP && !t->producer && t->grad)
                memset(t->grad, 0, (size_t)t->numel * sizeof(float));
        }
    }
}

static int on_tape(vikt_model *m, const vikt_tensor *loss) {
    for (vikt__record *r = m->tape; r; r = r->prev)
        if (r->out == loss) return 1;
    return 0;
}

int vikt_backward(vikt_model *m, vikt_tensor *loss) {
    if (!m) return VIKT_ERR_NULL;
    if (!loss) return vikt__fail(m, VIKT_ERR_NULL, "vikt_backward: loss is NULL");
    if (m->errcode)
        return vikt__fail(m, VIKT_ERR_STATE, "vikt_backward: the model holds an error");
    char s[VIKT__SHAPE_STR];
    if (loss->numel != 1)
        return vikt__fail(m, VIKT_ERR_SHAPE, "vikt_backward: loss must have one element, not %s",
                          vikt__shape_str(loss, s));
    if (!loss->producer || !on_tape(m, loss))
        return vikt__fail(m, VIKT_ERR_STATE,
                          "vikt_backward: the loss was not recorded in this step (no input "
                          "requires a gradient, or gradients are disabled)");
    clear_step_grads(m);
    float *seed = vikt__grad(loss);
    if (!seed) return m->errcode;
    seed[0] = 1.0f;
    if (m->anomaly && anomaly_held_grads(m, loss->producer)) return m->errcode;
    for (vikt__record *r = loss->producer; r; r = r->prev) {
        if (!r->out->grad) continue; /* nothing flows back through it */
        int rc = r->op->backward(m, r->in, r->n, &r->args, r->out);
        if (rc) return rc;
        if (m->errcode) return m->errcode;
        if (m->anomaly && anomaly_backward(m, r)) return m->errcode;
    }
    return VIKT_OK;
}
