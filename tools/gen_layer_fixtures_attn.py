#!/usr/bin/python3
"""Generate test/fixtures/layers_attn.h: attention, transformer block and
mixture-of-experts forward values and gradients from PyTorch.

Run by a developer with PyTorch 1.13 (Debian python3-torch), never by make:

    /usr/bin/python3 tools/gen_layer_fixtures_attn.py            # writes the header
    /usr/bin/python3 tools/gen_layer_fixtures_attn.py --stdout   # prints it instead

Parameters and inputs are drawn in float32 (so the C side loads them
exactly); the reference is then computed in float64, so the fixtures hold the
exact answer and the C test measures only vikt's own float32 error.

Loss: L = sum(out * R) with R[i] = 0.5 + 0.5*sin(0.91*i + 0.3) (the
projection the C gradient checker uses), plus AUX_WEIGHT * aux for the
mixture of experts, so the router's gradient has both paths.

The layers are written out by hand with the names vikt uses (q, k, v, out;
ln1, attn, ln2, mlp.fc1, mlp.fc2; router.weight, experts.<e>.fc1/fc2) and each
is checked here against PyTorch's own module where one exists:
torch.nn.MultiheadAttention (packed in_proj) for attention and
torch.nn.TransformerEncoderLayer(norm_first=True, activation="gelu") for the
block. PyTorch has no mixture-of-experts layer; the routing below follows the
Switch Transformer (k = 1: gate p_e) and Mixtral (k = 2: top-2 probabilities
renormalized), with the load-balancing loss E * sum_e f_e * P_e where f_e is
the fraction of tokens whose first choice is e (a constant) and P_e the mean
router probability of e.

Mixture-of-experts inputs are redrawn until every routing decision has a
clear margin (MOE_MARGIN between the probabilities that decide it), so
float32 rounding cannot change the choice on the C side.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

AUX_WEIGHT = 0.5
MOE_MARGIN = 2e-3


def projection(n):
    return torch.tensor([0.5 + 0.5 * math.sin(0.91 * i + 0.3) for i in range(n)],
                        dtype=torch.float32).double()


def uniform(shape, bound, gen):
    """float32 U(-bound, bound), returned as float64 holding those values."""
    return ((torch.rand(*shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound).double()


def linear_params(prefix, n_in, n_out, gen):
    b = 1 / math.sqrt(n_in)
    return [(prefix + ".weight", uniform((n_out, n_in), b, gen)),
            (prefix + ".bias", uniform((n_out,), b, gen))]


def linear(p, prefix, x):
    return F.linear(x, p[prefix + ".weight"], p[prefix + ".bias"])


# ---------------------------------------------------------------- attention

def attention(p, name, x, heads, causal):
    n, t, d = x.shape
    dh = d // heads

    def split(v):
        return v.reshape(n, t, heads, dh).permute(0, 2, 1, 3).reshape(n * heads, t, dh)

    q, k, v = (split(linear(p, name + "." + s, x)) for s in ("q", "k", "v"))
    scores = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(dh)
    if causal:
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    ctx = torch.bmm(torch.softmax(scores, dim=-1), v)
    ctx = ctx.reshape(n, heads, t, dh).permute(0, 2, 1, 3).reshape(n, t, d)
    return linear(p, name + ".out", ctx)


def attention_params(name, d, gen):
    ps = []
    for s in ("q", "k", "v", "out"):
        ps += linear_params(name + "." + s, d, d, gen)
    return ps


def causal_mask(t):
    return torch.ones(t, t, dtype=torch.bool).triu(1)


def check_against_mha(p, name, x, heads, causal):
    d = x.shape[-1]
    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([p[name + ".q.weight"], p[name + ".k.weight"],
                                            p[name + ".v.weight"]]))
        mha.in_proj_bias.copy_(torch.cat([p[name + ".q.bias"], p[name + ".k.bias"],
                                          p[name + ".v.bias"]]))
        mha.out_proj.weight.copy_(p[name + ".out.weight"])
        mha.out_proj.bias.copy_(p[name + ".out.bias"])
        mask = causal_mask(x.shape[1]) if causal else None
        want, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
        got = attention(p, name, x, heads, causal)
    assert torch.allclose(got, want, rtol=0, atol=1e-12), "attention differs from MHA"


# ---------------------------------------------------------------- transformer

def block(p, name, x, heads, causal):
    ln1 = F.layer_norm(x, x.shape[-1:], p[name + ".ln1.weight"], p[name + ".ln1.bias"], 1e-5)
    h = x + attention(p, name + ".attn", ln1, heads, causal)
    ln2 = F.layer_norm(h, h.shape[-1:], p[name + ".ln2.weight"], p[name + ".ln2.bias"], 1e-5)
    return h + linear(p, name + ".mlp.fc2", F.gelu(linear(p, name + ".mlp.fc1", ln2)))


def block_params(name, d, hidden, gen):
    # LayerNorm starts at ones/zeros; perturb it so the fixture exercises γ and β.
    ps = [(name + ".ln1.weight", 1 + uniform((d,), 0.3, gen)),
          (name + ".ln1.bias", uniform((d,), 0.3, gen))]
    ps += attention_params(name + ".attn", d, gen)
    ps += [(name + ".ln2.weight", 1 + uniform((d,), 0.3, gen)),
           (name + ".ln2.bias", uniform((d,), 0.3, gen))]
    ps += linear_params(name + ".mlp.fc1", d, hidden, gen)
    ps += linear_params(name + ".mlp.fc2", hidden, d, gen)
    # 1 + U(.) is computed in float64; round to float32 so C loads it exactly.
    return [(k, v.float().double()) for k, v in ps]


def check_against_encoder_layer(p, name, x, heads, hidden, causal):
    d = x.shape[-1]
    layer = torch.nn.TransformerEncoderLayer(d, heads, hidden, dropout=0.0, activation="gelu",
                                             batch_first=True, norm_first=True).double()
    layer.eval()
    a = name + ".attn"
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([p[a + ".q.weight"], p[a + ".k.weight"],
                                                        p[a + ".v.weight"]]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([p[a + ".q.bias"], p[a + ".k.bias"],
                                                      p[a + ".v.bias"]]))
        layer.self_attn.out_proj.weight.copy_(p[a + ".out.weight"])
        layer.self_attn.out_proj.bias.copy_(p[a + ".out.bias"])
        for mine, theirs in (("ln1", layer.norm1), ("ln2", layer.norm2),
                             ("mlp.fc1", layer.linear1), ("mlp.fc2", layer.linear2)):
            theirs.weight.copy_(p[name + "." + mine + ".weight"])
            theirs.bias.copy_(p[name + "." + mine + ".bias"])
        mask = causal_mask(x.shape[1]) if causal else None
        want = layer(x, src_mask=mask)
        got = block(p, name, x, heads, causal)
    assert torch.allclose(got, want, rtol=0, atol=1e-12), "block differs from encoder layer"


# ---------------------------------------------------------- mixture of experts

def moe_params(name, d, experts, hidden, gen):
    ps = [(name + ".router.weight", uniform((experts, d), 1 / math.sqrt(d), gen))]
    for e in range(experts):
        ps += linear_params("%s.experts.%d.fc1" % (name, e), d, hidden, gen)
        ps += linear_params("%s.experts.%d.fc2" % (name, e), hidden, d, gen)
    return ps


def moe(p, name, x, experts, top_k):
    d = x.shape[-1]
    xf = x.reshape(-1, d)
    tokens = xf.shape[0]
    probs = torch.softmax(xf @ p[name + ".router.weight"].t(), dim=-1)
    top_p, top_e = torch.topk(probs, top_k, dim=-1)  # selection: not differentiated
    gates = top_p if top_k == 1 else top_p / top_p.sum(dim=-1, keepdim=True)
    y = torch.zeros_like(xf)
    for e in range(experts):
        rows, slot = (top_e == e).nonzero(as_tuple=True)
        if rows.numel() == 0:
            continue  # an expert without tokens is not run
        pre = "%s.experts.%d" % (name, e)
        out = linear(p, pre + ".fc2", F.gelu(linear(p, pre + ".fc1", xf[rows])))
        y = y.index_add(0, rows, out * gates[rows, slot].unsqueeze(1))
    first = torch.bincount(top_e[:, 0], minlength=experts).double() / tokens
    aux = experts * torch.sum(first * probs.mean(dim=0))
    return y.reshape(x.shape), aux, top_e


def routing_margin(p, name, x, top_k):
    """The smallest probability gap that decides a choice: first vs second
    (the first choice sets f_e; for k = 1 the selection) and, for k = 2,
    second vs third."""
    with torch.no_grad():
        xf = x.reshape(-1, x.shape[-1])
        probs = torch.softmax(xf @ p[name + ".router.weight"].t(), dim=-1)
        s = torch.sort(probs, dim=-1, descending=True).values
        gap = (s[:, 0] - s[:, 1]).min()
        if top_k == 2 and s.shape[1] > 2:
            gap = min(gap, (s[:, 1] - s[:, 2]).min())
        return float(gap)


# ------------------------------------------------------------------ the cases

CASES = [
    # name, kind, layer, x shape, settings
    ("attention_causal", "attention", "attn", (2, 5, 8), dict(heads=2, causal=1)),
    ("attention_full", "attention", "attn", (2, 5, 8), dict(heads=2, causal=0)),
    ("block_causal", "block", "block0", (2, 5, 8), dict(heads=2, mlp_hidden=12, causal=1)),
    ("moe_top1", "moe", "moe", (2, 5, 6), dict(experts=4, hidden=7, top_k=1)),
    ("moe_top2", "moe", "moe", (2, 5, 6), dict(experts=4, hidden=7, top_k=2)),
]


def make_case(index, name, kind, layer, shape, cfg):
    gen = torch.Generator().manual_seed(1000 + index)
    for _attempt in range(200):
        x = uniform(shape, 1.0, gen)
        d = shape[-1]
        if kind == "attention":
            params = attention_params(layer, d, gen)
        elif kind == "block":
            params = block_params(layer, d, cfg["mlp_hidden"], gen)
        else:
            params = moe_params(layer, d, cfg["experts"], cfg["hidden"], gen)
        p = dict(params)
        if kind != "moe" or routing_margin(p, layer, x, cfg["top_k"]) > MOE_MARGIN:
            break
    else:
        raise RuntimeError(name + ": no draw with clear routing")

    x.requires_grad_()
    for v in p.values():
        v.requires_grad_()
    aux = None
    note = ""
    if kind == "attention":
        check_against_mha(p, layer, x.detach(), cfg["heads"], cfg["causal"])
        out = attention(p, layer, x, cfg["heads"], cfg["causal"])
    elif kind == "block":
        check_against_encoder_layer(p, layer, x.detach(), cfg["heads"], cfg["mlp_hidden"],
                                    cfg["causal"])
        out = block(p, layer, x, cfg["heads"], cfg["causal"])
    else:
        out, aux, top_e = moe(p, layer, x, cfg["experts"], cfg["top_k"])
        counts = torch.bincount(top_e.reshape(-1), minlength=cfg["experts"]).tolist()
        note = "selections per expert %s, routing margin %.3g" % (
            counts, routing_margin(p, layer, x.detach(), cfg["top_k"]))
    loss = torch.sum(out.reshape(-1) * projection(out.numel()))
    if aux is not None:
        loss = loss + AUX_WEIGHT * aux
    loss.backward()
    tensors = [("x", x)] + [(k, p[k]) for k, _ in params]
    return dict(name=name, kind=kind, layer=layer, cfg=cfg, out=out.detach(),
                aux=None if aux is None else float(aux), tensors=tensors, note=note)


# ------------------------------------------------------------------- emitting

def f32(v):
    s = "%.9g" % v
    if "e" not in s and "." not in s and "n" not in s:
        s += ".0"
    return s + "f"


def floats(t):
    vals = [f32(v) for v in t.detach().reshape(-1).float().tolist()]
    lines = []
    for i in range(0, len(vals), 6):
        lines.append("    " + ", ".join(vals[i:i + 6]))
    return "{\n" + ",\n".join(lines) + "}"


def ident(s):
    return "".join(c if c.isalnum() else "_" for c in s)


def emit(cases, out):
    w = out.write
    w("/* Generated by tools/gen_layer_fixtures_attn.py with PyTorch %s; do not edit.\n"
      " * Regenerate: /usr/bin/python3 tools/gen_layer_fixtures_attn.py\n"
      " *\n"
      " * Attention, pre-LN transformer block and mixture of experts: inputs and\n"
      " * parameters (float32, PyTorch layout and vikt names), the float64 reference\n"
      " * output and the gradients of L = sum(out * R) + aux_weight * aux with\n"
      " * R[i] = 0.5 + 0.5*sin(0.91*i + 0.3). Include after vikt.h. */\n"
      % torch.__version__)
    w("#ifndef VIKT_LAYERS_ATTN_H\n#define VIKT_LAYERS_ATTN_H\n\n#include <stdint.h>\n\n")
    w("typedef struct la_tensor {\n"
      "    const char *name; /* \"x\" for the input, else the parameter name */\n"
      "    int rank;\n    int64_t shape[4];\n"
      "    const float *value;\n    const float *grad; /* dL/d(this) */\n} la_tensor;\n\n")
    w("enum la_kind { LA_ATTENTION = 0, LA_BLOCK = 1, LA_MOE = 2 };\n\n")
    w("typedef struct la_case {\n"
      "    const char *name;\n    int kind;          /* enum la_kind */\n"
      "    const char *layer; /* the layer name the parameters carry */\n"
      "    int64_t heads, mlp_hidden, experts, hidden;\n    int causal, top_k;\n"
      "    const float *out;  /* the shape of x (tensors[0]) */\n"
      "    float aux;         /* the auxiliary loss (mixture of experts) */\n"
      "    float aux_weight;  /* its weight in L; 0 for the other layers */\n"
      "    int ntensors;      /* x, then the parameters in creation order */\n"
      "    const la_tensor *tensors;\n} la_case;\n\n")
    for c in cases:
        cid = ident(c["name"])
        if c["note"]:
            w("/* %s: %s */\n" % (c["name"], c["note"]))
        w("static const float la_%s_out[] = %s;\n" % (cid, floats(c["out"])))
        for tname, t in c["tensors"]:
            tid = cid + "_" + ident(tname)
            w("static const float la_%s_value[] = %s;\n" % (tid, floats(t)))
            # An expert that got no token has no gradient at all: zeros.
            grad = t.grad if t.grad is not None else torch.zeros_like(t)
            w("static const float la_%s_grad[] = %s;\n" % (tid, floats(grad)))
        w("static const la_tensor la_%s_tensors[] = {\n" % cid)
        for tname, t in c["tensors"]:
            tid = cid + "_" + ident(tname)
            shape = list(t.shape) + [0] * (4 - t.dim())
            w("    {\"%s\", %d, {%s}, la_%s_value, la_%s_grad},\n"
              % (tname, t.dim(), ", ".join(str(s) for s in shape), tid, tid))
        w("};\n\n")
    w("static const la_case la_cases[] = {\n")
    for c in cases:
        cid = ident(c["name"])
        cfg = c["cfg"]
        kind = {"attention": "LA_ATTENTION", "block": "LA_BLOCK", "moe": "LA_MOE"}[c["kind"]]
        w("    {\"%s\", %s, \"%s\", %d, %d, %d, %d, %d, %d, la_%s_out, %s, %s, %d,"
          " la_%s_tensors},\n" % (c["name"], kind, c["layer"], cfg.get("heads", 0), cfg.get("mlp_hidden", 0),
             cfg.get("experts", 0), cfg.get("hidden", 0), cfg.get("causal", 0),
             cfg.get("top_k", 0), cid, f32(c["aux"] or 0.0),
             f32(AUX_WEIGHT if c["aux"] is not None else 0.0), len(c["tensors"]), cid))
    w("};\n\n#define LA_NCASES ((int)(sizeof la_cases / sizeof la_cases[0]))\n\n#endif\n")


def main():
    torch.set_default_dtype(torch.float64)
    cases = [make_case(i, *spec) for i, spec in enumerate(CASES)]
    if "--stdout" in sys.argv:
        emit(cases, sys.stdout)
        return
    path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                         "test", "fixtures", "layers_attn.h"))
    with open(path, "w") as f:
        emit(cases, f)
    for c in cases:
        if c["note"]:
            print(c["name"] + ":", c["note"])
    print("wrote", path)


if __name__ == "__main__":
    main()
