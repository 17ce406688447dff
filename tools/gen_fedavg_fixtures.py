#!/usr/bin/python3
"""Generate test/fixtures/fedavg_fixtures.h: weighted means for vikt_fedavg.

Run by a developer (Python 3 standard library only), never by make:

    /usr/bin/python3 tools/gen_fedavg_fixtures.py            # writes the header
    /usr/bin/python3 tools/gen_fedavg_fixtures.py --stdout   # prints it instead

Each case is K clients of N float32 values with K positive double weights.
The expected result follows vikt_fedavg's documented arithmetic, computed
here with exact rationals (fractions.Fraction), not with vikt's algorithm:

    S = the exact sum of w_i * x_i, rounded to the nearest double
    W = the exact sum of w_i, rounded to the nearest double
    result = float32(S / W)      (double division, then round to nearest)

The script also checks that every result is within one float32 ulp of the
exact weighted mean, and that a float32 or float64 running sum in client
order misses the expected bits somewhere (so the cases can tell an
order-dependent sum from an exact one).

The cases are built to be hard: terms that cancel (2^60 and -2^60 around a
1), values spread over 60 binades, sums half-way between two doubles that
also sit on a float32 tie, weights that are not sample counts (1/3, 1e-3) or whose ratio
is 2^40, products whose rounding would show, one client, and many (K = 40).
"""
import math
import random
import struct
import sys
from fractions import Fraction
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "fedavg_fixtures.h"


def f32(x):
    """Round a Python float (double) to float32, nearest even."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def expected(weights, rows):
    W = float(sum(Fraction(w) for w in weights))
    out = []
    for e in range(len(rows[0])):
        S = float(sum(Fraction(w) * Fraction(r[e]) for w, r in zip(weights, rows)))
        out.append(f32(S / W))
    return out


def exact_mean(weights, rows, e):
    W = sum(Fraction(w) for w in weights)
    return sum(Fraction(w) * Fraction(r[e]) for w, r in zip(weights, rows)) / W


def ulp32(x):
    x = abs(x)
    if x == 0:
        return 2.0 ** -149
    e = math.frexp(x)[1]
    return 2.0 ** max(e - 24, -149)


def running_sums(weights, rows):
    """What vikt must not do: client-order sums in float32 and in float64."""
    total = sum(weights)
    out32, out64 = [], []
    for e in range(len(rows[0])):
        s32 = 0.0
        s64 = 0.0
        for w, r in zip(weights, rows):
            s32 = f32(s32 + f32(f32(w / total) * r[e]))
            s64 += w * r[e]
        out32.append(s32)
        out64.append(f32(s64 / total))
    return out32, out64


def spread(rng, n, lo, hi):
    return [f32(rng.uniform(-1, 1) * 2.0 ** rng.randint(lo, hi)) for _ in range(n)]


def cases():
    rng = random.Random(20261129)
    out = []

    # Cancellation: the 1 and the 2 survive only in an exact sum.
    out.append(("cancellation", [1.0, 1.0, 1.0, 1.0],
                [[2.0 ** 60, 3.0], [1.0, -2.0 ** 40], [-(2.0 ** 60), -3.0], [2.0, 2.0 ** 40]]))

    # Sample counts with values over 60 binades.
    k, n = 5, 24
    out.append(("spread_counts", [120.0, 37.0, 1000.0, 3.0, 59.0],
                [spread(rng, n, -30, 30) for _ in range(k)]))

    # Weights that are not dyadic and values of mixed signs and sizes.
    out.append(("non_dyadic_weights", [1.0 / 3.0, 0.1, 2.5, 1e-3, 7.0 / 11.0],
                [spread(rng, n, -40, 40) for _ in range(k)]))

    # Sums half-way between two doubles that are also near a float32 tie,
    # so how the double tie is broken shows in the float: the mean is
    # 1 + 2^-24 + 2^-53 (+ or - 2^-110, or exactly), and 1 + 2^-24 is
    # half-way between two floats. 2^-110 is too far below 2^-53 to merge
    # with it exactly, so the tie is decided by a third partial.
    out.append(("ties", [1.0, 1.0, 1.0, 1.0],
                [[4.0, 4.0, 4.0, 4.0],
                 [2.0 ** -22, 2.0 ** -22, 2.0 ** -22, 3 * 2.0 ** -22],
                 [2.0 ** -51, 2.0 ** -51, 2.0 ** -51, 2.0 ** -51],
                 [0.0, 2.0 ** -108, -(2.0 ** -108), 0.0]]))

    # Products whose low bits matter: 3 * (1/3 as a double) is 1 - 2^-54,
    # which rounds to 1; the exact mean of {3 at 1/3, -1 at 1} is -2^-54/(4/3).
    out.append(("product_low_bits", [1.0 / 3.0, 1.0],
                [[3.0, 6.0, 1.5, 3.0 * 2.0 ** 70], [-1.0, -2.0, -0.5, -(2.0 ** 70)]]))

    # Weights whose ratio is 2^40.
    out.append(("wide_weight_ratio", [2.0 ** 40, 1.0, 3.0 * 2.0 ** 20],
                [spread(rng, n, -20, 20) for _ in range(3)]))

    # One client: the mean is that client.
    out.append(("one_client", [17.0], [spread(rng, n, -10, 10)]))

    # Many clients, counts from 1 to 500, and one element equal everywhere.
    k = 40
    rows = [spread(rng, n, -12, 12) for _ in range(k)]
    for r in rows:
        r[0] = f32(0.1)
    out.append(("forty_clients", [float(rng.randint(1, 500)) for _ in range(k)], rows))
    return out


def check(name, weights, rows, exp):
    for e, got in enumerate(exp):
        m = exact_mean(weights, rows, e)
        if abs(Fraction(got) - m) > Fraction(ulp32(float(m))):
            sys.exit(f"{name}[{e}]: {got!r} is more than an ulp from {float(m)!r}")


def c_double(x):
    return float.hex(x)


def main():
    lines = [
        "/* Generated by tools/gen_fedavg_fixtures.py; do not edit. Weighted means",
        " * computed with exact rationals, then rounded as vikt_fedavg documents. */",
        "#ifndef VIKT_FEDAVG_FIXTURES_H",
        "#define VIKT_FEDAVG_FIXTURES_H",
        "",
        "#include <stdint.h>",
        "",
        "typedef struct fedavg_case {",
        "    const char *name;",
        "    int k;",
        "    int n;",
        "    const double *weights;  /* k */",
        "    const uint32_t *values; /* k rows of n float32 bit patterns */",
        "    const uint32_t *mean;   /* n */",
        "} fedavg_case;",
        "",
    ]
    table = []
    any_differs = False
    for name, weights, rows in cases():
        exp = expected(weights, rows)
        check(name, weights, rows, exp)
        r32, r64 = running_sums(weights, rows)
        any_differs |= r32 != exp or r64 != exp
        k, n = len(rows), len(rows[0])
        lines.append(f"static const double fedavg_{name}_w[{k}] = {{"
                     + ", ".join(c_double(w) for w in weights) + "};")
        vals = [f"0x{bits(v):08x}u" for r in rows for v in r]
        lines.append(f"static const uint32_t fedavg_{name}_x[{k * n}] = {{")
        for i in range(0, len(vals), 8):
            lines.append("    " + ", ".join(vals[i:i + 8]) + ",")
        lines.append("};")
        lines.append(f"static const uint32_t fedavg_{name}_y[{n}] = {{"
                     + ", ".join(f"0x{bits(v):08x}u" for v in exp) + "};")
        lines.append("")
        table.append(f'    {{"{name}", {k}, {n}, fedavg_{name}_w, fedavg_{name}_x, fedavg_{name}_y}},')
    if not any_differs:
        sys.exit("no case tells a running sum from the exact one")
    lines.append(f"static const fedavg_case fedavg_cases[{len(table)}] = {{")
    lines += table
    lines.append("};")
    lines.append("")
    lines.append("#endif")
    text = "\n".join(lines) + "\n"
    if "--stdout" in sys.argv:
        sys.stdout.write(text)
    else:
        OUT.write_text(text)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
