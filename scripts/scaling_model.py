#!/usr/bin/env python3
"""A model (not a measurement) of per-rank time and communication per block under
`mpirun -n R cdquant quantize`, from bench_pipeline's per-block figures on the 1B shape.

Usage: python3 scripts/scaling_model.py BENCH_OUTPUT [--gbps 12.5]

Per block and rank, at 128 x 2048 calibration tokens (64 forward chunks of 4096 tokens in 16
leaves; a rank holds 16 / R leaves, the busiest ceil(16 / R)):
  forward + H   measured seconds (scaled to the shape by flops) x ceil(16 / R) / 16
  solves        the busiest rank's share when the block's 7 linears go whole to the ranks,
                largest first to the least loaded (what quantize_model does), each linear's
                measured seconds scaled by d_in^2 (d_out + d_in)
  exchange      rank 0 receives R - 1 H sets (one tree node per rank when R divides 16) and
                broadcasts one; every linear's weights are broadcast from its solver:
                bytes / link bandwidth (--gbps GB/s, an assumption; loopback is faster)
"""
import math
import re
import sys

SHAPES = [("1B", 2048, 8192, 16, 32, 8), ("7B", 4096, 11008, 32, 32, 32),
          ("70B", 8192, 28672, 80, 64, 8)]
LINEARS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


def dims(shape):
    _, d, h, _, heads, kv = shape
    kvd = d // heads * kv
    return {"attn_q": (d, d), "attn_k": (kvd, d), "attn_v": (kvd, d), "attn_output": (d, d),
            "ffn_gate": (h, d), "ffn_up": (h, d), "ffn_down": (d, h)}


def forward_flops(shape, n, T):
    _, d, h, _, heads, kv = shape
    kvd = d // heads * kv
    lin = 2.0 * n * T * (d * (d + 2 * kvd) + d * d + 3 * d * h)
    return lin + 4.0 * n * T * (T + 1) / 2 * d


def h_flops(shape):
    _, d, h, _, _, _ = shape
    return 3 * d * d + h * h


def h_bytes(shape):
    return 4.0 * h_flops(shape)


def params(shape):
    return sum(o * i for o, i in dims(shape).values())


def lpt(costs, r):
    load = [0.0] * r
    for c in sorted(costs, reverse=True):
        load[load.index(min(load))] += c
    return max(load)


def main():
    text = open(sys.argv[1]).read()
    gbps = float(sys.argv[sys.argv.index("--gbps") + 1]) if "--gbps" in sys.argv else 12.5
    num = lambda pat: float(re.search(pat, text).group(1))
    n, T = (int(x) for x in re.search(r"Pipeline: (\d+) x (\d+) tokens", text).groups())
    fwd = num(r"capture forward\s+([\d.]+) s") + num(r"output recompute\s+([\d.]+) s")
    hess = num(r"H accumulation\s+([\d.]+) s")
    solve = {l: num(r"\n\s+%s\s+([\d.]+) s" % l) for l in LINEARS}
    base = SHAPES[0]
    windows, seqlen = 128, 2048
    print(f"Model from {n} x {T} measured tokens on the 1B shape, scaled to {windows} x {seqlen} "
          f"tokens; link {gbps} GB/s (assumed)\n")
    print("| shape | R | forward + H s | solves s | exchange GB (rank 0) | exchange s | "
          "per-rank s/block | speed-up | activations GB/rank |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        scale_f = forward_flops(shape, windows, seqlen) / forward_flops(base, n, T)
        scale_h = windows * seqlen / (n * T) * h_flops(shape) / h_flops(base)
        fh = fwd * scale_f + hess * scale_h
        d0 = dims(base)
        costs = []
        for l, (o, i) in dims(shape).items():
            bo, bi = d0[l]
            costs.append(solve[l] * (i * i * (o + i)) / (bi * bi * (bo + bi)))
        t1 = None
        for r in (1, 2, 4, 8, 16):
            share = math.ceil(16 / r) / 16
            gb = ((r - 1) * h_bytes(shape) + h_bytes(shape) + 4.0 * params(shape)) / 1e9 if r > 1 else 0.0
            t = fh * share + lpt(costs, r) + gb / gbps
            t1 = t1 or t
            act = windows * seqlen * shape[1] * 4 / 1e9 / r
            print(f"| {shape[0]} | {r} | {fh * share:.0f} | {lpt(costs, r):.0f} | {gb:.1f} | "
                  f"{gb / gbps:.1f} | {t:.0f} | {t1 / t:.1f}x | {act:.2f} |")


if __name__ == "__main__":
    main()
