/* The tape: ops append records as they run; backward replays them newest
 * first, accumulating gradients. Records, outputs and step gradients all live
 * in the step arena. */
#include "vikt_internal.h"

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
    for (vikt__record *r = loss->producer; r; r = r->prev) {
        if (!r->out->grad) continue; /* nothing flows back through it */
        int rc = r->op->backward(m, r->in, r->n, &r->args, r->out);
        if (rc) return rc;
        if (m->errcode) return m->errcode;
    }
    return VIKT_OK;
}
