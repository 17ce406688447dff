#!/usr/bin/python3
"""Safetensors fixtures for vikt's loader, and the check of a vikt-written file.

The format is written and read by hand here (no safetensors package): an
8-byte little-endian header length, the JSON header, the data.

    /usr/bin/python3 tools/gen_safetensors_fixtures.py
        Regenerates, from PyTorch 1.13:
        test/fixtures/safetensors/golden_*.safetensors  state_dicts of a torch
            MLP in F32, F16, BF16 and F64, special values in every float
            dtype, and a module with integer and bool tensors
            (num_batches_tracked, buffers), as torch and Hugging Face write
            them (no vikt metadata);
        test/fixtures/safetensors/bad_*.safetensors     one malformed file per
            case the strict loader must reject;
        test/fixtures/safetensors_fixtures.h  the expected float32 bits, the
            torch outputs, and the error code and message of every bad file;
        test/fuzz/corpus/*                     seed inputs for the fuzzer (among
            them a checkpoint and LoRA adapter files the fuzz target loads as
            such).

    /usr/bin/python3 tools/gen_safetensors_fixtures.py --check [FILE]
        Reads a file written by vikt (default: the committed
        test/fixtures/safetensors/vikt_mlp.safetensors, which `make check`
        proves is byte-identical to what vikt_save writes today) strictly,
        verifies every CRC32C, loads it into the equivalent torch.nn module
        with load_state_dict, checks every value and runs it.
        To check a fresh file: VIKT_REGEN_FIXTURES=1 build/test/test_safetensors
        rewrites vikt_mlp.safetensors, then run --check.
"""

import base64
import json
import math
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "test" / "fixtures" / "safetensors"
HEADER = ROOT / "test" / "fixtures" / "safetensors_fixtures.h"
CORPUS = ROOT / "test" / "fuzz" / "corpus"

# ----------------------------------------------------------------- CRC32C

def _crc_table():
    poly, table = 0x82F63B78, []  # Castagnoli 0x1EDC6F41, reflected
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (poly if c & 1 else 0)
        table.append(c)
    return table


CRC_TABLE = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

# ------------------------------------------------------- writing, by hand

def raw_file(header, data=b"", length=None):
    """A file from header text (bytes or str) and data, with any length."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def st_file(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes), laid out in order."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if pad:
        text += b" " * (-len(text) % 8)
    return raw_file(text, b"".join(t[3] for t in tensors))


def vikt_style(tensors, kinds=None, masks=None):
    """As vikt_save writes: format pt, a CRC32C per tensor, kinds, and pruning
    masks (lists of 0/1) as base64 bitmaps, value i in bit i % 8 of byte i / 8."""
    meta = {"format": "pt"}
    for name, _, _, raw in tensors:
        meta["vikt.crc32c." + name] = "%08x" % crc32c(raw)
    for name, kind in (kinds or {}).items():
        meta["vikt.kind." + name] = kind
    for name, mask in (masks or {}).items():
        bitmap = bytearray((len(mask) + 7) // 8)
        for i, keep in enumerate(mask):
            bitmap[i // 8] |= keep << (i % 8)
        meta["vikt.mask." + name] = base64.b64encode(bytes(bitmap)).decode("ascii")
    return st_file(tensors, meta)


def tensor_bytes(t):
    import torch
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def f32(*values):
    return struct.pack("<%df" % len(values), *values)

# ------------------------------------------------------- reading, by hand

DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
              "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def read_strict(path):
    """(metadata, {name: (dtype, shape, raw bytes)}) after every check."""
    blob = Path(path).read_bytes()
    if len(blob) < 8:
        raise ValueError("shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > 100_000_000 or 8 + n > len(blob):
        raise ValueError("bad header length %d" % n)
    if (8 + n) % 8:
        raise ValueError("data does not start at a multiple of 8")
    header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    spans, out = [], {}
    for name, info in header.items():
        if set(info) != {"dtype", "shape", "data_offsets"} or not name:
            raise ValueError("bad entry %r" % name)
        begin, end = info["data_offsets"]
        count = math.prod(info["shape"])
        if end - begin != count * DTYPE_SIZE[info["dtype"]]:
            raise ValueError("size of %r" % name)
        spans.append((begin, end, name))
        out[name] = (info["dtype"], info["shape"], data[begin:end])
    expect = 0
    for begin, end, name in sorted(spans):
        if begin != expect:
            raise ValueError("offsets of %r" % name)
        expect = end
    if expect != len(data):
        raise ValueError("data does not end at the end of the file")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise ValueError("metadata %r is not a string" % key)
        if key.startswith("vikt.crc32c."):
            name = key[len("vikt.crc32c."):]
            if int(value, 16) != crc32c(out[name][2]):
                raise ValueError("CRC32C of %r" % name)
    return meta, out

# --------------------------------------------------------- the torch MLP

X = [[0.5, -1.0, 0.25, 2.0, -0.75], [1.5, 0.125, -0.5, 1.0, 0.0]]


def make_mlp(with_bn):
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(5, 4)
            if with_bn:
                self.bn = nn.BatchNorm1d(4)
            self.fc2 = nn.Linear(4, 3)

        def forward(self, x):
            h = self.fc1(x)
            if with_bn:
                h = self.bn(h)
            return self.fc2(torch.relu(h))

    return MLP()


def pattern(k, i):
    """Element i of tensor k of vikt_mlp.safetensors, as test_safetensors.c
    sets it: exact in float32 (k in vikt's order: fc1.weight, fc1.bias,
    bn.weight, bn.bias, fc2.weight, fc2.bias, bn.running_mean, bn.running_var;
    the running variance is kept positive)."""
    if k == 7:
        return 0.5 + i * 0.125
    return ((i * 7 + k * 13) % 97 - 48) / 64.0


VIKT_MLP_ORDER = ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight", "fc2.bias",
                  "bn.running_mean", "bn.running_var"]


def vikt_mlp_torch():
    """The torch module with the pattern values, in eval mode."""
    import torch
    mlp = make_mlp(True)
    sd = mlp.state_dict()
    for k, name in enumerate(VIKT_MLP_ORDER):
        n = sd[name].numel()
        sd[name] = torch.tensor([pattern(k, i) for i in range(n)]).reshape(sd[name].shape)
    mlp.load_state_dict(sd)
    return mlp.eval()

# ----------------------------------------------------------- C emitters

def c_bits(t):
    import torch
    vals = t.to(torch.float32).reshape(-1).view(torch.int32).tolist()
    return ", ".join("0x%08xu" % (v & 0xFFFFFFFF) for v in vals)


def c_float(v):
    if not math.isfinite(v):
        return "NAN" if math.isnan(v) else ("-" if v < 0 else "") + "INFINITY"
    s = "%.9g" % v
    return s + (".0f" if all(c not in s for c in ".e") else "f")


def c_floats(values):
    return ", ".join(c_float(v) for v in values)


def c_string(s):
    return json.dumps(s)

# ------------------------------------------------------------ goldens

GOLDEN_DTYPES = [("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"), ("F64", "float64")]


def goldens(files, lines):
    import torch
    torch.manual_seed(0)
    mlp = make_mlp(False)
    names = list(mlp.state_dict().keys())
    x = torch.tensor(X)
    lines.append("/* The torch MLP (fc1: Linear(5, 4), fc2: Linear(4, 3), seed 0) in four dtypes. */")
    lines.append("static const char *const golden_mlp_names[4] = {%s};" %
                 ", ".join(c_string(n) for n in names))
    lines.append("static const float golden_mlp_x[10] = {%s};" % c_floats(sum(X, [])))
    cases = []
    for st_dtype, torch_dtype in GOLDEN_DTYPES:
        dt = getattr(torch, torch_dtype)
        sd = {k: v.to(dt) for k, v in mlp.state_dict().items()}
        fname = "golden_mlp_%s.safetensors" % st_dtype.lower()
        files[FIXTURES / fname] = st_file(
            [(k, st_dtype, v.shape, tensor_bytes(v)) for k, v in sd.items()], {"format": "pt"})
        # What vikt computes: float32 arithmetic on the float32 values it loads.
        as32 = make_mlp(False)
        as32.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()})
        with torch.no_grad():
            y = as32(x).reshape(-1).tolist()
        tag = st_dtype.lower()
        for i, k in enumerate(names):
            lines.append("static const uint32_t golden_mlp_%s_%d[] = {%s};" % (tag, i, c_bits(sd[k])))
        lines.append("static const float golden_mlp_%s_y[6] = {%s};" % (tag, c_floats(y)))
        cases.append('{"%s", {golden_mlp_%s_0, golden_mlp_%s_1, golden_mlp_%s_2, golden_mlp_%s_3}, '
                     'golden_mlp_%s_y}' % (fname, tag, tag, tag, tag, tag))
    lines.append("typedef struct golden_mlp_case {\n    const char *file;\n"
                 "    const uint32_t *bits[4];\n    const float *y;\n} golden_mlp_case;")
    lines.append("static const golden_mlp_case golden_mlp_cases[] = {\n    %s,\n};" %
                 ",\n    ".join(cases))


SPECIALS = [0.0, -0.0, 1.0, -2.5, 0.1, -1234.5678, 65504.0, 65520.0, 6.103515625e-05,
            5.960464477539063e-08, 3.0e-06, 1e-40, 3.4e38, 1e10, 1e-300, math.inf, -math.inf,
            math.nan]


def specials(files, lines):
    """Edge values in every float dtype, in one file: mixed dtypes, odd
    offsets, subnormals, overflow to infinity, NaN."""
    import torch
    src = torch.tensor(SPECIALS, dtype=torch.float64)
    tensors, names = [], []
    for st_dtype, torch_dtype in GOLDEN_DTYPES:
        t = src.to(getattr(torch, torch_dtype))
        name = st_dtype.lower()
        tensors.append((name, st_dtype, t.shape, tensor_bytes(t)))
        names.append(name)
        lines.append("static const uint32_t golden_special_%s[%d] = {%s};" % (name, len(SPECIALS), c_bits(t)))
    # Odd sizes first, so the F32 and F64 data are not aligned in the file.
    files[FIXTURES / "golden_specials.safetensors"] = st_file(
        [tensors[1], tensors[2], tensors[0], tensors[3]], {"format": "pt"})
    lines.append("#define GOLDEN_SPECIALS %d" % len(SPECIALS))
    lines.append("static const char *const golden_special_names[4] = {%s};" %
                 ", ".join(c_string(n) for n in names))
    lines.append("static const uint32_t *const golden_special_bits[4] = {%s};" %
                 ", ".join("golden_special_" + n for n in names))


def hf_order(tensors):
    """The order the safetensors package lays tensors out in: dtypes from
    the last of its list (U64) to the first (BOOL), then by name."""
    order = list(DTYPE_SIZE)
    return sorted(tensors, key=lambda t: (-order.index(t[1]), t[0]))


TORCH_DTYPES = {"torch.bool": "BOOL", "torch.uint8": "U8", "torch.int8": "I8", "torch.int16": "I16",
                "torch.int32": "I32", "torch.int64": "I64", "torch.float32": "F32"}


def torch_int_dtypes(files, lines):
    """A torch module's state_dict with what a model holds besides float
    weights: BatchNorm's num_batches_tracked (I64, 1 after one training
    step) and buffers of BOOL, U8, I8, I16 and I32, in the package's order."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.bn = nn.BatchNorm1d(2)
            self.register_buffer("mask", torch.tensor([[True, False, True], [False, False, True]]))
            self.register_buffer("pixels", torch.tensor([0, 128, 255], dtype=torch.uint8))
            self.register_buffer("offsets", torch.tensor([-128, 0, 127], dtype=torch.int8))
            self.register_buffer("counts", torch.tensor([-300, 7], dtype=torch.int16))
            self.register_buffer("token_ids", torch.tensor([0, 7, -3, 2147483647], dtype=torch.int32))

    torch.manual_seed(1)
    net = Net()
    net.bn(net.fc(torch.randn(4, 3)))  # one training step moves num_batches_tracked to 1
    tensors = [(k, TORCH_DTYPES[str(v.dtype)], tuple(v.shape), tensor_bytes(v))
               for k, v in net.state_dict().items()]
    tensors = hf_order(tensors)
    files[FIXTURES / "golden_torch_int_dtypes.safetensors"] = st_file(tensors, {"format": "pt"})
    sd = net.state_dict()
    lines.append("/* golden_torch_int_dtypes.safetensors: a torch module with integer and bool\n"
                 " * tensors, in file order: name, dtype, shape, values as float32. */")
    lines.append("typedef struct golden_int_tensor {\n    const char *name, *dtype;\n    int rank;\n"
                 "    int64_t shape[4];\n    int64_t numel;\n    const float *values;\n} golden_int_tensor;")
    rows = []
    for i, (name, dtype, shape, _) in enumerate(tensors):
        values = sd[name].to(torch.float64).reshape(-1).tolist()
        lines.append("static const float golden_int_%d[] = {%s};" % (i, c_floats(values) or "0"))
        dims = ", ".join(str(d) for d in shape) or "0"
        rows.append('{%s, "%s", %d, {%s}, %d, golden_int_%d}' %
                    (c_string(name), dtype, len(shape), dims, sd[name].numel(), i))
    lines.append("static const golden_int_tensor golden_int_tensors[] = {\n    %s,\n};" % ",\n    ".join(rows))


def vikt_mlp_output(lines):
    import torch
    with torch.no_grad():
        y = vikt_mlp_torch()(torch.tensor(X)).reshape(-1).tolist()
    lines.append("/* torch's output on golden_mlp_x for the MLP with BatchNorm1d (eval) whose\n"
                 " * values are the pattern of vikt_mlp.safetensors. */")
    lines.append("static const float vikt_mlp_y[6] = {%s};" % c_floats(y))

# ----------------------------------------------------- malformed files

def T(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def J(obj):
    return json.dumps(obj, separators=(",", ":"))


A8 = f32(1.0, 2.0)


def bad_cases():
    """(name, file bytes, status, message fragment)."""
    F, E = "VIKT_ERR_FORMAT", []
    add = lambda name, blob, needle, code=F: E.append((name, blob, code, needle))
    short = "too short for the 8-byte header length"
    add("bad_empty_file", b"", short)
    add("bad_truncated_length", b"\x02\x00\x00", short)
    add("bad_header_past_eof", raw_file("{}", length=1000), "runs past the end of the file")
    add("bad_header_too_large", raw_file("{}", length=100_000_001), "above the limit of 100000000")
    add("bad_header_length_overflow", raw_file("{}", length=2**64 - 1), "overflows 8 + length")
    add("bad_empty_header", raw_file(""), "unexpected end of text")
    add("bad_utf8", raw_file(b'{"a\xc3(":' + J(T()).encode() + b"}", A8), "invalid UTF-8 in the header")
    add("bad_utf8_overlong", raw_file(b'{"\xc0\xaf":' + J(T()).encode() + b"}", A8), "invalid UTF-8")
    add("bad_utf8_surrogate", raw_file(b'{"\xed\xa0\x80":' + J(T()).encode() + b"}", A8), "invalid UTF-8")
    add("bad_utf8_outside_string", raw_file(b'{"a":' + J(T()).encode() + b"}\xff", A8), "invalid UTF-8")
    add("bad_lone_surrogate", raw_file('{"\\ud800":' + J(T()) + "}", A8), "unpaired surrogate")
    add("bad_control_char", raw_file('{"a\nb":' + J(T()) + "}", A8), "control character in a string")
    add("bad_json_trailing_comma", raw_file('{"a":' + J(T()) + ",}", A8), "invalid JSON in the header at byte")
    add("bad_json_missing_colon", raw_file('{"a" ' + J(T()) + "}", A8), "expected ':' after a key")
    add("bad_json_single_quotes", raw_file("{'a':1}", A8), "expected a string key")
    add("bad_json_text_after", raw_file('{"a":' + J(T()) + "} {}", A8), "text after the value")
    add("bad_json_leading_zero", raw_file('{"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}', A8),
        "leading zero")
    deep = "[" * 100 + "]" * 100
    add("bad_deep_nesting", raw_file('{"__metadata__":{"k":' + deep + "}}"), "more than 64 deep")
    add("bad_header_array", raw_file("[]"), "the header is not a JSON object")
    add("bad_header_string", raw_file('"{}"'), "the header is not a JSON object")
    add("bad_entry_not_object", raw_file('{"a":5}'), "tensor 'a': its entry is not an object")
    add("bad_unknown_dtype", raw_file(J({"a": T("F31")}), A8), "tensor 'a': unknown dtype 'F31'")
    add("bad_dtype_not_string", raw_file('{"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}', A8),
        "dtype is not a string")
    add("bad_duplicate_name", raw_file('{"a":' + J(T()) + ',"a":' + J(T("F32", (2,), (8, 16))) + "}",
                                       A8 + A8), "duplicate tensor name 'a'")
    add("bad_duplicate_metadata", raw_file('{"__metadata__":{},"__metadata__":{}}'),
        "duplicate name '__metadata__'")
    add("bad_duplicate_metadata_key", raw_file('{"__metadata__":{"k":"1","k":"2"}}'),
        "duplicate metadata key 'k'")
    add("bad_size_mismatch", raw_file(J({"a": T("F32", (2, 3), (0, 20))}), bytes(20)),
        "shape 2x3 of F32 is 24 bytes, data_offsets span 20")
    add("bad_shape_overflow", raw_file(J({"a": T("F32", (2**40, 2**40), (0, 8))}), A8),
        "tensor 'a': shape overflows")
    add("bad_shape_dim_huge", raw_file('{"a":{"dtype":"F32","shape":[18446744073709551616],'
                                       '"data_offsets":[0,8]}}', A8), "tensor 'a': shape overflows")
    add("bad_shape_negative", raw_file(J({"a": T("F32", (-1,))}), A8), "shape must hold non-negative integers")
    add("bad_shape_float", raw_file('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', A8),
        "shape must hold non-negative integers")
    add("bad_shape_not_array", raw_file('{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}', A8),
        "shape is not an array")
    add("bad_rank_too_large", raw_file(J({"a": T("F32", (1,) * 33, (0, 4))}), f32(1.0)), "rank above 32")
    add("bad_offsets_not_zero", raw_file(J({"a": T("F32", (2,), (4, 12))}), bytes(12)),
        "data_offsets do not start at 0")
    add("bad_offsets_reversed", raw_file(J({"a": T("F32", (2,), (8, 0))}), A8), "are out of order")
    add("bad_offsets_overlap", raw_file(J({"a": T(), "b": T("F32", (2,), (4, 12))}), bytes(12)),
        "tensors 'a' and 'b' overlap")
    add("bad_offsets_gap", raw_file(J({"a": T(), "b": T("F32", (2,), (12, 20))}), bytes(20)),
        "gap of 4 bytes between tensors 'a' and 'b'")
    add("bad_offsets_not_at_eof", raw_file(J({"a": T()}), bytes(12)),
        "4 bytes after the last tensor")
    add("bad_offsets_three", raw_file(J({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 8]}}), A8),
        "data_offsets must be two")
    add("bad_offsets_huge", raw_file('{"a":{"dtype":"F32","shape":[2],'
                                     '"data_offsets":[0,99999999999999999999]}}', A8), "data_offsets out of range")
    add("bad_truncated_data", raw_file(J({"a": T(), "b": T("F32", (2,), (8, 16))}), bytes(12)),
        "truncated: tensor 'b' ends at byte 16")
    add("bad_empty_name", raw_file(J({"": T()}), A8), "empty tensor name")
    add("bad_name_with_nul", raw_file('{"a\\u0000b":' + J(T()) + "}", A8), "holds a NUL character")
    add("bad_missing_field", raw_file('{"a":{"dtype":"F32","shape":[2]}}', A8), "tensor 'a': no 'data_offsets'")
    add("bad_unknown_field", raw_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', A8),
        "tensor 'a': unknown field 'x'")
    add("bad_repeated_field", raw_file('{"a":{"dtype":"F32","dtype":"F32","shape":[2],'
                                       '"data_offsets":[0,8]}}', A8), "field 'dtype' appears twice")
    add("bad_metadata_not_object", raw_file('{"__metadata__":[]}'), "__metadata__ is not an object")
    add("bad_metadata_not_string", raw_file('{"__metadata__":{"format":1}}'),
        "metadata 'format': the value is not a string")
    add("bad_metadata_nul", raw_file('{"__metadata__":{"k":"a\\u0000b"}}'),
        "metadata 'k': NUL character in the key or value")
    add("bad_crc_not_hex", raw_file(J({"__metadata__": {"vikt.crc32c.a": "12345xyz"}, "a": T()}), A8),
        "is not 8 hexadecimal digits")
    add("bad_crc_no_tensor", raw_file(J({"__metadata__": {"vikt.crc32c.b": "00000000"}, "a": T()}), A8),
        "metadata 'vikt.crc32c.b' names no tensor")
    good = vikt_style([("a", "F32", (2,), A8), ("b", "F32", (3,), f32(1.0, 2.0, 3.0))])
    flipped = bytearray(good)
    flipped[-5] ^= 0x10  # a bit of b's second value
    add("bad_crc_mismatch", bytes(flipped), "tensor 'b': CRC32C mismatch")
    return E


def malformed(files, lines):
    lines.append("/* One malformed file per case: the status vikt_load returns and a part of\n"
                 " * its message (which also names the file). */")
    lines.append("typedef struct bad_case {\n    const char *file;\n    int status;\n"
                 "    const char *needle;\n} bad_case;")
    rows = []
    for name, blob, code, needle in bad_cases():
        files[FIXTURES / (name + ".safetensors")] = blob
        rows.append('{"%s.safetensors", %s, %s}' % (name, code, c_string(needle)))
    lines.append("static const bad_case bad_cases[] = {\n    %s,\n};" % ",\n    ".join(rows))

# --------------------------------------------------------- fuzz seeds

def seeds(files):
    import torch
    one = [("t", "F32", (2,), A8)]
    files[CORPUS / "empty_object"] = raw_file("{}")
    files[CORPUS / "metadata_only"] = st_file([], {"format": "pt", "k": "v"})
    files[CORPUS / "f32"] = st_file(one, {"format": "pt"})
    files[CORPUS / "unpadded"] = st_file(one, None, pad=False)
    for st_dtype, torch_dtype in GOLDEN_DTYPES:
        t = torch.tensor([[1.5, -2.0, 0.0], [3.25, 1e-3, -7.0]]).to(getattr(torch, torch_dtype))
        files[CORPUS / ("dtype_" + st_dtype.lower())] = st_file([("w", st_dtype, (2, 3), tensor_bytes(t))])
    files[CORPUS / "all_dtypes"] = st_file(
        [("x" + d.lower(), d, (3,), bytes(range(3 * s))) for d, s in DTYPE_SIZE.items()])
    files[CORPUS / "rank0_and_empty"] = st_file(
        [("s", "F32", (), f32(4.0)), ("e", "F32", (0, 3), b""), ("e2", "F16", (2, 0), b"")])
    files[CORPUS / "rank5"] = st_file([("r", "F32", (1, 1, 1, 1, 2), A8)])
    files[CORPUS / "escapes"] = raw_file(
        '{"\\u00e9t\\u00e9\\ud83d\\ude00\\n\\"q\\"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        ' "\xe2\x82\xac" : {"data_offsets" : [8,16], "shape":[2], "dtype":"F32"}}   ', A8 + A8)
    files[CORPUS / "vikt_style"] = vikt_style(
        [("fc.weight", "F32", (1, 2), A8), ("bn.running_mean", "F32", (1,), f32(0.5)),
         ("opt.exp_avg", "F32", (2,), A8)], {"bn.running_mean": "buffer", "opt.exp_avg": "optimizer"})
    files[CORPUS / "vikt_masks"] = vikt_style(
        [("t", "F32", (2,), f32(0.0, 2.0)), ("w", "F32", (2, 3), f32(1, 0, 3, 4, 0, 6))],
        masks={"t": [0, 1], "w": [1, 0, 1, 1, 0, 1]})
    checkpoint_and_lora_seeds(files)
    files[CORPUS / "whitespace"] = raw_file(' \n\t{ "a" :\r\n{ "dtype" : "F32" , "shape" : [ 2 ] ,'
                                            ' "data_offsets" : [ 0 , 8 ] } }  ', A8)

def checkpoint_crc(meta):
    """The checkpoint's CRC of its own metadata (src/io/checkpoint.c): the XOR
    of crc32c(key NUL value NUL) over the "vikt." pairs but the per-tensor
    CRCs and this CRC itself."""
    c = 0
    for k, v in meta.items():
        if k.startswith("vikt.") and not k.startswith("vikt.crc32c.") and k != "vikt.checkpoint.crc32c":
            c ^= crc32c(k.encode() + b"\0" + v.encode() + b"\0")
    return "%08x" % c


def hexfloat(x):
    """A double as src/io/numbers.c spells it (float.hex() is the same form
    except for a trailing ".0" and zero fractions)."""
    if x == 0:
        return "-0x0p+0" if math.copysign(1, x) < 0 else "0x0p+0"
    m, e = float(x).hex().split("p")
    m = m.rstrip("0").rstrip(".")
    return m + "p" + ("+" if not e.startswith(("-", "+")) else "") + e


def checkpoint_and_lora_seeds(files):
    """Seeds the fuzz target loads as a checkpoint (into its model "t" [2],
    "w" [2, 3], buffer "bn.running_mean" [1] with Adam) and as LoRA adapters
    (onto its dense layer "fc", weight [2, 3])."""
    t, w, bn = f32(0.5, -1.0), f32(1, 2, 3, 4, 5, 6), f32(0.25)
    tensors = [("t", "F32", (2,), t), ("w", "F32", (2, 3), w), ("bn.running_mean", "F32", (1,), bn)]
    kinds = {"bn.running_mean": "buffer"}
    for buf in ("exp_avg", "exp_avg_sq"):
        for name, raw, shape in (("t", t, (2,)), ("w", w, (2, 3))):
            tensors.append(("optimizer.%s.%s" % (buf, name), "F32", shape, raw))
            kinds["optimizer.%s.%s" % (buf, name)] = "optimizer"
    hp = {"lr": 1e-2, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
          "amsgrad": 0.0, "clip_norm": 0.0, "clip_value": 0.0, "skip_nonfinite": 0.0,
          "schedule": 0.0, "step_size": 1.0, "gamma": 0.1, "warmup_steps": 0.0, "t_max": 1.0,
          "eta_min": 0.0}
    meta = {"vikt.checkpoint.version": "1", "vikt.rng.state": "547b9c60e9d94b0f",
            "vikt.rng.inc": "b47c73972972b7b7", "vikt.optimizer": "Adam",
            "vikt.optimizer.step": "2", "vikt.optimizer.skipped_steps": "0",
            "vikt.optimizer.current_lr": hexfloat(1e-2),
            "vikt.optimizer.state.t": "2 exp_avg exp_avg_sq",
            "vikt.optimizer.state.w": "1 exp_avg exp_avg_sq"}
    meta.update({"vikt.optimizer." + k: hexfloat(v) for k, v in hp.items()})
    meta.update({"vikt.kind." + k: v for k, v in kinds.items()})
    meta["vikt.checkpoint.crc32c"] = checkpoint_crc(meta)
    for name, _, _, raw in tensors:
        meta["vikt.crc32c." + name] = "%08x" % crc32c(raw)
    meta["format"] = "pt"
    files[CORPUS / "checkpoint_adam"] = st_file(tensors, meta)

    a, b = f32(0.5, -0.25, 1.0), f32(2.0, -3.0)
    lora = [("fc.lora_A.weight", "F32", (1, 3), a), ("fc.lora_B.weight", "F32", (2, 1), b)]
    with_config = {"format": "pt", "vikt.lora.fc": "rank=1 alpha=%s dropout=%s"
                   % (hexfloat(2.0), hexfloat(0.25))}
    for name, _, _, raw in lora:
        with_config["vikt.crc32c." + name] = "%08x" % crc32c(raw)
    files[CORPUS / "lora_adapter"] = st_file(lora, with_config)
    peft = [("base_model.model." + n, d, s, r) for n, d, s, r in lora]
    files[CORPUS / "lora_peft"] = st_file(peft, {"vikt.lora.fc": "rank=1 alpha=0x1p+3 dropout=0x0p+0"})

# ---------------------------------------------------------------- main

def generate():
    files = {}
    lines = ["/* Generated by tools/gen_safetensors_fixtures.py (PyTorch 1.13); do not edit. */",
             "#ifndef SAFETENSORS_FIXTURES_H", "#define SAFETENSORS_FIXTURES_H", "",
             "#include <math.h>", "#include <stdint.h>", ""]
    goldens(files, lines)
    specials(files, lines)
    torch_int_dtypes(files, lines)
    vikt_mlp_output(lines)
    malformed(files, lines)
    seeds(files)
    lines += ["", "#endif"]
    FIXTURES.mkdir(parents=True, exist_ok=True)
    CORPUS.mkdir(parents=True, exist_ok=True)
    for path, blob in files.items():
        path.write_bytes(blob)
    HEADER.write_text("\n".join(lines) + "\n")
    print("wrote %d files and %s" % (len(files), HEADER.relative_to(ROOT)))


def check(path):
    """A vikt-written file: strict read, CRCs, torch load_state_dict, values."""
    import torch
    meta, tensors = read_strict(path)
    assert meta.get("format") == "pt", "metadata format is not pt"
    crcs = [k for k in meta if k.startswith("vikt.crc32c.")]
    assert len(crcs) == len(tensors), "a CRC32C per tensor"
    assert all(d == "F32" for d, _, _ in tensors.values()), "vikt writes F32"
    kinds = {k[len("vikt.kind."):]: v for k, v in meta.items() if k.startswith("vikt.kind.")}
    assert kinds == {"bn.running_mean": "buffer", "bn.running_var": "buffer"}, kinds
    sd = {name: torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
          for name, (_, shape, raw) in tensors.items()}
    mlp = make_mlp(True)
    # strict=True: vikt's batch norm keeps no num_batches_tracked, and torch's
    # BatchNorm fills it in itself when a state_dict lacks it (as for
    # state_dicts older than the key).
    mlp.load_state_dict(sd, strict=True)
    for k, name in enumerate(VIKT_MLP_ORDER):
        want = [pattern(k, i) for i in range(sd[name].numel())]
        assert sd[name].reshape(-1).tolist() == want, "values of " + name
    with torch.no_grad():
        y = mlp.eval()(torch.tensor(X))
        assert torch.equal(y, vikt_mlp_torch()(torch.tensor(X)))
    print("check: %s: %d tensors, CRC32C ok, loads into torch.nn (Linear, BatchNorm1d, Linear), "
          "values exact; output %s" % (path, len(tensors), [round(v, 6) for v in y.reshape(-1).tolist()]))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        check(sys.argv[2] if len(sys.argv) > 2 else FIXTURES / "vikt_mlp.safetensors")
    else:
        generate()
