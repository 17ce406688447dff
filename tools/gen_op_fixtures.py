#!/usr/bin/python3
"""Generate test/fixtures/op_fixtures.h: PyTorch reference values for vikt's ops.

Run by developers when the op list changes, never by `make check`:

    /usr/bin/python3 tools/gen_op_fixtures.py

(the system Python, where PyTorch 1.13 is installed).

For every case below the script draws inputs from a seeded torch generator
in float64 and rounds them to float32 (the values vikt sees), then evaluates
the op in float64 on exactly those float32 values, and the gradient of

    L = sum(out * R),   R_i = float32(0.5 + 0.5 * sin(0.91 * i + 0.3))

with respect to every input that requires one. Output and gradients are
rounded to float32 and written with the inputs and a table of cases to a C
header that test/test_ops_torch.c runs through vikt. Computing the reference
in float64 keeps the comparison about vikt's error alone (float32 torch would
add its own rounding).

Conventions matched to vikt (see include/vikt.h):
  * gelu is the exact erf form (torch's default approximate='none');
  * leaky_relu takes an explicit slope;
  * transpose swaps the last two dimensions;
  * cross_entropy_loss takes int32 labels and averages over rows;
  * hinge_loss is mean(max(0, 1 - t*x)), computed here by that formula;
  * bce_with_logits_loss is computed by vikt's stable formula
    max(x,0) - x*t + log(1 + exp(-|x|)) so the target gradient (-x/N) is
    differentiated too; inputs are kept away from the kink at x = 0;
  * dropout is random and is not covered here (test_ops_grad.c checks it).
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, os.pardir, "test", "fixtures", "op_fixtures.h")


# ----------------------------------------------------------------- inputs

def In(shape, lo=-2.0, hi=2.0, kind="uniform", margin=0.0, grad=True):
    """One input: its shape, how to fill it, and whether it needs a gradient."""
    return dict(shape=tuple(shape), lo=lo, hi=hi, kind=kind, margin=margin, grad=grad)


def Away(shape, lo=-2.0, hi=2.0, margin=0.1, grad=True):
    """Uniform, but |x| >= margin (away from the kink of relu & co.)."""
    return In(shape, lo, hi, "away", margin, grad)


def Pos(shape, lo=0.3, hi=4.0, grad=True):
    return In(shape, lo, hi, "uniform", 0.0, grad)


def Signs(shape, grad=True):
    return In(shape, kind="signs", grad=grad)


def Away1(shape, lo=-3.0, hi=3.0, margin=0.15, grad=True):
    """Uniform, but ||x| - 1| >= margin (hinge's kink at t*x = 1 for t = ±1)."""
    return In(shape, lo, hi, "away1", margin, grad)


def make_input(spec, gen):
    shape = spec["shape"]
    u = torch.rand(shape, dtype=torch.float64, generator=gen)
    x = spec["lo"] + (spec["hi"] - spec["lo"]) * u
    kind, mg = spec["kind"], spec["margin"]
    one = torch.ones_like(x)
    sign = torch.where(x < 0, -one, one)
    if kind == "away":
        x = torch.where(x.abs() < mg, sign * (mg + 0.05), x)
    elif kind == "away1":
        a = x.abs()
        pushed = sign * torch.where(a < 1, (1 - mg - 0.05) * one, (1 + mg + 0.05) * one)
        x = torch.where((a - 1).abs() < mg, pushed, x)
    elif kind == "signs":
        x = torch.where(u < 0.5, -one, one)
    return x.to(torch.float32)


# ------------------------------------------------------------------ cases

# Each case: (name, op, inputs, args). args keys: ta, tb (matmul_t), shape
# (reshape), axis, keepdim, start, length, s (scale), slope (leaky_relu),
# labels (cross_entropy_loss).
CASES = []


def case(name, op, inputs, **args):
    CASES.append((name, op, inputs, args))


def dims(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


# Broadcasting binary ops: equal shapes, a rank-0 scalar, a [1] scalar, a row
# vector, a column, and rank 3/4 shapes broadcasting on both sides.
BROADCASTS = [
    ("same", (3, 5), (3, 5)),
    ("scalar-rank0", (3, 5), ()),
    ("scalar-[1]-left", (1,), (4, 3)),
    ("row", (4, 7), (7,)),
    ("col", (5, 1), (5, 3)),
    ("rank3", (2, 3, 4), (3, 1)),
    ("rank4", (2, 1, 3, 1), (1, 4, 1, 3)),
]
for op in ("add", "sub", "mul", "div"):
    for tag, sa, sb in BROADCASTS:
        right = Away(sb, margin=0.5) if op == "div" else In(sb)
        case(f"{op}/{tag} {dims(sa)}{'+-*/'['asmd'.index(op[0])]}{dims(sb)}", op,
             [In(sa), right])

# matmul_t: every transpose pair for 2-D, and for the batched / shared forms.
for ta in (0, 1):
    for tb in (0, 1):
        flag = "NT"[ta] + "NT"[tb]
        A = (5, 3) if ta else (3, 5)
        B = (4, 5) if tb else (5, 4)
        for tag, sa, sb in (("2d", A, B), ("3dx3d", (2,) + A, (2,) + B),
                            ("3dx2d", (2,) + A, B), ("2dx3d", A, (2,) + B)):
            case(f"matmul_t/{tag} {flag} {dims(sa)}{'^T' if ta else ''}x{dims(sb)}"
                 f"{'^T' if tb else ''}", "matmul_t",
                 [In(sa, -1.5, 1.5), In(sb, -1.5, 1.5)], ta=ta, tb=tb)
case("matmul/2d [4,3]x[3,6]", "matmul", [In((4, 3)), In((3, 6))])

case("transpose/rank2 [3,5]", "transpose", [In((3, 5))])
case("transpose/rank3 [2,3,4]", "transpose", [In((2, 3, 4))])
case("transpose/rank4 [2,2,3,2]", "transpose", [In((2, 2, 3, 2))])
case("reshape/[3,4,2]->[4,-1]", "reshape", [In((3, 4, 2))], shape=(4, -1))
case("reshape/[2,6]->[3,-1,2]", "reshape", [In((2, 6))], shape=(3, -1, 2))
case("concat/axis0 3 inputs", "concat", [In((2, 3)), In((1, 3)), In((3, 3))], axis=0)
case("concat/axis1 3 inputs", "concat", [In((2, 3)), In((2, 1)), In((2, 4))], axis=1)
case("concat/axis-1 rank3", "concat", [In((2, 2, 2)), In((2, 2, 3)), In((2, 2, 1))],
     axis=-1)
case("slice/axis0 [5,3][1:4]", "slice", [In((5, 3))], axis=0, start=1, length=3)
case("slice/axis1 [2,5,3][2:4]", "slice", [In((2, 5, 3))], axis=1, start=2, length=2)
case("slice/axis-1 [3,7][0:5]", "slice", [In((3, 7))], axis=-1, start=0, length=5)

case("sum/[3,4,2]", "sum", [In((3, 4, 2))])
case("mean/[3,4,2]", "mean", [In((3, 4, 2))])
for axis in (0, 1, 2, -1):
    for keep in (0, 1):
        if axis == -1 and keep:
            continue
        case(f"sum_axis/axis{axis} keepdim{keep} [3,4,2]", "sum_axis", [In((3, 4, 2))],
             axis=axis, keepdim=keep)
        case(f"mean_axis/axis{axis} keepdim{keep} [3,4,2]", "mean_axis", [In((3, 4, 2))],
             axis=axis, keepdim=keep)

case("scale/-1.75 [3,5]", "scale", [In((3, 5))], s=-1.75)
case("scale/0.3 [2,3,2]", "scale", [In((2, 3, 2))], s=0.3)
case("exp/[3,5]", "exp", [In((3, 5))])
case("log/[3,5]", "log", [Pos((3, 5))])
case("sqrt/[3,5]", "sqrt", [Pos((3, 5))])
case("square/[3,5]", "square", [In((3, 5))])
case("relu/[3,7]", "relu", [Away((3, 7))])
case("leaky_relu/0.01 [3,7]", "leaky_relu", [Away((3, 7))], slope=0.01)
case("leaky_relu/0.2 [2,3,3]", "leaky_relu", [Away((2, 3, 3))], slope=0.2)
case("sigmoid/[3,7]", "sigmoid", [In((3, 7), -5, 5)])
case("tanh/[3,7]", "tanh", [In((3, 7), -3, 3)])
case("gelu/[3,7]", "gelu", [In((3, 7), -3, 3)])
case("softmax/rank1 [7]", "softmax", [In((7,), -3, 3)])
case("softmax/rank2 [3,5]", "softmax", [In((3, 5), -3, 3)])
case("softmax/rank3 [2,3,4]", "softmax", [In((2, 3, 4), -3, 3)])
case("log_softmax/rank1 [7]", "log_softmax", [In((7,), -3, 3)])
case("log_softmax/rank2 [3,5]", "log_softmax", [In((3, 5), -3, 3)])
case("log_softmax/rank3 [2,3,4]", "log_softmax", [In((2, 3, 4), -3, 3)])

case("mse_loss/[3,5]", "mse_loss", [In((3, 5)), In((3, 5))])
case("bce_with_logits_loss/[3,5]", "bce_with_logits_loss",
     [Away((3, 5), -4, 4), In((3, 5), 0.0, 1.0)])
case("bce_with_logits_loss/[7] constant target", "bce_with_logits_loss",
     [Away((7,), -4, 4), In((7,), 0.0, 1.0, grad=False)])
case("cross_entropy_loss/[5,7]", "cross_entropy_loss", [In((5, 7), -3, 3)],
     labels=(3, 0, 6, 6, 2))
case("cross_entropy_loss/[4,2]", "cross_entropy_loss", [In((4, 2), -3, 3)],
     labels=(1, 0, 0, 1))
case("hinge_loss/[3,5]", "hinge_loss", [Away1((3, 5)), Signs((3, 5))])
case("hinge_loss/[9] constant target", "hinge_loss", [Away1((9,)), Signs((9,), grad=False)])


# -------------------------------------------------------------- reference

def f32(v):
    """Round a Python float to float32 and back."""
    return float(np.float32(v))


def forward(op, xs, a):
    if op == "add":
        return xs[0] + xs[1]
    if op == "sub":
        return xs[0] - xs[1]
    if op == "mul":
        return xs[0] * xs[1]
    if op == "div":
        return xs[0] / xs[1]
    if op == "matmul":
        return torch.matmul(xs[0], xs[1])
    if op == "matmul_t":
        A = xs[0].transpose(-1, -2) if a["ta"] else xs[0]
        B = xs[1].transpose(-1, -2) if a["tb"] else xs[1]
        return torch.matmul(A, B)
    if op == "transpose":
        return xs[0].transpose(-1, -2)
    if op == "reshape":
        return xs[0].reshape(a["shape"])
    if op == "concat":
        return torch.cat(xs, dim=a["axis"])
    if op == "slice":
        return xs[0].narrow(a["axis"], a["start"], a["length"])
    if op == "sum":
        return xs[0].sum()
    if op == "mean":
        return xs[0].mean()
    if op == "sum_axis":
        return xs[0].sum(dim=a["axis"], keepdim=bool(a["keepdim"]))
    if op == "mean_axis":
        return xs[0].mean(dim=a["axis"], keepdim=bool(a["keepdim"]))
    if op == "scale":
        return xs[0] * f32(a["s"])
    if op == "exp":
        return torch.exp(xs[0])
    if op == "log":
        return torch.log(xs[0])
    if op == "sqrt":
        return torch.sqrt(xs[0])
    if op == "square":
        return xs[0] * xs[0]
    if op == "relu":
        return F.relu(xs[0])
    if op == "leaky_relu":
        return F.leaky_relu(xs[0], f32(a["slope"]))
    if op == "sigmoid":
        return torch.sigmoid(xs[0])
    if op == "tanh":
        return torch.tanh(xs[0])
    if op == "gelu":
        return F.gelu(xs[0])  # exact erf form
    if op == "softmax":
        return F.softmax(xs[0], dim=-1)
    if op == "log_softmax":
        return F.log_softmax(xs[0], dim=-1)
    if op == "mse_loss":
        return F.mse_loss(xs[0], xs[1])
    if op == "bce_with_logits_loss":
        x, t = xs
        return (torch.clamp(x, min=0) - x * t + torch.log1p(torch.exp(-x.abs()))).mean()
    if op == "cross_entropy_loss":
        return F.cross_entropy(xs[0], torch.tensor(a["labels"], dtype=torch.long))
    if op == "hinge_loss":
        x, t = xs
        return torch.clamp(1 - t * x, min=0).mean()
    raise ValueError(op)


def projection(n):
    """R_i as test_ops_torch.c computes it: float32 of a double expression."""
    return torch.tensor([f32(0.5 + 0.5 * math.sin(0.91 * i + 0.3)) for i in range(n)],
                        dtype=torch.float64)


def run_case(index, name, op, specs, args):
    gen = torch.Generator().manual_seed(1000 + index)
    xs32 = [make_input(s, gen) for s in specs]
    xs = [x.to(torch.float64).requires_grad_(s["grad"]) for x, s in zip(xs32, specs)]
    out = forward(op, xs, args)
    loss = (out.reshape(-1) * projection(out.numel())).sum()
    loss.backward()
    grads = [x.grad.to(torch.float32) if s["grad"] else None for x, s in zip(xs, specs)]
    return xs32, out.detach().to(torch.float32), grads


# ----------------------------------------------------------------- output

def c_float(v):
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"non-finite fixture value {v}")
    s = "%.9g" % v
    if not any(c in s for c in ".en"):
        s += ".0"
    return s + "f"


def c_array(name, t):
    vals = [c_float(v) for v in t.reshape(-1).tolist()]
    lines, line = [], "   "
    for v in vals:
        if len(line) + len(v) + 2 > 96:
            lines.append(line)
            line = "   "
        line += " " + v + ","
    lines.append(line)
    return f"static const float {name}[{len(vals)}] = {{\n" + "\n".join(lines) + "\n};\n"


def c_dims(shape):
    dims = list(shape) + [0] * (4 - len(shape))
    return "{" + ", ".join(str(d) for d in dims) + "}"


def c_name(s):
    return s.replace('"', '\\"')


HEADER = """\
/* GENERATED by tools/gen_op_fixtures.py with PyTorch {torch}. DO NOT EDIT:
 * change the case list in the script and run
 *     /usr/bin/python3 tools/gen_op_fixtures.py
 *
 * {n} op cases. Inputs are float32 draws; the expected output and the
 * gradients of L = sum(out * R), R_i = (float)(0.5 + 0.5*sin(0.91*i + 0.3)),
 * were computed by PyTorch in float64 on those float32 values and rounded to
 * float32. Used by test/test_ops_torch.c. */
#ifndef VIKT_OP_FIXTURES_H
#define VIKT_OP_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

typedef struct fx_case {{
    const char *name;    /* "op/variant" */
    const char *op;      /* vikt_<op> */
    int n;               /* inputs */
    int rank[4];
    int64_t shape[4][4];
    const float *in[4];
    const float *grad[4]; /* expected dL/d input; NULL when held constant */
    int out_rank;
    int64_t out_shape[4];
    int64_t out_numel;
    const float *out;
    /* Op arguments. matmul_t: {{ta, tb}}; reshape: {{rank, d0, d1, d2, d3}};
     * concat: {{axis}}; slice: {{axis, start, length}}; sum_axis/mean_axis:
     * {{axis, keepdim}}. */
    int64_t iarg[5];
    float farg;            /* scale: s; leaky_relu: slope */
    const int32_t *labels; /* cross_entropy_loss */
}} fx_case;

"""


def main():
    torch.set_default_dtype(torch.float64)
    parts = [HEADER.format(torch=torch.__version__, n=len(CASES))]
    table = []
    for index, (name, op, specs, args) in enumerate(CASES):
        xs, out, grads = run_case(index, name, op, specs, args)
        tag = f"fx{index:03d}"
        parts.append(f"/* {name} */\n")
        for k, x in enumerate(xs):
            parts.append(c_array(f"{tag}_in{k}", x))
        parts.append(c_array(f"{tag}_out", out))
        for k, g in enumerate(grads):
            if g is not None:
                parts.append(c_array(f"{tag}_grad{k}", g))
        labels = "NULL"
        if "labels" in args:
            parts.append(f"static const int32_t {tag}_labels[{len(args['labels'])}] = {{"
                         + ", ".join(str(v) for v in args["labels"]) + "};\n")
            labels = f"{tag}_labels"
        parts.append("\n")

        if op == "matmul_t":
            iarg = [args["ta"], args["tb"]]
        elif op == "reshape":
            iarg = [len(args["shape"])] + list(args["shape"])
        elif op == "concat":
            iarg = [args["axis"]]
        elif op == "slice":
            iarg = [args["axis"], args["start"], args["length"]]
        elif op in ("sum_axis", "mean_axis"):
            iarg = [args["axis"], args["keepdim"]]
        else:
            iarg = []
        iarg += [0] * (5 - len(iarg))
        farg = args.get("s", args.get("slope", 0.0))
        n = len(xs)
        pad = lambda items, fill: items + [fill] * (4 - len(items))
        ranks = pad([len(s["shape"]) for s in specs], 0)
        shapes = pad([c_dims(s["shape"]) for s in specs], "{0}")
        ins = pad([f"{tag}_in{k}" for k in range(n)], "NULL")
        gs = pad([f"{tag}_grad{k}" if g is not None else "NULL" for k, g in enumerate(grads)],
                 "NULL")
        table.append(
            f'    {{"{c_name(name)}", "{op}", {n}, {{{", ".join(map(str, ranks))}}},\n'
            f'     {{{", ".join(shapes)}}},\n'
            f'     {{{", ".join(ins)}}},\n'
            f'     {{{", ".join(gs)}}},\n'
            f'     {out.dim()}, {c_dims(out.shape)}, {out.numel()}, {tag}_out,\n'
            f'     {{{", ".join(map(str, iarg))}}}, {c_float(farg)}, {labels}}},\n')

    parts.append("static const fx_case fx_cases[] = {\n")
    parts.extend(table)
    parts.append("};\n\n")
    parts.append("#define FX_NCASES ((int)(sizeof fx_cases / sizeof fx_cases[0]))\n\n")
    parts.append("#endif\n")
    text = "".join(parts)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    path = os.path.relpath(OUT, os.path.join(HERE, os.pardir))
    ops = sorted({op for _, op, _, _ in CASES})
    print(f"wrote {path}: {len(CASES)} cases, {len(ops)} ops, {len(text)} bytes")
    print("ops: " + ", ".join(ops))


if __name__ == "__main__":
    sys.exit(main())
