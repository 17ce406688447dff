/* Gradient checks: every differentiable op against central differences
 * (vt_gradcheck: float64 Richardson-extrapolated differences of
 * L = Σ out ⊙ R). One cmocka test per case; the test name says which op and
 * which shapes, and so does the failure message.
 *
 * Sizes are deliberately odd and non-square so a swapped stride or a wrong
 * row length cannot cancel out. Inputs of ops with a kink (relu, leaky_relu,
 * hinge, bce's |x|) are kept away from it by more than the difference step
 * (h = 1e-2·max(|x|, 1)). */
#include "support.h"

#include <math.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-3

enum op_kind {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV,
    OP_MATMUL, OP_MATMUL_T, OP_TRANSPOSE, OP_RESHAPE, OP_CONCAT, OP_SLICE,
    OP_SUM, OP_MEAN, OP_SUM_AXIS, OP_MEAN_AXIS,
    OP_SCALE, OP_EXP, OP_LOG, OP_SQRT, OP_SQUARE, OP_RELU, OP_LEAKY_RELU, OP_SIGMOID,
    OP_TANH, OP_GELU, OP_SOFTMAX, OP_LOG_SOFTMAX, OP_DROPOUT,
    OP_MSE, OP_BCE, OP_CE, OP_HINGE,
    /* compositions: one tensor used twice; a small network end to end */
    OP_SELF_MUL, OP_MLP
};

/* How an input is filled. */
enum fill_kind {
    F_UNI,   /* uniform in [lo, hi] */
    F_AWAY,  /* uniform in [lo, hi], |x| >= margin */
    F_SIGN,  /* ±1 */
    F_AWAY1  /* uniform in [lo, hi], ||x| - 1| >= margin (hinge's kink at t·x = 1) */
};

typedef struct spec {
    int rank;
    int64_t shape[4];
    int fill;
    float lo, hi, margin;
    int constant; /* held fixed: no gradient checked */
} spec;

typedef struct grad_case {
    const char *name;
    int op;
    int n;
    spec in[VT_MAX_INPUTS];
    int64_t i[6];  /* op arguments: axis, keepdim, transposes, slice range, reshape target */
    float f;       /* scale factor, slope, dropout p */
    int32_t labels[8];
} grad_case;

#define T0 .rank = 0
#define T1(a) .rank = 1, .shape = {a}
#define T2(a, b) .rank = 2, .shape = {a, b}
#define T3(a, b, c) .rank = 3, .shape = {a, b, c}
#define T4(a, b, c, d) .rank = 4, .shape = {a, b, c, d}
#define UNI(l, h) .fill = F_UNI, .lo = l, .hi = h
#define AWAY(l, h, mg) .fill = F_AWAY, .lo = l, .hi = h, .margin = mg
#define SIGNS .fill = F_SIGN
#define CONST .constant = 1

/* The seven broadcast layouts of a binary op; B is the right operand's fill
 * (kept away from zero for div). */
#define BINARY_CASES(OP, NAME, B)                                                              \
    {NAME "/same [3,5]+[3,5]", OP, 2, {{T2(3, 5), UNI(-2, 2)}, {T2(3, 5), B}}, {0}, 0, {0}},   \
    {NAME "/scalar-rank0 [3,5]+[]", OP, 2, {{T2(3, 5), UNI(-2, 2)}, {T0, B}}, {0}, 0, {0}},    \
    {NAME "/scalar-rank0-left []+[3,5]", OP, 2, {{T0, UNI(-2, 2)}, {T2(3, 5), B}}, {0}, 0, {0}}, \
    {NAME "/scalar-[1] [3,5]+[1]", OP, 2, {{T2(3, 5), UNI(-2, 2)}, {T1(1), B}}, {0}, 0, {0}},  \
    {NAME "/row [4,7]+[7]", OP, 2, {{T2(4, 7), UNI(-2, 2)}, {T1(7), B}}, {0}, 0, {0}},         \
    {NAME "/col [5,1]+[5,3]", OP, 2, {{T2(5, 1), UNI(-2, 2)}, {T2(5, 3), B}}, {0}, 0, {0}},    \
    {NAME "/rank3 [2,3,4]+[3,1]", OP, 2, {{T3(2, 3, 4), UNI(-2, 2)}, {T2(3, 1), B}}, {0}, 0, {0}}, \
    {NAME "/rank4 [2,1,3,1]+[1,4,1,5]", OP, 2,                                                 \
     {{T4(2, 1, 3, 1), UNI(-2, 2)}, {T4(1, 4, 1, 5), B}}, {0}, 0, {0}},                        \
    {NAME "/rank4 [3,2,1,3]+[2,5,1]", OP, 2,                                                   \
     {{T4(3, 2, 1, 3), UNI(-2, 2)}, {T3(2, 5, 1), B}}, {0}, 0, {0}}

/* matmul_t with each transpose combination for one pair of shapes given as
 * the untransposed [.., M, K] and [.., K, N]. */
#define MM(NAME, A, B, TA, TB) \
    {NAME, OP_MATMUL_T, 2, {{A, UNI(-1.5f, 1.5f)}, {B, UNI(-1.5f, 1.5f)}}, {TA, TB}, 0, {0}}

#define REDUCE_AXIS_CASES(OP, NAME)                                                                \
    {NAME "/axis0 keepdim0 [3,4,5]", OP, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {0, 0}, 0, {0}},       \
    {NAME "/axis0 keepdim1 [3,4,5]", OP, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {0, 1}, 0, {0}},       \
    {NAME "/axis1 keepdim0 [3,4,5]", OP, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {1, 0}, 0, {0}},       \
    {NAME "/axis1 keepdim1 [3,4,5]", OP, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {1, 1}, 0, {0}},       \
    {NAME "/axis2 keepdim0 [3,4,5]", OP, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {2, 0}, 0, {0}},       \
    {NAME "/axis2 keepdim1 [3,4,5]", OP, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {2, 1}, 0, {0}},       \
    {NAME "/axis-1 keepdim0 [3,4,5]", OP, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {-1, 0}, 0, {0}},     \
    {NAME "/axis-3 keepdim1 [3,4,5]", OP, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {-3, 1}, 0, {0}},     \
    {NAME "/axis0 keepdim0 [7]", OP, 1, {{T1(7), UNI(-2, 2)}}, {0, 0}, 0, {0}},                 \
    {NAME "/axis1 keepdim1 [2,3,1,4]", OP, 1, {{T4(2, 3, 1, 4), UNI(-2, 2)}}, {1, 1}, 0, {0}}

#define UNARY_CASE(OP, NAME, F, ...) {NAME, OP, 1, {{__VA_ARGS__}}, {0}, F, {0}}

static const grad_case cases[] = {
    BINARY_CASES(OP_ADD, "add", UNI(-2, 2)), BINARY_CASES(OP_SUB, "sub", UNI(-2, 2)),
    BINARY_CASES(OP_MUL, "mul", UNI(-2, 2)),
    BINARY_CASES(OP_DIV, "div", AWAY(-2, 2, 0.5f)),

    /* 2-D: op(A) is [3,5], op(B) is [5,4]. */
    MM("matmul_t/2d NN [3,5]x[5,4]", T2(3, 5), T2(5, 4), 0, 0),
    MM("matmul_t/2d NT [3,5]x[4,5]^T", T2(3, 5), T2(4, 5), 0, 1),
    MM("matmul_t/2d TN [5,3]^Tx[5,4]", T2(5, 3), T2(5, 4), 1, 0),
    MM("matmul_t/2d TT [5,3]^Tx[4,5]^T", T2(5, 3), T2(4, 5), 1, 1),
    /* Batched 3-D · 3-D. */
    MM("matmul_t/3dx3d NN [2,3,5]x[2,5,4]", T3(2, 3, 5), T3(2, 5, 4), 0, 0),
    MM("matmul_t/3dx3d NT [2,3,5]x[2,4,5]^T", T3(2, 3, 5), T3(2, 4, 5), 0, 1),
    MM("matmul_t/3dx3d TN [2,5,3]^Tx[2,5,4]", T3(2, 5, 3), T3(2, 5, 4), 1, 0),
    MM("matmul_t/3dx3d TT [2,5,3]^Tx[2,4,5]^T", T3(2, 5, 3), T3(2, 4, 5), 1, 1),
    /* 3-D · 2-D: the right operand shared by every batch (its gradient sums them). */
    MM("matmul_t/3dx2d NN [3,2,5]x[5,4]", T3(3, 2, 5), T2(5, 4), 0, 0),
    MM("matmul_t/3dx2d NT [3,2,5]x[4,5]^T", T3(3, 2, 5), T2(4, 5), 0, 1),
    MM("matmul_t/3dx2d TN [3,5,2]^Tx[5,4]", T3(3, 5, 2), T2(5, 4), 1, 0),
    MM("matmul_t/3dx2d TT [3,5,2]^Tx[4,5]^T", T3(3, 5, 2), T2(4, 5), 1, 1),
    /* 2-D · 3-D: the left operand shared. */
    MM("matmul_t/2dx3d NN [3,5]x[2,5,4]", T2(3, 5), T3(2, 5, 4), 0, 0),
    MM("matmul_t/2dx3d NT [3,5]x[2,4,5]^T", T2(3, 5), T3(2, 4, 5), 0, 1),
    MM("matmul_t/2dx3d TN [5,3]^Tx[2,5,4]", T2(5, 3), T3(2, 5, 4), 1, 0),
    MM("matmul_t/2dx3d TT [5,3]^Tx[2,4,5]^T", T2(5, 3), T3(2, 4, 5), 1, 1),
    /* Degenerate inner and outer sizes. */
    MM("matmul_t/2d K=1 [4,1]x[1,3]", T2(4, 1), T2(1, 3), 0, 0),
    MM("matmul_t/2d M=N=1 [1,6]x[6,1]", T2(1, 6), T2(6, 1), 0, 0),
    {"matmul/plain [3,2,5]x[2,5,4]", OP_MATMUL, 2,
     {{T3(3, 2, 5), UNI(-1.5f, 1.5f)}, {T3(3, 5, 4), UNI(-1.5f, 1.5f)}}, {0}, 0, {0}},
    {"matmul/constant-right [3,5]x[5,4]", OP_MATMUL, 2,
     {{T2(3, 5), UNI(-1.5f, 1.5f)}, {T2(5, 4), UNI(-1.5f, 1.5f), CONST}}, {0}, 0, {0}},

    {"transpose/rank2 [3,5]", OP_TRANSPOSE, 1, {{T2(3, 5), UNI(-2, 2)}}, {0}, 0, {0}},
    {"transpose/rank3 [2,3,5]", OP_TRANSPOSE, 1, {{T3(2, 3, 5), UNI(-2, 2)}}, {0}, 0, {0}},
    {"transpose/rank4 [2,3,4,3]", OP_TRANSPOSE, 1, {{T4(2, 3, 4, 3), UNI(-2, 2)}}, {0}, 0, {0}},

    /* reshape: i[0] = rank, i[1..] = the target shape */
    {"reshape/[3,4,5]->[5,-1]", OP_RESHAPE, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {2, 5, -1}, 0, {0}},
    {"reshape/[2,6]->[3,-1,2]", OP_RESHAPE, 1, {{T2(2, 6), UNI(-2, 2)}}, {3, 3, -1, 2}, 0, {0}},
    {"reshape/[3,5]->[-1]", OP_RESHAPE, 1, {{T2(3, 5), UNI(-2, 2)}}, {1, -1}, 0, {0}},
    {"reshape/[1,1]->[]", OP_RESHAPE, 1, {{T2(1, 1), UNI(-2, 2)}}, {0}, 0, {0}},

    /* concat: i[0] = axis */
    {"concat/axis0 [2,3]+[1,3]+[4,3]", OP_CONCAT, 3,
     {{T2(2, 3), UNI(-2, 2)}, {T2(1, 3), UNI(-2, 2)}, {T2(4, 3), UNI(-2, 2)}}, {0}, 0, {0}},
    {"concat/axis1 [2,3]+[2,1]+[2,4]", OP_CONCAT, 3,
     {{T2(2, 3), UNI(-2, 2)}, {T2(2, 1), UNI(-2, 2)}, {T2(2, 4), UNI(-2, 2)}}, {1}, 0, {0}},
    {"concat/axis-1 [2,3,2]+[2,3,1]+[2,3,3]", OP_CONCAT, 3,
     {{T3(2, 3, 2), UNI(-2, 2)}, {T3(2, 3, 1), UNI(-2, 2)}, {T3(2, 3, 3), UNI(-2, 2)}},
     {-1}, 0, {0}},
    {"concat/axis1 rank3 [2,1,3]+[2,4,3]+[2,2,3]", OP_CONCAT, 3,
     {{T3(2, 1, 3), UNI(-2, 2)}, {T3(2, 4, 3), UNI(-2, 2)}, {T3(2, 2, 3), UNI(-2, 2)}},
     {1}, 0, {0}},
    {"concat/axis0 rank1 with a constant [3]+[2]+[4]", OP_CONCAT, 3,
     {{T1(3), UNI(-2, 2)}, {T1(2), UNI(-2, 2), CONST}, {T1(4), UNI(-2, 2)}}, {0}, 0, {0}},

    /* slice: i = {axis, start, length} */
    {"slice/axis0 [5,3,4][1:4]", OP_SLICE, 1, {{T3(5, 3, 4), UNI(-2, 2)}}, {0, 1, 3}, 0, {0}},
    {"slice/axis1 [5,3,4][2:3]", OP_SLICE, 1, {{T3(5, 3, 4), UNI(-2, 2)}}, {1, 2, 1}, 0, {0}},
    {"slice/axis2 [5,3,4][1:3]", OP_SLICE, 1, {{T3(5, 3, 4), UNI(-2, 2)}}, {2, 1, 2}, 0, {0}},
    {"slice/axis-1 [3,7][0:5]", OP_SLICE, 1, {{T2(3, 7), UNI(-2, 2)}}, {-1, 0, 5}, 0, {0}},
    {"slice/axis0 [9][4:9]", OP_SLICE, 1, {{T1(9), UNI(-2, 2)}}, {0, 4, 5}, 0, {0}},

    {"sum/all [3,4,5]", OP_SUM, 1, {{T3(3, 4, 5), UNI(-1, 1)}}, {0}, 0, {0}},
    {"sum/all rank0 []", OP_SUM, 1, {{T0, UNI(-1, 1)}}, {0}, 0, {0}},
    {"mean/all [3,4,5]", OP_MEAN, 1, {{T3(3, 4, 5), UNI(-2, 2)}}, {0}, 0, {0}},
    {"mean/all [7]", OP_MEAN, 1, {{T1(7), UNI(-2, 2)}}, {0}, 0, {0}},
    REDUCE_AXIS_CASES(OP_SUM_AXIS, "sum_axis"),
    REDUCE_AXIS_CASES(OP_MEAN_AXIS, "mean_axis"),

    UNARY_CASE(OP_SCALE, "scale/-2.5 [3,5]", -2.5f, T2(3, 5), UNI(-2, 2)),
    UNARY_CASE(OP_SCALE, "scale/0.3 [2,3,4]", 0.3f, T3(2, 3, 4), UNI(-2, 2)),
    UNARY_CASE(OP_EXP, "exp [3,5]", 0, T2(3, 5), UNI(-2, 2)),
    UNARY_CASE(OP_LOG, "log [3,5] positive", 0, T2(3, 5), UNI(0.3f, 4)),
    UNARY_CASE(OP_SQRT, "sqrt [3,5] positive", 0, T2(3, 5), UNI(0.3f, 4)),
    UNARY_CASE(OP_SQUARE, "square [3,5]", 0, T2(3, 5), UNI(-2, 2)),
    UNARY_CASE(OP_RELU, "relu [3,7]", 0, T2(3, 7), AWAY(-2, 2, 0.1f)),
    UNARY_CASE(OP_LEAKY_RELU, "leaky_relu/0.01 [3,7]", 0.01f, T2(3, 7), AWAY(-2, 2, 0.1f)),
    UNARY_CASE(OP_LEAKY_RELU, "leaky_relu/0.2 [2,3,4]", 0.2f, T3(2, 3, 4), AWAY(-2, 2, 0.1f)),
    UNARY_CASE(OP_SIGMOID, "sigmoid [3,7]", 0, T2(3, 7), UNI(-4, 4)),
    UNARY_CASE(OP_TANH, "tanh [3,7]", 0, T2(3, 7), UNI(-2.5f, 2.5f)),
    UNARY_CASE(OP_GELU, "gelu [3,7]", 0, T2(3, 7), AWAY(-3, 3, 0.1f)),
    UNARY_CASE(OP_SOFTMAX, "softmax/rank1 [7]", 0, T1(7), UNI(-2, 2)),
    UNARY_CASE(OP_SOFTMAX, "softmax/rank2 [3,5]", 0, T2(3, 5), UNI(-2, 2)),
    UNARY_CASE(OP_SOFTMAX, "softmax/rank3 [2,3,4]", 0, T3(2, 3, 4), UNI(-2, 2)),
    UNARY_CASE(OP_SOFTMAX, "softmax/one column [4,1]", 0, T2(4, 1), UNI(-2, 2)),
    UNARY_CASE(OP_LOG_SOFTMAX, "log_softmax/rank1 [7]", 0, T1(7), UNI(-2, 2)),
    UNARY_CASE(OP_LOG_SOFTMAX, "log_softmax/rank2 [3,5]", 0, T2(3, 5), UNI(-2, 2)),
    UNARY_CASE(OP_LOG_SOFTMAX, "log_softmax/rank3 [2,3,4]", 0, T3(2, 3, 4), UNI(-2, 2)),
    /* The harness reseeds before every evaluation, so the mask is fixed. */
    UNARY_CASE(OP_DROPOUT, "dropout/p0.4 training [5,7]", 0.4f, T2(5, 7), UNI(-2, 2)),
    UNARY_CASE(OP_DROPOUT, "dropout/p0.1 training [2,3,4]", 0.1f, T3(2, 3, 4), UNI(-2, 2)),

    {"mse_loss/[3,5] grad pred and target", OP_MSE, 2,
     {{T2(3, 5), UNI(-2, 2)}, {T2(3, 5), UNI(-2, 2)}}, {0}, 0, {0}},
    {"mse_loss/[7] constant target", OP_MSE, 2, {{T1(7), UNI(-2, 2)}, {T1(7), UNI(-2, 2), CONST}},
     {0}, 0, {0}},
    {"bce_with_logits_loss/[3,5] grad logits and target", OP_BCE, 2,
     {{T2(3, 5), AWAY(-4, 4, 0.1f)}, {T2(3, 5), UNI(0.05f, 0.95f)}}, {0}, 0, {0}},
    {"bce_with_logits_loss/[2,3,2] constant target", OP_BCE, 2,
     {{T3(2, 3, 2), AWAY(-4, 4, 0.1f)}, {T3(2, 3, 2), UNI(0, 1), CONST}}, {0}, 0, {0}},
    {"cross_entropy_loss/[5,7]", OP_CE, 1, {{T2(5, 7), UNI(-3, 3)}}, {0}, 0, {3, 0, 6, 6, 2}},
    {"cross_entropy_loss/[1,3]", OP_CE, 1, {{T2(1, 3), UNI(-3, 3)}}, {0}, 0, {2}},
    {"cross_entropy_loss/[4,2]", OP_CE, 1, {{T2(4, 2), UNI(-3, 3)}}, {0}, 0, {1, 0, 0, 1}},
    {"hinge_loss/[3,5] grad scores and target", OP_HINGE, 2,
     {{T2(3, 5), .fill = F_AWAY1, .lo = -3, .hi = 3, .margin = 0.15f}, {T2(3, 5), SIGNS}},
     {0}, 0, {0}},
    {"hinge_loss/[9] constant target", OP_HINGE, 2,
     {{T1(9), .fill = F_AWAY1, .lo = -3, .hi = 3, .margin = 0.15f}, {T1(9), SIGNS, CONST}},
     {0}, 0, {0}},

    /* One tensor as both operands: both contributions must accumulate. */
    {"compose/mul(x,x)+x [3,4]", OP_SELF_MUL, 1, {{T2(3, 4), UNI(-2, 2)}}, {0}, 0, {0}},
    /* x[5,4] (constant) · W[4,6] + b[6] → gelu → ·V[6,3] → cross-entropy. */
    {"compose/mlp x.W+b gelu .V cross_entropy", OP_MLP, 4,
     {{T2(5, 4), UNI(-1, 1), CONST},
      {T2(4, 6), UNI(-1, 1)},
      {T1(6), UNI(-0.5f, 0.5f)},
      {T2(6, 3), UNI(-1, 1)}},
     {0}, 0, {2, 0, 1, 1, 2}},
};

static vikt_tensor *build(vikt_model *m, vikt_tensor *const *in, void *ctx) {
    const grad_case *c = ctx;
    switch (c->op) {
    case OP_ADD: return vikt_add(m, in[0], in[1]);
    case OP_SUB: return vikt_sub(m, in[0], in[1]);
    case OP_MUL: return vikt_mul(m, in[0], in[1]);
    case OP_DIV: return vikt_div(m, in[0], in[1]);
    case OP_MATMUL: return vikt_matmul(m, in[0], in[1]);
    case OP_MATMUL_T: return vikt_matmul_t(m, in[0], in[1], (int)c->i[0], (int)c->i[1]);
    case OP_TRANSPOSE: return vikt_transpose(m, in[0]);
    case OP_RESHAPE: return vikt_reshape(m, in[0], (int)c->i[0], &c->i[1]);
    case OP_CONCAT: return vikt_concat(m, c->n, in, (int)c->i[0]);
    case OP_SLICE: return vikt_slice(m, in[0], (int)c->i[0], c->i[1], c->i[2]);
    case OP_SUM: return vikt_sum(m, in[0]);
    case OP_MEAN: return vikt_mean(m, in[0]);
    case OP_SUM_AXIS: return vikt_sum_axis(m, in[0], (int)c->i[0], (int)c->i[1]);
    case OP_MEAN_AXIS: return vikt_mean_axis(m, in[0], (int)c->i[0], (int)c->i[1]);
    case OP_SCALE: return vikt_scale(m, in[0], c->f);
    case OP_EXP: return vikt_exp(m, in[0]);
    case OP_LOG: return vikt_log(m, in[0]);
    case OP_SQRT: return vikt_sqrt(m, in[0]);
    case OP_SQUARE: return vikt_square(m, in[0]);
    case OP_RELU: return vikt_relu(m, in[0]);
    case OP_LEAKY_RELU: return vikt_leaky_relu(m, in[0], c->f);
    case OP_SIGMOID: return vikt_sigmoid(m, in[0]);
    case OP_TANH: return vikt_tanh(m, in[0]);
    case OP_GELU: return vikt_gelu(m, in[0]);
    case OP_SOFTMAX: return vikt_softmax(m, in[0]);
    case OP_LOG_SOFTMAX: return vikt_log_softmax(m, in[0]);
    case OP_DROPOUT: return vikt_dropout(m, in[0], c->f);
    case OP_MSE: return vikt_mse_loss(m, in[0], in[1]);
    case OP_BCE: return vikt_bce_with_logits_loss(m, in[0], in[1]);
    case OP_CE: return vikt_cross_entropy_loss(m, in[0], c->labels);
    case OP_HINGE: return vikt_hinge_loss(m, in[0], in[1]);
    case OP_SELF_MUL: return vikt_add(m, vikt_mul(m, in[0], in[0]), in[0]);
    case OP_MLP: {
        vikt_tensor *h = vikt_gelu(m, vikt_add(m, vikt_matmul(m, in[0], in[1]), in[2]));
        return vikt_cross_entropy_loss(m, vikt_matmul(m, h, in[3]), c->labels);
    }
    }
    return NULL;
}

static int64_t spec_numel(const spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= s->shape[i];
    return n;
}

static void fill_spec(const spec *s, float *x, int64_t n, uint32_t seed) {
    switch (s->fill) {
    case F_UNI: vt_fill(x, n, seed, s->lo, s->hi); break;
    case F_AWAY: vt_fill_away_from_zero(x, n, seed, s->lo, s->hi, s->margin); break;
    case F_SIGN:
        vt_fill(x, n, seed, -1, 1);
        for (int64_t i = 0; i < n; i++) x[i] = x[i] < 0 ? -1.0f : 1.0f;
        break;
    case F_AWAY1:
        vt_fill(x, n, seed, s->lo, s->hi);
        for (int64_t i = 0; i < n; i++) {
            float a = fabsf(x[i]), sg = x[i] < 0 ? -1.0f : 1.0f;
            if (fabsf(a - 1.0f) < s->margin) x[i] = sg * (a < 1.0f ? 1.0f - s->margin - 0.05f
                                                                    : 1.0f + s->margin + 0.05f);
        }
        break;
    default: fail_msg("unknown fill kind %d", s->fill);
    }
}

enum { MAX_ELEMS = 512 };

static void run_case(void **state) {
    const grad_case *c = *state;
    static float data[VT_MAX_INPUTS][MAX_ELEMS];
    vt_grad_input gi[VT_MAX_INPUTS];
    memset(gi, 0, sizeof gi);
    for (int k = 0; k < c->n; k++) {
        const spec *s = &c->in[k];
        int64_t n = spec_numel(s);
        assert_true(n >= 1 && n <= MAX_ELEMS);
        /* A different stream per case and input, fixed from run to run. */
        fill_spec(s, data[k], n, (uint32_t)((c - cases) * 31 + k * 7 + 1));
        gi[k].rank = s->rank;
        memcpy(gi[k].shape, s->shape, sizeof gi[k].shape);
        gi[k].data = data[k];
        gi[k].requires_grad = !s->constant;
    }
    vt_gradcheck(c->name, c->n, gi, build, (void *)c, ATOL, RTOL);
}

/* ----------------------------------------------------- dropout behaviour */

/* Evaluation mode passes values and gradients through unchanged, draws
 * nothing from the generator and keeps no mask. */
static void dropout_eval_is_identity(void **state) {
    (void)state;
    vikt_model *m = vt_model(3);
    float x[35];
    vt_fill(x, 35, 11, -2, 2);
    vikt_tensor *t;
    assert_int_equal(vikt_tensor_create(m, 2, (int64_t[]){5, 7}, x, 1, &t), VIKT_OK);
    assert_int_equal(vikt_set_training(m, 0), VIKT_OK);
    assert_int_equal(vikt_training(m), 0);
    vikt_step_begin(m);
    vikt_model_seed(m, 77);
    vikt_tensor *y = vikt_dropout(m, t, 0.9f);
    assert_non_null(y);
    assert_memory_equal(vikt_tensor_data(y), x, sizeof x);
    /* The generator was not advanced: the next draw equals a fresh seed's. */
    vikt_tensor *u1 = vikt_rand(m, 1, (int64_t[]){4}, 0, 1);
    vikt_model_seed(m, 77);
    vikt_tensor *u2 = vikt_rand(m, 1, (int64_t[]){4}, 0, 1);
    assert_memory_equal(vikt_tensor_data(u1), vikt_tensor_data(u2), 4 * sizeof(float));
    /* Gradient: identity. */
    float r[35];
    vt_fill(r, 35, 12, -1, 1);
    vikt_tensor *rt = vikt_input(m, 2, (int64_t[]){5, 7}, r);
    assert_int_equal(vikt_backward(m, vikt_sum(m, vikt_mul(m, y, rt))), VIKT_OK);
    assert_memory_equal(vikt_tensor_grad(t), r, sizeof r);
    /* Back to training: now it drops. */
    assert_int_equal(vikt_set_training(m, 1), VIKT_OK);
    vikt_step_begin(m);
    y = vikt_dropout(m, t, 0.9f);
    int zeros = 0;
    for (int i = 0; i < 35; i++) zeros += vikt_tensor_data(y)[i] == 0.0f;
    assert_true(zeros > 0);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* Training mode: about p of the elements are zeroed, the rest are x/(1-p)
 * exactly as float arithmetic gives it, and the gradient uses the same mask. */
static void dropout_training_statistics(void **state) {
    (void)state;
    const float ps[3] = {0.1f, 0.5f, 0.75f};
    const int64_t n = 40000;
    for (int k = 0; k < 3; k++) {
        float p = ps[k], keep = 1.0f / (1.0f - p);
        vikt_model *m = vt_model(100 + (uint64_t)k);
        vikt_tensor *x = vikt_rand(m, 1, &n, 0.5f, 1.5f); /* no zeros in the input */
        assert_int_equal(vikt_tensor_set_requires_grad(x, 1), VIKT_OK);
        vikt_tensor *y = vikt_dropout(m, x, p);
        assert_non_null(y);
        const float *X = vikt_tensor_data(x), *Y = vikt_tensor_data(y);
        int64_t dropped = 0;
        for (int64_t i = 0; i < n; i++) {
            if (Y[i] == 0.0f)
                dropped++;
            else if (Y[i] != X[i] * keep)
                fail_msg("dropout p=%g: element %lld is %.9g, expected 0 or %.9g", (double)p,
                         (long long)i, (double)Y[i], (double)(X[i] * keep));
        }
        /* Binomial: 5 standard deviations. */
        double frac = (double)dropped / (double)n, sd = sqrt(p * (1.0 - p) / (double)n);
        if (fabs(frac - p) > 5 * sd)
            fail_msg("dropout p=%g zeroed a fraction %.4f", (double)p, frac);
        /* The mean is preserved in expectation. */
        double sx = 0, sy = 0;
        for (int64_t i = 0; i < n; i++) sx += X[i], sy += Y[i];
        assert_true(fabs(sy / sx - 1.0) < 0.03);
        /* d(Σ y)/dx is the mask: 0 where dropped, 1/(1-p) elsewhere. */
        assert_int_equal(vikt_backward(m, vikt_sum(m, y)), VIKT_OK);
        const float *G = vikt_tensor_grad(x);
        assert_non_null(G);
        for (int64_t i = 0; i < n; i++)
            if (G[i] != (Y[i] == 0.0f ? 0.0f : keep))
                fail_msg("dropout p=%g: gradient %lld is %.9g", (double)p, (long long)i,
                         (double)G[i]);
        vikt_model_destroy(m);
    }
}

/* The same seed gives the same mask; p = 0 in training copies. */
static void dropout_seeded_and_p_zero(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    const int64_t n = 257;
    vikt_tensor *x = vikt_ones(m, 1, &n);
    vikt_model_seed(m, 9);
    vikt_tensor *a = vikt_dropout(m, x, 0.3f);
    vikt_model_seed(m, 9);
    vikt_tensor *b = vikt_dropout(m, x, 0.3f);
    vikt_tensor *c = vikt_dropout(m, x, 0.3f); /* a further draw differs */
    assert_memory_equal(vikt_tensor_data(a), vikt_tensor_data(b), (size_t)n * sizeof(float));
    assert_memory_not_equal(vikt_tensor_data(a), vikt_tensor_data(c), (size_t)n * sizeof(float));
    vikt_tensor *z = vikt_dropout(m, x, 0.0f);
    for (int64_t i = 0; i < n; i++) assert_float_equal(vikt_tensor_data(z)[i], 1.0f, 0);
    assert_null(vikt_dropout(m, x, 1.0f));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_dropout", "p must be");
    assert_null(vikt_dropout(m, x, -0.1f));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_dropout", NULL);
    vikt_model_destroy(m);
}

int main(void) {
    enum { NCASES = sizeof cases / sizeof cases[0] };
    static struct CMUnitTest tests[NCASES + 3];
    for (int i = 0; i < NCASES; i++)
        tests[i] = (struct CMUnitTest){cases[i].name, run_case, NULL, NULL, (void *)&cases[i]};
    tests[NCASES] = (struct CMUnitTest)cmocka_unit_test(dropout_eval_is_identity);
    tests[NCASES + 1] = (struct CMUnitTest)cmocka_unit_test(dropout_training_statistics);
    tests[NCASES + 2] = (struct CMUnitTest)cmocka_unit_test(dropout_seeded_and_p_zero);
    return cmocka_run_group_tests_name("ops_grad", tests, NULL, NULL);
}
