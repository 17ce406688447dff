#!/usr/bin/python3
"""Generate test/fixtures/layers_cnn.h: PyTorch references for vikt's CNN family.

Covers torch.nn.Conv2d, MaxPool2d, AvgPool2d, Embedding, LayerNorm and
BatchNorm1d/2d (training, with the running statistics after one and two
steps, and evaluation). Run by developers, never by `make check`:

    /usr/bin/python3 tools/gen_layer_fixtures_cnn.py

(the system Python, where PyTorch 1.13 is installed).

Inputs and parameters are drawn from a seeded generator and rounded to
float32 (the values vikt sees); each layer is then evaluated in float64 on
exactly those values, with the gradients of

    L = sum(out * R),   R_i = float32(0.5 + 0.5 * sin(0.91 * i + 0.3))

for the input and every parameter. Outputs, gradients and running statistics
are rounded to float32. The float64 evaluation keeps the comparison about
vikt's rounding alone (float32 torch would add its own). test/test_layers_cnn.c
loads the parameters under PyTorch's names ("<layer>.weight", ".bias",
".running_mean", ".running_var") and compares at rtol 1e-4 / atol 1e-5.
"""

import math
import os

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, os.pardir, "test", "fixtures", "layers_cnn.h")

GEN = torch.Generator().manual_seed(20240604)


def rand(shape, lo=-1.0, hi=1.0):
    """Uniform float32 values, returned as float64 for the reference."""
    u = torch.rand(shape, dtype=torch.float64, generator=GEN)
    return (lo + (hi - lo) * u).float().double()


def projection(n):
    return torch.tensor([float(torch.tensor(0.5 + 0.5 * math.sin(0.91 * i + 0.3),
                                            dtype=torch.float32)) for i in range(n)],
                        dtype=torch.float64)


def loss_backward(out):
    (out.reshape(-1) * projection(out.numel())).sum().backward()


def set_params(module, **values):
    with torch.no_grad():
        for name, v in values.items():
            getattr(module, name).copy_(v)


# ------------------------------------------------------------ the header

ARRAYS = []  # C text of every array, in order


def c_float(v):
    """A float literal that round-trips to the same float32 ("0" needs ".0f")."""
    s = f"{v:.9g}"
    if not any(ch in s for ch in ".e"):
        s += ".0"
    return s + "f"


def arr(name, t):
    vals = ", ".join(c_float(v) for v in t.detach().float().reshape(-1).tolist())
    ARRAYS.append(f"static const float {name}[{max(t.numel(), 1)}] = {{{vals if vals else '0'}}};")
    return name


def iarr(name, values):
    vals = ", ".join(str(int(v)) for v in values)
    ARRAYS.append(f"static const int32_t {name}[{max(len(values), 1)}] = {{{vals if vals else '0'}}};")
    return name


def dims(shape):
    return "{" + ", ".join(str(int(d)) for d in shape) + "}"


# ------------------------------------------------------------------ conv

# (name, x shape [N, C, H, W], out channels, kernel, stride, padding, dilation)
CONV = [
    ("plain", (2, 3, 7, 6), 4, 3, 1, 0, 1),
    ("stride2_pad1", (2, 2, 9, 8), 3, 3, 2, 1, 1),
    ("dilation2_pad2", (1, 2, 10, 9), 2, 3, 1, 2, 2),
    ("k2_stride3_pad1_dil2", (2, 3, 11, 7), 5, 2, 3, 1, 2),
    ("k4_stride2", (1, 2, 8, 11), 3, 4, 2, 0, 1),
    ("pointwise", (2, 4, 5, 3), 3, 1, 1, 0, 1),
    ("k1_stride2_pad1", (2, 2, 5, 6), 2, 1, 2, 1, 1),
    ("issue_first_layer", (2, 1, 12, 12), 8, 3, 1, 0, 1),
]


def conv_cases():
    rows = []
    for name, xs, oc, k, s, p, d in CONV:
        conv = nn.Conv2d(xs[1], oc, k, stride=s, padding=p, dilation=d).double()
        bound = 1.0 / math.sqrt(xs[1] * k * k)
        set_params(conv, weight=rand(conv.weight.shape, -bound, bound),
                   bias=rand(conv.bias.shape, -bound, bound))
        x = rand(xs, -1.5, 1.5).requires_grad_(True)
        y = conv(x)
        loss_backward(y)
        c = f"conv_{name}"
        rows.append(f'    {{"{name}", {dims(xs)}, {oc}, {k}, {s}, {p}, {d}, {dims(y.shape)}, '
                    f'{arr(c + "_x", x)}, {arr(c + "_w", conv.weight)}, {arr(c + "_b", conv.bias)}, '
                    f'{arr(c + "_y", y)}, {arr(c + "_dx", x.grad)}, '
                    f'{arr(c + "_dw", conv.weight.grad)}, {arr(c + "_db", conv.bias.grad)}}},')
    return rows


# ----------------------------------------------------------------- pools

# (name, kind, x shape, kernel, stride)
POOL = [
    ("max_k2", "max", (2, 3, 6, 5), 2, 2),
    ("max_k3_s2_overlap", "max", (1, 2, 7, 8), 3, 2),
    ("max_k2_s1", "max", (1, 2, 5, 4), 2, 1),
    ("max_k2_s3_gaps", "max", (2, 1, 8, 7), 2, 3),
    ("avg_k2", "avg", (2, 3, 6, 5), 2, 2),
    ("avg_k3_s2_overlap", "avg", (1, 2, 7, 8), 3, 2),
    ("avg_k3_s1", "avg", (1, 1, 5, 6), 3, 1),
    ("avg_k2_s3_gaps", "avg", (2, 1, 8, 7), 2, 3),
]


def pool_cases():
    rows = []
    for name, kind, xs, k, s in POOL:
        layer = nn.MaxPool2d(k, s) if kind == "max" else nn.AvgPool2d(k, s)
        x = rand(xs, -2, 2).requires_grad_(True)
        y = layer(x)
        loss_backward(y)
        c = f"pool_{name}"
        rows.append(f'    {{"{name}", {int(kind == "max")}, {dims(xs)}, {k}, {s}, {dims(y.shape)}, '
                    f'{arr(c + "_x", x)}, {arr(c + "_y", y)}, {arr(c + "_dx", x.grad)}}},')
    return rows


# ------------------------------------------------------------- embedding

# (name, ids, id shape, num_embeddings, dim); repeated ids accumulate.
EMBEDDING = [
    ("rank2_repeats", [3, 0, 3, 6, 1, 1, 3, 5, 0, 6, 2, 3], (3, 4), 7, 5),
    ("rank1_all_same", [2, 2, 2, 2, 2], (5,), 4, 3),
    ("rank0", [1], (), 3, 4),
    ("rank3", [0, 4, 1, 4, 2, 0, 3, 4, 4, 1, 0, 2], (2, 3, 2), 5, 2),
]


def embedding_cases():
    rows = []
    for name, ids, shape, v, d in EMBEDDING:
        emb = nn.Embedding(v, d).double()
        set_params(emb, weight=rand((v, d), -2, 2))
        y = emb(torch.tensor(ids, dtype=torch.long).reshape(shape))
        loss_backward(y)
        c = f"emb_{name}"
        rows.append(f'    {{"{name}", {iarr(c + "_ids", ids)}, {len(shape)}, '
                    f'{dims(list(shape) + [0] * (3 - len(shape)))}, {v}, {d}, '
                    f'{arr(c + "_w", emb.weight)}, {arr(c + "_y", y)}, '
                    f'{arr(c + "_dw", emb.weight.grad)}}},')
    return rows


# ------------------------------------------------------------ layer norm

# (name, x shape, eps, offset added to x)
LAYER_NORM = [
    ("rank2", (4, 7), 1e-5, 0.0),
    ("rank3", (2, 3, 5), 1e-3, 0.0),
    ("rank1", (6,), 1e-5, 0.0),
    ("large_mean", (3, 8), 1e-5, 1000.0),  # two-pass statistics
]


def layer_norm_cases():
    rows = []
    for name, xs, eps, offset in LAYER_NORM:
        ln = nn.LayerNorm(xs[-1], eps=eps).double()
        set_params(ln, weight=rand((xs[-1],), 0.5, 1.5), bias=rand((xs[-1],), -0.5, 0.5))
        x = (rand(xs, -2, 2) + offset).float().double().requires_grad_(True)
        y = ln(x)
        loss_backward(y)
        c = f"ln_{name}"
        rows.append(f'    {{"{name}", {len(xs)}, {dims(list(xs) + [0] * (4 - len(xs)))}, '
                    f'{eps!r}f, {arr(c + "_x", x)}, {arr(c + "_w", ln.weight)}, '
                    f'{arr(c + "_b", ln.bias)}, {arr(c + "_y", y)}, {arr(c + "_dx", x.grad)}, '
                    f'{arr(c + "_dw", ln.weight.grad)}, {arr(c + "_db", ln.bias.grad)}}},')
    return rows


# ------------------------------------------------------------ batch norm

# (name, x shape, momentum, eps, training, offset added to x). Training cases
# run two steps on two different batches with the same parameters; every
# case starts from the running statistics given (rm0, rv0).
BATCH_NORM = [
    ("train_nc", (6, 3), 0.1, 1e-5, True, 0.0),
    ("train_nchw", (3, 2, 4, 5), 0.3, 1e-5, True, 0.0),
    ("train_nchw_n1", (1, 3, 2, 3), 0.1, 1e-3, True, 0.0),
    ("train_large_mean", (4, 2, 3, 3), 0.1, 1e-5, True, 500.0),
    ("train_momentum1", (5, 2), 1.0, 1e-5, True, 0.0),
    ("eval_nc", (4, 3), 0.1, 1e-5, False, 0.0),
    ("eval_nchw", (2, 3, 3, 4), 0.1, 1e-5, False, 0.0),
]


def batch_norm_cases():
    rows = []
    for name, xs, mom, eps, training, offset in BATCH_NORM:
        C = xs[1]
        bn = (nn.BatchNorm1d if len(xs) == 2 else nn.BatchNorm2d)(C, eps=eps, momentum=mom).double()
        set_params(bn, weight=rand((C,), 0.5, 1.5), bias=rand((C,), -0.5, 0.5))
        if training:
            rm0, rv0 = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
        else:
            rm0, rv0 = rand((C,), -0.5, 0.5), rand((C,), 0.5, 2.0)
        with torch.no_grad():
            bn.running_mean.copy_(rm0)
            bn.running_var.copy_(rv0)
        bn.train(training)
        c = f"bn_{name}"
        steps = []
        for step in range(2 if training else 1):
            bn.zero_grad()
            x = (rand(xs, -2, 2) + offset).float().double().requires_grad_(True)
            y = bn(x)
            loss_backward(y)
            p = f"{c}_s{step}"
            steps.append(f'{{{arr(p + "_x", x)}, {arr(p + "_y", y)}, {arr(p + "_dx", x.grad)}, '
                         f'{arr(p + "_dw", bn.weight.grad)}, {arr(p + "_db", bn.bias.grad)}, '
                         f'{arr(p + "_rm", bn.running_mean)}, {arr(p + "_rv", bn.running_var)}}}')
        rows.append(f'    {{"{name}", {len(xs)}, {dims(list(xs) + [0] * (4 - len(xs)))}, '
                    f'{mom!r}f, {eps!r}f, {int(training)}, {arr(c + "_w", bn.weight)}, '
                    f'{arr(c + "_b", bn.bias)}, {arr(c + "_rm0", rm0)}, {arr(c + "_rv0", rv0)}, '
                    f'{len(steps)}, {{{", ".join(steps)}}}}},')
    return rows


TYPES = """typedef struct conv_fixture {
    const char *name;
    int64_t x_shape[4];
    int64_t out_channels, kernel, stride, padding, dilation;
    int64_t y_shape[4];
    const float *x, *weight, *bias, *y, *dx, *dweight, *dbias;
} conv_fixture;

typedef struct pool_fixture {
    const char *name;
    int is_max; /* 1: max pooling, 0: average */
    int64_t x_shape[4];
    int64_t kernel, stride;
    int64_t y_shape[4];
    const float *x, *y, *dx;
} pool_fixture;

typedef struct embedding_fixture {
    const char *name;
    const int32_t *ids;
    int rank;
    int64_t shape[3];
    int64_t num_embeddings, dim;
    const float *weight, *y, *dweight;
} embedding_fixture;

typedef struct layer_norm_fixture {
    const char *name;
    int rank;
    int64_t shape[4];
    float eps;
    const float *x, *weight, *bias, *y, *dx, *dweight, *dbias;
} layer_norm_fixture;

/* One forward+backward; rm, rv are the running statistics after it. */
typedef struct batch_norm_step {
    const float *x, *y, *dx, *dweight, *dbias, *rm, *rv;
} batch_norm_step;

typedef struct batch_norm_fixture {
    const char *name;
    int rank;
    int64_t shape[4];
    float momentum, eps;
    int training;
    const float *weight, *bias, *rm0, *rv0; /* parameters; running statistics before step 0 */
    int steps;
    batch_norm_step step[2];
} batch_norm_fixture;
"""


def main():
    tables = [
        ("conv_fixture", "conv_fixtures", conv_cases()),
        ("pool_fixture", "pool_fixtures", pool_cases()),
        ("embedding_fixture", "embedding_fixtures", embedding_cases()),
        ("layer_norm_fixture", "layer_norm_fixtures", layer_norm_cases()),
        ("batch_norm_fixture", "batch_norm_fixtures", batch_norm_cases()),
    ]
    with open(OUT, "w") as f:
        f.write(f"/* Generated by tools/gen_layer_fixtures_cnn.py from PyTorch {torch.__version__}"
                "; do not edit. */\n")
        f.write("#ifndef LAYERS_CNN_H\n#define LAYERS_CNN_H\n\n#include <stdint.h>\n\n")
        f.write(TYPES + "\n")
        f.write("\n".join(ARRAYS) + "\n\n")
        for ctype, name, rows in tables:
            f.write(f"static const {ctype} {name}[] = {{\n" + "\n".join(rows) + "\n};\n\n")
        f.write("#endif\n")
    print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
