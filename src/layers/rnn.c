/* Recurrent layers over a batch-first sequence: LSTM and GRU with one layer,
 * as torch.nn.LSTM and torch.nn.GRU define them (gate orders i,f,g,o and
 * r,z,n; parameter names and layouts included).
 *
 * What the tape records, and why:
 *  - the input projection x·W_ihᵀ (+ biases) of all T steps is ONE GEMM on x
 *    seen as [N·T, I]: the only product that does not depend on the
 *    recurrence, so it need not be done step by step;
 *  - each step records h·W_hhᵀ with vikt_matmul_t (its backward gives dh and
 *    dW_hh through the shared GEMM) and fused elementwise ops for the gates,
 *    whose backward is written here. A fused gate op replaces ~15 small
 *    recorded ops (slices, sigmoids, products, sums) per step and keeps the
 *    activations it needs in the arena instead of recomputing them;
 *  - the T hidden states are joined by one vikt_concat into [N, T, H].
 * Every allocation comes from the step arena, so a repeated step of the same
 * shapes allocates nothing.
 *
 * The step ops read the projection xp as [N·T, G·H] (G gates), rows n·T + t,
 * which is [N, T, G·H] in memory. Optional inputs (no h at t = 0 when h0 is
 * NULL, no c when c0 is NULL) are simply absent: zeros need no product. */
#include "../vikt_internal.h"
#include "../kernels/vec.h"

#include <math.h>
#include <string.h>


/* ----------------------------------------------------- step op plumbing */

/* args of a step op: i[0] = t, i[1] = T, i[2] = has h (hp, and h_prev for
 * the GRU), i[3] = has c (LSTM cell). */
enum { ARG_T = 0, ARG_STEPS = 1, ARG_HAS_H = 2, ARG_HAS_C = 3 };

/* The inputs of a step op by role; absent ones are NULL. */
typedef struct step_in {
    vikt_tensor *xp;   /* [N·T, G·H] input projection, always present */
    vikt_tensor *bias; /* GRU: b_hh [3H] */
    vikt_tensor *hp;   /* [N, G·H] h_prev·W_hhᵀ */
    vikt_tensor *prev; /* [N, H] h_prev (GRU) or c_prev (LSTM) */
} step_in;

/* Input order: xp, [bias,] [hp,] [prev]. */
static void step_inputs(vikt_tensor *const *in, const vikt__args *args, int has_bias,
                        int has_prev, step_in *s) {
    int k = 0;
    memset(s, 0, sizeof *s);
    s->xp = in[k++];
    if (has_bias) s->bias = in[k++];
    if (args->i[ARG_HAS_H]) s->hp = in[k++];
    if (has_prev) s->prev = in[k];
}

/* Output [N, H] from xp [N·T, G·H]; checks what the layer already made sure
 * of, so a misuse inside the library fails with a message, not a bad read. */
static int step_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                      const vikt__args *args, int gates, int64_t *shape, int *rank) {
    const vikt_tensor *xp = in[0];
    int64_t t = args->i[ARG_T], steps = args->i[ARG_STEPS];
    char s[VIKT__SHAPE_STR];
    if (xp->rank != 2 || steps < 1 || t < 0 || t >= steps || xp->shape[0] % steps ||
        xp->shape[1] % gates)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: projection %s does not fit step %lld of %lld",
                          op->name, vikt__shape_str(xp, s), (long long)t, (long long)steps);
    shape[0] = xp->shape[0] / steps;
    shape[1] = xp->shape[1] / gates;
    *rank = 2;
    /* Every other input is [N, G·H], [N, H] or [G·H]: check the counts. */
    for (int k = 1; k < n; k++) {
        int64_t c = in[k]->numel;
        if (c != shape[0] * xp->shape[1] && c != shape[0] * shape[1] && c != xp->shape[1])
            return vikt__fail(m, VIKT_ERR_SHAPE, "%s: input %d (%s) does not fit [%lld, %lld]",
                              op->name, k, vikt__shape_str(in[k], s), (long long)shape[0],
                              (long long)shape[1]);
    }
    return VIKT_OK;
}

static int shape_g4(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                    vikt__args *args, int64_t *shape, int *rank) {
    return step_shape(m, op, in, n, args, 4, shape, rank);
}

static int shape_g3(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                    vikt__args *args, int64_t *shape, int *rank) {
    return step_shape(m, op, in, n, args, 3, shape, rank);
}

/* Arena room for the activations a step's backward needs. */
static float *saved_room(vikt_model *m, const char *opname, int64_t count) {
    float *p = vikt__arena_alloc(m, (size_t)count * sizeof(float));
    if (!p) vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for the gate activations", opname);
    return p;
}

/* Row r of xp at step t, and row r of an optional [rows, width] tensor. */
static const float *xp_row(const vikt_tensor *xp, const vikt__args *args, int64_t r) {
    return xp->data + (r * args->i[ARG_STEPS] + args->i[ARG_T]) * xp->shape[1];
}
static float *xp_grad_row(float *g, const vikt_tensor *xp, const vikt__args *args, int64_t r) {
    return g ? g + (r * args->i[ARG_STEPS] + args->i[ARG_T]) * xp->shape[1] : NULL;
}
static const float *row_of(const vikt_tensor *t, int64_t r, int64_t width) {
    return t ? t->data + r * width : NULL;
}
static float *grad_row(float *g, int64_t r, int64_t width) { return g ? g + r * width : NULL; }

/* ------------------------------------------------------------ LSTM cell */

/* c = f⊙c_prev + i⊙g from the i, f, g pre-activations xp + hp; keeps
 * i, f, g (each [N, H]) per row for backward. */
static int lstm_cell_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                         vikt_tensor *out) {
    (void)n;
    step_in s;
    step_inputs(in, args, 0, (int)args->i[ARG_HAS_C], &s);
    int64_t N = out->shape[0], H = out->shape[1];
    float *act = saved_room(m, "vikt_lstm", N * 3 * H);
    if (!act) return m->errcode;
    const vikt__vec *v = vikt__vec_get();
    for (int64_t r = 0; r < N; r++) {
        const float *x = xp_row(s.xp, args, r), *h = row_of(s.hp, r, 4 * H);
        const float *cp = row_of(s.prev, r, H);
        float *a = act + r * 3 * H, *c = out->data + r * H;
        /* i, f, g are the first 3H values of the row: whole-row vector
         * passes instead of a scalar sigmoid/tanh call per value. */
        const float *pre = x;
        if (h) v->binary(VIKT__VEC_ADD, 3 * H, x, 1, h, 1, a), pre = a;
        v->unary(VIKT__VEC_SIGMOID, 2 * H, pre, 0.0f, a);
        v->unary(VIKT__VEC_TANH, H, pre + 2 * H, 0.0f, a + 2 * H);
        const float *i = a, *f = a + H, *g = a + 2 * H;
        if (cp)
            for (int64_t j = 0; j < H; j++) c[j] = f[j] * cp[j] + i[j] * g[j];
        else
            for (int64_t j = 0; j < H; j++) c[j] = i[j] * g[j];
    }
    args->saved = act;
    return VIKT_OK;
}

static int lstm_cell_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                         vikt_tensor *out) {
    (void)n;
    step_in s;
    step_inputs(in, args, 0, (int)args->i[ARG_HAS_C], &s);
    float *gx = vikt__grad(s.xp), *gh = s.hp ? vikt__grad(s.hp) : NULL;
    float *gc = s.prev ? vikt__grad(s.prev) : NULL;
    if (m->errcode) return m->errcode;
    int64_t N = out->shape[0], H = out->shape[1];
    const float *act = args->saved;
    for (int64_t r = 0; r < N; r++) {
        const float *a = act + r * 3 * H, *cp = row_of(s.prev, r, H), *dc = out->grad + r * H;
        float *dx = xp_grad_row(gx, s.xp, args, r), *dh = grad_row(gh, r, 4 * H);
        float *dcp = grad_row(gc, r, H);
        for (int64_t j = 0; j < H; j++) {
            float i = a[j], f = a[H + j], g = a[2 * H + j], d = dc[j];
            float di = d * g * i * (1 - i), dg = d * i * (1 - g * g);
            float df = cp ? d * cp[j] * f * (1 - f) : 0.0f;
            if (dx) dx[j] += di, dx[H + j] += df, dx[2 * H + j] += dg;
            if (dh) dh[j] += di, dh[H + j] += df, dh[2 * H + j] += dg;
            if (dcp) dcp[j] += d * f;
        }
    }
    return VIKT_OK;
}

static const vikt__op lstm_cell_op = {"vikt_lstm (cell)", shape_g4, lstm_cell_fwd, lstm_cell_bwd, 0};

/* ---------------------------------------------------------- LSTM hidden */

/* h = o⊙tanh(c) with o from xp + hp; inputs xp, [hp,] c (always present).
 * Keeps o and tanh(c) for backward. */
static int lstm_hidden_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                           vikt_tensor *out) {
    (void)n;
    step_in s;
    step_inputs(in, args, 0, 1, &s);
    int64_t N = out->shape[0], H = out->shape[1];
    float *act = saved_room(m, "vikt_lstm", N * 2 * H);
    if (!act) return m->errcode;
    const vikt__vec *v = vikt__vec_get();
    for (int64_t r = 0; r < N; r++) {
        const float *x = xp_row(s.xp, args, r) + 3 * H, *h = row_of(s.hp, r, 4 * H);
        const float *c = s.prev->data + r * H;
        float *a = act + r * 2 * H, *y = out->data + r * H;
        const float *pre = x;
        if (h) v->binary(VIKT__VEC_ADD, H, x, 1, h + 3 * H, 1, a), pre = a;
        v->unary(VIKT__VEC_SIGMOID, H, pre, 0.0f, a);
        v->unary(VIKT__VEC_TANH, H, c, 0.0f, a + H);
        v->binary(VIKT__VEC_MUL, H, a, 1, a + H, 1, y);
    }
    args->saved = act;
    return VIKT_OK;
}

static int lstm_hidden_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                           vikt_tensor *out) {
    (void)n;
    step_in s;
    step_inputs(in, args, 0, 1, &s);
    float *gx = vikt__grad(s.xp), *gh = s.hp ? vikt__grad(s.hp) : NULL, *gc = vikt__grad(s.prev);
    if (m->errcode) return m->errcode;
    int64_t N = out->shape[0], H = out->shape[1];
    const float *act = args->saved;
    for (int64_t r = 0; r < N; r++) {
        const float *a = act + r * 2 * H, *dy = out->grad + r * H;
        float *dx = xp_grad_row(gx, s.xp, args, r), *dh = grad_row(gh, r, 4 * H);
        float *dc = grad_row(gc, r, H);
        for (int64_t j = 0; j < H; j++) {
            float o = a[j], tc = a[H + j], d = dy[j];
            float dpo = d * tc * o * (1 - o);
            if (dx) dx[3 * H + j] += dpo;
            if (dh) dh[3 * H + j] += dpo;
            if (dc) dc[j] += d * o * (1 - tc * tc);
        }
    }
    return VIKT_OK;
}

static const vikt__op lstm_hidden_op = {"vikt_lstm (hidden)", shape_g4, lstm_hidden_fwd,
                                        lstm_hidden_bwd, 0};

/* ------------------------------------------------------------- GRU cell */

/* r = σ(x_r + h_r + b_r), z = σ(x_z + h_z + b_z), hn = h_n + b_n,
 * n = tanh(x_n + r⊙hn), h = n + z⊙(h_prev − n) (PyTorch's own form of
 * (1−z)⊙n + z⊙h_prev). Inputs xp, b_hh, [hp, h_prev]. Keeps r, z, n, hn. */
static int gru_cell_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                        vikt_tensor *out) {
    (void)n;
    step_in s;
    step_inputs(in, args, 1, (int)args->i[ARG_HAS_H], &s);
    int64_t N = out->shape[0], H = out->shape[1];
    float *act = saved_room(m, "vikt_gru", N * 4 * H);
    if (!act) return m->errcode;
    const float *b = s.bias->data;
    for (int64_t r = 0; r < N; r++) {
        const float *x = xp_row(s.xp, args, r), *h = row_of(s.hp, r, 3 * H);
        const float *hprev = row_of(s.prev, r, H);
        float *a = act + r * 4 * H, *y = out->data + r * H;
        for (int64_t j = 0; j < H; j++) {
            float hr = b[j], hz = b[H + j], hn = b[2 * H + j];
            if (h) hr += h[j], hz += h[H + j], hn += h[2 * H + j];
            float rg = vikt__sigmoid(x[j] + hr), z = vikt__sigmoid(x[H + j] + hz);
            float ng = vikt__tanh(x[2 * H + j] + rg * hn);
            a[j] = rg, a[H + j] = z, a[2 * H + j] = ng, a[3 * H + j] = hn;
            y[j] = ng + z * ((hprev ? hprev[j] : 0.0f) - ng);
        }
    }
    args->saved = act;
    return VIKT_OK;
}

static int gru_cell_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                        vikt_tensor *out) {
    (void)n;
    step_in s;
    step_inputs(in, args, 1, (int)args->i[ARG_HAS_H], &s);
    float *gx = vikt__grad(s.xp), *gb = vikt__grad(s.bias);
    float *gh = s.hp ? vikt__grad(s.hp) : NULL, *gp = s.prev ? vikt__grad(s.prev) : NULL;
    if (m->errcode) return m->errcode;
    int64_t N = out->shape[0], H = out->shape[1];
    const float *act = args->saved;
    for (int64_t r = 0; r < N; r++) {
        const float *a = act + r * 4 * H, *dy = out->grad + r * H;
        const float *hprev = row_of(s.prev, r, H);
        float *dx = xp_grad_row(gx, s.xp, args, r), *dh = grad_row(gh, r, 3 * H);
        float *dp = grad_row(gp, r, H);
        for (int64_t j = 0; j < H; j++) {
            float rg = a[j], z = a[H + j], ng = a[2 * H + j], hn = a[3 * H + j], d = dy[j];
            float dpz = d * ((hprev ? hprev[j] : 0.0f) - ng) * z * (1 - z);
            float dpn = d * (1 - z) * (1 - ng * ng);
            float dhn = dpn * rg, dpr = dpn * hn * rg * (1 - rg);
            if (dx) dx[j] += dpr, dx[H + j] += dpz, dx[2 * H + j] += dpn;
            if (dh) dh[j] += dpr, dh[H + j] += dpz, dh[2 * H + j] += dhn;
            if (gb) gb[j] += dpr, gb[H + j] += dpz, gb[2 * H + j] += dhn;
            if (dp) dp[j] += d * z;
        }
    }
    return VIKT_OK;
}

static const vikt__op gru_cell_op = {"vikt_gru (cell)", shape_g3, gru_cell_fwd, gru_cell_bwd, 0};

/* ------------------------------------------------------------ the layers */

/* Record one step op on xp, [bias,] [hp,] [prev]. */
static vikt_tensor *step(vikt_model *m, const vikt__op *op, vikt_tensor *xp, vikt_tensor *bias,
                         vikt_tensor *hp, vikt_tensor *prev, int64_t t, int64_t steps,
                         int has_c) {
    vikt_tensor *in[4];
    int k = 0;
    in[k++] = xp;
    if (bias) in[k++] = bias;
    if (hp) in[k++] = hp;
    if (prev) in[k++] = prev;
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[ARG_T] = t;
    args.i[ARG_STEPS] = steps;
    args.i[ARG_HAS_H] = hp != NULL;
    args.i[ARG_HAS_C] = has_c;
    return vikt__apply(m, op, in, k, &args);
}

/* x [N, T, I] with every size >= 1 (T fits vikt_concat's int count), hidden
 * >= 1 (and small enough that G·H cannot overflow), each given state [N, H]. */
static int check_call(vikt_model *m, const char *op, const char *name, vikt_tensor *x,
                      int64_t hidden, vikt_tensor *const *states, const char *const *labels,
                      int nstates) {
    if (vikt__check_layer(m, op, name, x)) return m->errcode;
    char s[VIKT__SHAPE_STR];
    if (x->rank != 3 || x->shape[0] < 1 || x->shape[1] < 1 || x->shape[2] < 1 ||
        x->shape[1] > INT32_MAX)
        return vikt__fail(m, VIKT_ERR_SHAPE,
                          "%s: '%s' needs x as [N, T, I] with N, T, I >= 1, got %s", op, name,
                          vikt__shape_str(x, s));
    if (hidden < 1 || hidden > INT32_MAX)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: '%s' needs hidden in 1..%d, got %lld (x %s)", op,
                          name, INT32_MAX, (long long)hidden, vikt__shape_str(x, s));
    for (int k = 0; k < nstates; k++) {
        const vikt_tensor *st = states[k];
        if (!st) continue;
        if (st->model != m)
            return vikt__fail(m, VIKT_ERR_ARG, "%s: '%s' %s belongs to another model", op, name,
                              labels[k]);
        if (st->rank != 2 || st->shape[0] != x->shape[0] || st->shape[1] != hidden)
            return vikt__fail(m, VIKT_ERR_SHAPE,
                              "%s: '%s' %s is %s, expected %lldx%lld ([N, hidden])", op, name,
                              labels[k], vikt__shape_str(st, s), (long long)x->shape[0],
                              (long long)hidden);
    }
    return VIKT_OK;
}

/* The layer's four parameters, created U(−1/√H, 1/√H) on first use. */
typedef struct rnn_params {
    vikt_tensor *w_ih, *w_hh, *b_ih, *b_hh;
} rnn_params;

/* One parameter; vikt__layer_param reports an existing one of another shape
 * naming this layer call, so a changed input or hidden size is easy to spot. */
static vikt_tensor *rnn_param(vikt_model *m, const char *op, const char *layer,
                              const char *suffix, int rank, const int64_t *shape, float bound) {
    return vikt__layer_param(m, op, layer, suffix, rank, shape, VIKT__FILL_UNIFORM, bound);
}

static int get_params(vikt_model *m, const char *op, const char *name, int64_t in,
                      int64_t hidden, int gates, rnn_params *p) {
    float bound = 1.0f / sqrtf((float)hidden);
    int64_t gh = gates * hidden;
    p->w_ih = rnn_param(m, op, name, "weight_ih_l0", 2, (int64_t[]){gh, in}, bound);
    p->w_hh = p->w_ih ? rnn_param(m, op, name, "weight_hh_l0", 2, (int64_t[]){gh, hidden}, bound)
                      : NULL;
    p->b_ih = p->w_hh ? rnn_param(m, op, name, "bias_ih_l0", 1, (int64_t[]){gh}, bound) : NULL;
    p->b_hh = p->b_ih ? rnn_param(m, op, name, "bias_hh_l0", 1, (int64_t[]){gh}, bound) : NULL;
    return p->b_hh ? VIKT_OK : m->errcode;
}

/* x·W_ihᵀ + bias for all steps at once: [N·T, G·H], by the dense layer's op
 * (the bias is the product's starting value, not a broadcast add). */
static vikt_tensor *input_projection(vikt_model *m, vikt_tensor *x, vikt_tensor *w_ih,
                                     vikt_tensor *bias) {
    vikt_tensor *rows = vikt_reshape(m, x, 2, (int64_t[]){x->shape[0] * x->shape[1], x->shape[2]});
    return vikt__linear(m, rows, w_ih, bias);
}

/* The T hidden states [N, H] side by side are [N, T·H], i.e. [N, T, H]. */
static vikt_tensor *join_steps(vikt_model *m, vikt_tensor *const *hs, int64_t steps,
                               int64_t batch, int64_t hidden) {
    return vikt_reshape(m, vikt_concat(m, (int)steps, hs, 1), 3,
                        (int64_t[]){batch, steps, hidden});
}

static vikt_tensor **step_list(vikt_model *m, const char *op, int64_t steps) {
    vikt_tensor **hs = vikt__arena_alloc(m, (size_t)steps * sizeof *hs);
    if (!hs)
        vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for %lld steps", op, (long long)steps);
    return hs;
}

vikt_tensor *vikt_lstm(vikt_model *m, const char *name, vikt_tensor *x, int64_t hidden,
                       vikt_tensor *h0, vikt_tensor *c0, vikt_tensor **h_n, vikt_tensor **c_n) {
    static const char op[] = "vikt_lstm";
    if (h_n) *h_n = NULL;
    if (c_n) *c_n = NULL;
    if (!m) return NULL;
    vikt_tensor *states[2] = {h0, c0};
    static const char *const labels[2] = {"h0", "c0"};
    rnn_params p;
    if (check_call(m, op, name, x, hidden, states, labels, 2) ||
        get_params(m, op, name, x->shape[2], hidden, 4, &p))
        return NULL;
    int64_t steps = x->shape[1];
    /* PyTorch adds both biases to every gate, so they join the projection. */
    vikt_tensor *xp = input_projection(m, x, p.w_ih, vikt_add(m, p.b_ih, p.b_hh));
    vikt_tensor **hs = step_list(m, op, steps);
    if (!xp || !hs) return NULL;
    vikt_tensor *h = h0, *c = c0;
    for (int64_t t = 0; t < steps; t++) {
        vikt_tensor *hp = h ? vikt_matmul_t(m, h, p.w_hh, 0, 1) : NULL;
        if (h && !hp) return NULL;
        c = step(m, &lstm_cell_op, xp, NULL, hp, c, t, steps, c != NULL);
        h = c ? step(m, &lstm_hidden_op, xp, NULL, hp, c, t, steps, 1) : NULL;
        if (!h) return NULL;
        hs[t] = h;
    }
    vikt_tensor *y = join_steps(m, hs, steps, x->shape[0], hidden);
    if (y && h_n) *h_n = h;
    if (y && c_n) *c_n = c;
    return y;
}

vikt_tensor *vikt_gru(vikt_model *m, const char *name, vikt_tensor *x, int64_t hidden,
                      vikt_tensor *h0, vikt_tensor **h_n) {
    static const char op[] = "vikt_gru";
    if (h_n) *h_n = NULL;
    if (!m) return NULL;
    static const char *const labels[1] = {"h0"};
    rnn_params p;
    if (check_call(m, op, name, x, hidden, &h0, labels, 1) ||
        get_params(m, op, name, x->shape[2], hidden, 3, &p))
        return NULL;
    int64_t steps = x->shape[1];
    /* b_hh stays in the step: its n part is scaled by r. */
    vikt_tensor *xp = input_projection(m, x, p.w_ih, p.b_ih);
    vikt_tensor **hs = step_list(m, op, steps);
    if (!xp || !hs) return NULL;
    vikt_tensor *h = h0;
    for (int64_t t = 0; t < steps; t++) {
        vikt_tensor *hp = h ? vikt_matmul_t(m, h, p.w_hh, 0, 1) : NULL;
        if (h && !hp) return NULL;
        h = step(m, &gru_cell_op, xp, p.b_hh, hp, h, t, steps, 0);
        if (!h) return NULL;
        hs[t] = h;
    }
    vikt_tensor *y = join_steps(m, hs, steps, x->shape[0], hidden);
    if (y && h_n) *h_n = h;
    return y;
}
