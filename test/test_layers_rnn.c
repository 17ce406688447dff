/* The recurrent layers vikt_lstm and vikt_gru: PyTorch parity (outputs, final
 * states and every gradient), finite-difference gradient checks w.r.t. x, the
 * initial states and all four parameters, parameter creation and reuse,
 * carrying state across calls, no-grad mode, errors, steady-state
 * allocations and out-of-memory. Fixtures come from
 * tools/gen_layer_fixtures_rnn.py. */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/layers_rnn.h"

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

static float projection(int64_t i) { return (float)(0.5 + 0.5 * sin(0.91 * (double)i + 0.3)); }

static void expect_close(const char *label, const char *what, const float *got, const float *want,
                         int64_t n, float atol, float rtol) {
    assert_non_null(got);
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= atol + rtol * fabsf(want[i])))
            fail_msg("%s %s[%lld]: got %.8g, PyTorch %.8g", label, what, (long long)i,
                     (double)got[i], (double)want[i]);
}

/* What the loss sees: y as [N, T·H], then h_n (and c_n) when asked. */
static vikt_tensor *loss_view(vikt_model *m, vikt_tensor *y, vikt_tensor *h_n, vikt_tensor *c_n,
                              int with_states) {
    if (!with_states) return y;
    int64_t N = vikt_tensor_dim(y, 0), TH = vikt_tensor_dim(y, 1) * vikt_tensor_dim(y, 2);
    vikt_tensor *flat = vikt_reshape(m, y, 2, SHAPE(N, TH));
    vikt_tensor *parts[3] = {flat, h_n, c_n};
    return vikt_concat(m, c_n ? 3 : 2, parts, 1);
}

/* ------------------------------------------------------------- parity */

static vikt_tensor *param_from(vikt_model *m, const char *layer, const char *suffix, int rank,
                               const int64_t *shape, const float *data) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", layer, suffix);
    vikt_tensor *p = vikt_param(m, name, rank, shape, VIKT_INIT_ZEROS);
    assert_non_null(p);
    assert_int_equal(vikt_tensor_copy_in(p, data, vikt_tensor_numel(p)), VIKT_OK);
    return p;
}

static vikt_tensor *state_from(vikt_model *m, const float *data, int64_t N, int64_t H) {
    if (!data) return NULL;
    vikt_tensor *t;
    assert_int_equal(vikt_tensor_create(m, 2, SHAPE(N, H), data, 1, &t), VIKT_OK);
    return t;
}

/* rtol 1e-4 / atol 1e-5 throughout: float32 against PyTorch's float32. */
static void parity(const rnn_fixture *f) {
    vikt_model *m = vt_model(1);
    int64_t N = f->N, T = f->T, I = f->I, H = f->H, G = f->lstm ? 4 : 3;
    vikt_tensor *p[4] = {param_from(m, "rnn", "weight_ih_l0", 2, SHAPE(G * H, I), f->w_ih),
                         param_from(m, "rnn", "weight_hh_l0", 2, SHAPE(G * H, H), f->w_hh),
                         param_from(m, "rnn", "bias_ih_l0", 1, SHAPE(G * H), f->b_ih),
                         param_from(m, "rnn", "bias_hh_l0", 1, SHAPE(G * H), f->b_hh)};
    vikt_tensor *x;
    assert_int_equal(vikt_tensor_create(m, 3, SHAPE(N, T, I), f->x, 1, &x), VIKT_OK);
    vikt_tensor *h0 = state_from(m, f->h0, N, H), *c0 = state_from(m, f->c0, N, H);
    vikt_tensor *h_n = NULL, *c_n = NULL;
    vikt_tensor *y = f->lstm ? vikt_lstm(m, "rnn", x, H, h0, c0, &h_n, &c_n)
                             : vikt_gru(m, "rnn", x, H, h0, &h_n);
    if (!y) fail_msg("%s: %s", f->name, vikt_model_errmsg(m));
    assert_int_equal(vikt_param_count(m), 4); /* the loaded ones, none new */
    vikt_tensor *out = loss_view(m, y, h_n, c_n, f->with_state);
    int64_t n = vikt_tensor_numel(out), shape[4];
    float *r = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) r[i] = projection(i);
    int rank = vikt_tensor_shape(out, shape);
    vikt_tensor *loss = vikt_sum(m, vikt_mul(m, out, vikt_input(m, rank, shape, r)));
    free(r);
    assert_int_equal(vikt_backward(m, loss), VIKT_OK);

    const float at = 1e-5f, rt = 1e-4f;
    expect_close(f->name, "y", vikt_tensor_data(y), f->y, N * T * H, at, rt);
    expect_close(f->name, "h_n", vikt_tensor_data(h_n), f->h_n, N * H, at, rt);
    if (f->lstm) expect_close(f->name, "c_n", vikt_tensor_data(c_n), f->c_n, N * H, at, rt);
    expect_close(f->name, "dx", vikt_tensor_grad(x), f->dx, N * T * I, at, rt);
    if (h0) expect_close(f->name, "dh0", vikt_tensor_grad(h0), f->dh0, N * H, at, rt);
    if (c0) expect_close(f->name, "dc0", vikt_tensor_grad(c0), f->dc0, N * H, at, rt);
    const float *dp[4] = {f->dw_ih, f->dw_hh, f->db_ih, f->db_hh};
    static const char *const names[4] = {"dW_ih", "dW_hh", "db_ih", "db_hh"};
    for (int k = 0; k < 4; k++)
        expect_close(f->name, names[k], vikt_tensor_grad(p[k]), dp[k], vikt_tensor_numel(p[k]), at,
                     rt);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

static void lstm_matches_pytorch(void **state) {
    (void)state;
    int count = 0;
    for (size_t i = 0; i < sizeof rnn_fixtures / sizeof rnn_fixtures[0]; i++)
        if (rnn_fixtures[i].lstm) parity(&rnn_fixtures[i]), count++;
    assert_int_equal(count, 4);
}

static void gru_matches_pytorch(void **state) {
    (void)state;
    int count = 0;
    for (size_t i = 0; i < sizeof rnn_fixtures / sizeof rnn_fixtures[0]; i++)
        if (!rnn_fixtures[i].lstm) parity(&rnn_fixtures[i]), count++;
    assert_int_equal(count, 4);
}

/* ------------------------------------------------- gradient checks */

/* The gradcheck inputs in this order: x, W_ih, W_hh, b_ih, b_hh, then the
 * given states (h0, then c0). */
typedef struct gc_case {
    int lstm;
    int64_t N, T, I, H;
    int has_h0, has_c0;
} gc_case;

static vikt_tensor *build_rnn(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    const gc_case *c = ctx;
    int k = 5;
    vikt_tensor *h0 = c->has_h0 ? in[k++] : NULL, *c0 = c->has_c0 ? in[k] : NULL;
    vikt_tensor *h_n, *c_n = NULL;
    vikt_tensor *y = c->lstm ? vikt_lstm(m, "rnn", in[0], c->H, h0, c0, &h_n, &c_n)
                             : vikt_gru(m, "rnn", in[0], c->H, h0, &h_n);
    if (!y) return NULL;
    return loss_view(m, y, h_n, c_n, 1);
}

/* Parameters in [-0.6, 0.6] (wider than the default init, so gates leave
 * their linear range), inputs in [-1, 1], states in [-0.8, 0.8]. requires
 * selects which inputs are checked (bit k for input k). */
static void check_case(const char *what, gc_case c, unsigned requires) {
    int64_t G = c.lstm ? 4 : 3, GH = G * c.H;
    int64_t sizes[7] = {c.N * c.T * c.I, GH * c.I, GH * c.H, GH, GH, c.N * c.H, c.N * c.H};
    float *data[7];
    for (int k = 0; k < 7; k++) {
        data[k] = malloc((size_t)sizes[k] * sizeof(float));
        float lim = k == 0 ? 1.0f : k < 5 ? 0.6f : 0.8f;
        vt_fill(data[k], sizes[k], 40u + (unsigned)k, -lim, lim);
    }
    vt_grad_input in[7] = {
        {3, {c.N, c.T, c.I}, data[0], (requires >> 0) & 1, NULL},
        {2, {GH, c.I}, data[1], (requires >> 1) & 1, "rnn.weight_ih_l0"},
        {2, {GH, c.H}, data[2], (requires >> 2) & 1, "rnn.weight_hh_l0"},
        {1, {GH}, data[3], (requires >> 3) & 1, "rnn.bias_ih_l0"},
        {1, {GH}, data[4], (requires >> 4) & 1, "rnn.bias_hh_l0"},
    };
    int n = 5;
    if (c.has_h0) in[n] = (vt_grad_input){2, {c.N, c.H}, data[5], (requires >> n) & 1, NULL}, n++;
    if (c.has_c0) in[n] = (vt_grad_input){2, {c.N, c.H}, data[6], (requires >> n) & 1, NULL}, n++;
    vt_gradcheck(what, n, in, build_rnn, &c, 1e-4, 1e-2);
    for (int k = 0; k < 7; k++) free(data[k]);
}

#define ALL 0x7fu

static void lstm_gradients(void **state) {
    (void)state;
    check_case("lstm h0 c0", (gc_case){1, 2, 3, 3, 4, 1, 1}, ALL);
    check_case("lstm zeros", (gc_case){1, 3, 4, 2, 3, 0, 0}, ALL);
    check_case("lstm h0 only", (gc_case){1, 2, 3, 1, 2, 1, 0}, ALL);
    check_case("lstm c0 only", (gc_case){1, 1, 2, 3, 5, 0, 1}, ALL);
    /* Frozen parameters and a constant x: the gradient reaches h0 and c0 only. */
    check_case("lstm states only", (gc_case){1, 2, 3, 3, 4, 1, 1}, 0x60u);
}

static void gru_gradients(void **state) {
    (void)state;
    check_case("gru h0", (gc_case){0, 2, 3, 3, 4, 1, 0}, ALL);
    check_case("gru zeros", (gc_case){0, 3, 4, 2, 3, 0, 0}, ALL);
    check_case("gru one step", (gc_case){0, 1, 1, 5, 2, 1, 0}, ALL);
    check_case("gru h0 only", (gc_case){0, 2, 3, 3, 4, 1, 0}, 0x20u);
}

/* ------------------------------------------ parameters, state, modes */

static void check_param(vikt_model *m, const char *name, int64_t d0, int64_t d1, float bound) {
    vikt_tensor *p = vikt_param_find(m, name);
    if (!p) fail_msg("no parameter %s", name);
    assert_int_equal(vikt_tensor_rank(p), d1 ? 2 : 1);
    assert_int_equal(vikt_tensor_dim(p, 0), d0);
    if (d1) assert_int_equal(vikt_tensor_dim(p, 1), d1);
    float mx = 0;
    for (int64_t i = 0; i < vikt_tensor_numel(p); i++)
        mx = fmaxf(mx, fabsf(vikt_tensor_data(p)[i]));
    /* U(-1/√H, 1/√H): the largest of >= 48 draws is near the bound. */
    if (!(mx <= bound && mx > 0.8f * bound))
        fail_msg("%s: max |value| %g for the bound %g", name, (double)mx, (double)bound);
    assert_true(vikt_tensor_requires_grad(p));
}

static void creates_pytorch_parameters_then_reuses(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    vikt_tensor *x = vikt_ones(m, 3, SHAPE(2, 3, 10));
    vikt_tensor *y1 = vikt_lstm(m, "enc", x, 64, NULL, NULL, NULL, NULL);
    assert_non_null(y1);
    assert_int_equal(vikt_tensor_rank(y1), 3);
    assert_int_equal(vikt_tensor_dim(y1, 1), 3);
    assert_int_equal(vikt_tensor_dim(y1, 2), 64);
    static const char *const order[4] = {"enc.weight_ih_l0", "enc.weight_hh_l0", "enc.bias_ih_l0",
                                         "enc.bias_hh_l0"};
    for (int k = 0; k < 4; k++)
        assert_string_equal(vikt_tensor_name(vikt_param_at(m, k)), order[k]);
    check_param(m, "enc.weight_ih_l0", 256, 10, 0.125f);
    check_param(m, "enc.weight_hh_l0", 256, 64, 0.125f);
    check_param(m, "enc.bias_ih_l0", 256, 0, 0.125f);
    check_param(m, "enc.bias_hh_l0", 256, 0, 0.125f);
    vikt_tensor *y2 = vikt_lstm(m, "enc", x, 64, NULL, NULL, NULL, NULL);
    assert_memory_equal(vikt_tensor_data(y1), vikt_tensor_data(y2), 2 * 3 * 64 * sizeof(float));

    assert_non_null(vikt_gru(m, "dec", x, 16, NULL, NULL));
    check_param(m, "dec.weight_ih_l0", 48, 10, 0.25f);
    check_param(m, "dec.weight_hh_l0", 48, 16, 0.25f);
    check_param(m, "dec.bias_ih_l0", 48, 0, 0.25f);
    check_param(m, "dec.bias_hh_l0", 48, 0, 0.25f);
    assert_int_equal(vikt_param_count(m), 8);
    assert_int_equal(vikt_model_num_params(m), 4 * 64 * (10 + 64 + 2) + 3 * 16 * (10 + 16 + 2));

    /* A parameter made beforehand is used as it is: zero recurrent weights
     * and biases with W_ih = 1 make every step see only x. */
    vikt_param(m, "z.weight_ih_l0", 2, SHAPE(3, 10), VIKT_INIT_ONES);
    vikt_param(m, "z.weight_hh_l0", 2, SHAPE(3, 1), VIKT_INIT_ZEROS);
    vikt_param(m, "z.bias_ih_l0", 1, SHAPE(3), VIKT_INIT_ZEROS);
    vikt_param(m, "z.bias_hh_l0", 1, SHAPE(3), VIKT_INIT_ZEROS);
    vikt_tensor *yz = vikt_gru(m, "z", x, 1, NULL, NULL);
    assert_non_null(yz);
    /* r = z = σ(10), n = tanh(10); h1 = (1−z)·n, h2 = n + z·(h1 − n) … */
    double z = 1 / (1 + exp(-10.0)), nn = tanh(10.0), h = 0;
    for (int t = 0; t < 3; t++) {
        h = nn + z * (h - nn);
        assert_float_equal(vikt_tensor_data(yz)[t], h, 1e-6);
    }
    vikt_model_destroy(m);
}

/* h_n / c_n are the last step, and feeding them back one step at a time
 * gives what the whole sequence gives. */
static void carries_state_across_calls(void **state) {
    (void)state;
    vikt_model *m = vt_model(6);
    enum { N = 3, T = 5, I = 4, H = 7 };
    float xs[N * T * I];
    vt_fill(xs, N * T * I, 3, -2, 2);
    for (int lstm = 0; lstm <= 1; lstm++) {
        vikt_step_begin(m);
        vikt_tensor *x = vikt_input(m, 3, SHAPE(N, T, I), xs);
        vikt_tensor *h_n, *c_n = NULL;
        vikt_tensor *y = lstm ? vikt_lstm(m, "l", x, H, NULL, NULL, &h_n, &c_n)
                              : vikt_gru(m, "g", x, H, NULL, &h_n);
        assert_non_null(y);
        for (int b = 0; b < N; b++)
            assert_memory_equal(vikt_tensor_data(h_n) + b * H,
                                vikt_tensor_data(y) + (b * T + T - 1) * H, H * sizeof(float));
        vikt_tensor *h = NULL, *c = NULL;
        for (int t = 0; t < T; t++) {
            vikt_tensor *xt = vikt_slice(m, x, 1, t, 1);
            vikt_tensor *yt = lstm ? vikt_lstm(m, "l", xt, H, h, c, &h, &c)
                                   : vikt_gru(m, "g", xt, H, h, &h);
            assert_non_null(yt);
            for (int b = 0; b < N; b++)
                for (int j = 0; j < H; j++)
                    assert_float_equal(vikt_tensor_data(yt)[b * H + j],
                                       vikt_tensor_data(y)[(b * T + t) * H + j], 1e-6);
        }
        for (int i = 0; i < N * H; i++) {
            assert_float_equal(vikt_tensor_data(h)[i], vikt_tensor_data(h_n)[i], 1e-6);
            if (lstm) assert_float_equal(vikt_tensor_data(c)[i], vikt_tensor_data(c_n)[i], 1e-6);
        }
    }
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* With recording off the layers give the same values and record nothing. */
static void no_grad_mode(void **state) {
    (void)state;
    vikt_model *m = vt_model(8);
    enum { N = 2, T = 4, I = 3, H = 5 };
    float xs[N * T * I], ys[2][N * T * H];
    vt_fill(xs, N * T * I, 4, -1, 1);
    for (int lstm = 0; lstm <= 1; lstm++) {
        for (int on = 1; on >= 0; on--) {
            vikt_set_grad_enabled(m, on);
            vikt_step_begin(m);
            vikt_tensor *x = vikt_input(m, 3, SHAPE(N, T, I), xs);
            vikt_tensor *h_n;
            vikt_tensor *y = lstm ? vikt_lstm(m, "l", x, H, NULL, NULL, &h_n, NULL)
                                  : vikt_gru(m, "g", x, H, NULL, &h_n);
            assert_non_null(y);
            assert_non_null(h_n);
            assert_int_equal(vikt_tensor_requires_grad(y), on);
            vikt_tensor_copy_out(y, ys[on], N * T * H);
        }
        assert_memory_equal(ys[0], ys[1], sizeof ys[0]);
    }
    vikt_set_grad_enabled(m, 1);
    vikt_model_destroy(m);
}

/* ----------------------------------------------------------------- errors */

static void errors_name_layer_and_shapes(void **state) {
    (void)state;
    vikt_model *m = vt_model(4);
    vikt_tensor *x = vikt_ones(m, 3, SHAPE(2, 3, 4));
    vikt_tensor *h_n = (vikt_tensor *)&h_n, *c_n = (vikt_tensor *)&c_n;

    /* Arguments. */
    assert_null(vikt_lstm(NULL, "l", x, 5, NULL, NULL, &h_n, &c_n));
    assert_null(h_n);
    assert_null(c_n);
    assert_null(vikt_gru(NULL, "g", x, 5, NULL, NULL));
    assert_null(vikt_lstm(m, "l", NULL, 5, NULL, NULL, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_lstm", NULL);
    assert_null(vikt_gru(m, "", x, 5, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gru", "name");
    assert_null(vikt_lstm(m, NULL, x, 5, NULL, NULL, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_lstm", "name");

    /* x not rank 3, or empty. */
    assert_null(vikt_lstm(m, "l", vikt_ones(m, 2, SHAPE(3, 4)), 5, NULL, NULL, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_lstm", "3x4");
    assert_null(vikt_gru(m, "g", vikt_ones(m, 4, SHAPE(1, 2, 3, 4)), 5, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_gru", "1x2x3x4");
    assert_null(vikt_gru(m, "g", vikt_zeros(m, 3, SHAPE(2, 0, 4)), 5, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_gru", "2x0x4");

    /* hidden < 1. */
    assert_null(vikt_lstm(m, "l", x, 0, NULL, NULL, &h_n, NULL));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_lstm", "hidden");
    assert_null(vikt_gru(m, "g", x, -3, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gru", "-3");
    assert_null(vikt_gru(m, "g", x, (int64_t)1 << 62, NULL, NULL)); /* 3·H would overflow */
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_gru", "hidden");

    /* States of the wrong shape or model. */
    vikt_tensor *bad = vikt_ones(m, 2, SHAPE(3, 5)), *ok = vikt_ones(m, 2, SHAPE(2, 5));
    assert_null(vikt_lstm(m, "l", x, 5, bad, ok, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "h0", "3x5");
    assert_null(vikt_lstm(m, "l", x, 5, ok, vikt_ones(m, 1, SHAPE(10)), NULL, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "c0", "2x5");
    assert_null(vikt_gru(m, "g", x, 5, vikt_ones(m, 2, SHAPE(2, 6)), NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_gru", "h0 is 2x6");
    vikt_model *other = vt_model(4);
    assert_null(vikt_gru(m, "g", x, 5, vikt_ones(other, 2, SHAPE(2, 5)), NULL));
    vt_expect_error(m, VIKT_ERR_ARG, "h0", "another model");
    vikt_model_destroy(other);
    assert_int_equal(vikt_param_count(m), 0); /* nothing was created by a failed call */

    /* Input or hidden size changed between calls for the same layer name. */
    assert_non_null(vikt_lstm(m, "l", x, 5, ok, ok, NULL, NULL));
    assert_non_null(vikt_gru(m, "g", x, 5, ok, NULL));
    vikt_tensor *x7 = vikt_ones(m, 3, SHAPE(2, 3, 7));
    assert_null(vikt_lstm(m, "l", x7, 5, NULL, NULL, &h_n, &c_n));
    vt_expect_error(m, VIKT_ERR_SHAPE, "l.weight_ih_l0", "exists as 20x4, this call needs 20x7");
    assert_null(h_n);
    assert_null(vikt_gru(m, "g", x7, 5, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_gru", "g.weight_ih_l0");
    assert_null(vikt_gru(m, "g", x, 6, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_gru", "exists as 15x4, this call needs 18x4");
    /* A name used by another layer kind with other shapes. */
    assert_null(vikt_gru(m, "l", x, 5, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "l.weight_ih_l0", "20x4");
    assert_int_equal(vikt_param_count(m), 8);

    /* A NULL from an earlier failure propagates with its own message. */
    assert_null(vikt_lstm(m, "l", vikt_reshape(m, x, 1, SHAPE(5)), 5, NULL, NULL, NULL, NULL));
    vt_expect_error(m, VIKT_ERR_SHAPE, "vikt_reshape", NULL);
    vikt_model_destroy(m);
}

/* ---------------------------------------- allocations and out of memory */

/* A training step of an LSTM, a GRU and a head: nothing allocated after the
 * first step (the arena keeps its chunks, the optimizer its state). */
static void steady_state_allocates_nothing(void **state) {
    (void)state;
    vikt_model *m = vt_model(4);
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(m, 0.01f, &opt), VIKT_OK);
    enum { N = 4, T = 6, I = 5, H = 8 };
    float xs[N * T * I], target[N];
    vt_fill(xs, N * T * I, 9, -1, 1);
    vt_fill(target, N, 10, -1, 1);
    int64_t calls = 0;
    for (int step = 0; step < 4; step++) {
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *x = vikt_input(m, 3, SHAPE(N, T, I), xs);
        vikt_tensor *h0 = vikt_input(m, 2, SHAPE(N, H), xs);
        vikt_tensor *h_n, *c_n;
        vikt_tensor *y = vikt_lstm(m, "enc", x, H, h0, NULL, &h_n, &c_n);
        vikt_tensor *z = vikt_gru(m, "dec", y, H, c_n, NULL);
        vikt_tensor *last = vikt_reshape(m, vikt_slice(m, z, 1, T - 1, 1), 2, SHAPE(N, H));
        vikt_tensor *pred = vikt_dense(m, "head", vikt_add(m, last, h_n), 1);
        vikt_tensor *loss = vikt_mse_loss(m, pred, vikt_input(m, 2, SHAPE(N, 1), target));
        assert_int_equal(vikt_backward(m, loss), VIKT_OK);
        assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
        if (step == 0) calls = vt_stats.calls;
        assert_int_equal(vt_stats.calls, calls);
    }
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

/* The nth allocation of a first step fails: NOMEM, NULL outputs, nothing
 * leaked (the test allocator checks at the end), and the step works after. */
static void out_of_memory(void **state) {
    (void)state;
    for (int lstm = 0; lstm <= 1; lstm++) {
        int failed = 0;
        for (int64_t n = 1;; n++) {
            assert_true(n < 500);
            vikt_model *m = vt_model(2);
            vt_stats.fail_at = vt_stats.calls + n;
            vikt_tensor *x = vikt_ones(m, 3, SHAPE(2, 3, 4));
            vikt_tensor *h0 = vikt_ones(m, 2, SHAPE(2, 5)), *h_n = (vikt_tensor *)&h_n;
            vikt_tensor *y = lstm ? vikt_lstm(m, "l", x, 5, h0, h0, &h_n, NULL)
                                  : vikt_gru(m, "g", x, 5, h0, &h_n);
            int rc = y ? vikt_backward(m, vikt_sum(m, y)) : VIKT_ERR_NOMEM;
            int reached = vt_stats.calls >= vt_stats.fail_at;
            vt_stats.fail_at = 0;
            if (!reached) {
                assert_int_equal(rc, VIKT_OK);
                vikt_model_destroy(m);
                break;
            }
            if (!y) assert_null(h_n);
            assert_int_equal(rc, VIKT_ERR_NOMEM);
            assert_int_equal(vikt_model_errcode(m), VIKT_ERR_NOMEM);
            vikt_model_clear_error(m);
            /* Retried: a whole step. */
            vikt_step_begin(m);
            x = vikt_ones(m, 3, SHAPE(2, 3, 4));
            h0 = vikt_ones(m, 2, SHAPE(2, 5));
            y = lstm ? vikt_lstm(m, "l", x, 5, h0, h0, NULL, NULL)
                     : vikt_gru(m, "g", x, 5, h0, NULL);
            assert_int_equal(vikt_backward(m, vikt_sum(m, y)), VIKT_OK);
            vikt_model_destroy(m);
            failed++;
        }
        assert_true(failed >= 5); /* model-side: params, names, lists, arena chunks */
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lstm_matches_pytorch),
        cmocka_unit_test(gru_matches_pytorch),
        cmocka_unit_test(lstm_gradients),
        cmocka_unit_test(gru_gradients),
        cmocka_unit_test(creates_pytorch_parameters_then_reuses),
        cmocka_unit_test(carries_state_across_calls),
        cmocka_unit_test(no_grad_mode),
        cmocka_unit_test(errors_name_layer_and_shapes),
        cmocka_unit_test(steady_state_allocates_nothing),
        cmocka_unit_test(out_of_memory),
    };
    return cmocka_run_group_tests_name("layers_rnn", tests, NULL, NULL);
}
