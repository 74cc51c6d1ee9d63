#!/usr/bin/env python3
"""Times PyTorch nn.LSTM on the fused-kernel micro-benchmark shapes (one layer, one direction,
f32, CPU), the counterpart of `cargo run --release -p model --example fused_bench`.

Config A: batch 64, seq 64, input 128, hidden 256. Config B: batch 32, seq 128, input 256,
hidden 512. Inference = forward under no_grad; training = forward + backward of
sum(output * r) to every weight and the input (no optimizer), median over --iters after warm-up.

    .venv/bin/python scripts/bench_pytorch.py [--iters 20] [--threads N] [--only A|B] [--json]
"""
import argparse
import json
import statistics
import time

import torch

SHAPES = {"A": (64, 64, 128, 256), "B": (32, 128, 256, 512)}


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return statistics.median(ts), ts[len(ts) // 10], ts[(len(ts) * 9) // 10]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", choices=list(SHAPES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    print(f"PyTorch {torch.__version__} nn.LSTM, {torch.get_num_threads()} threads, medians over {args.iters} iterations")
    for name, (b, t, i, h) in SHAPES.items():
        if args.only and name != args.only:
            continue
        lstm = torch.nn.LSTM(i, h, batch_first=True)
        x = torch.randn(b, t, i, requires_grad=True)
        r = torch.randn(b, t, h)
        fwd_flops = 2.0 * b * t * 4 * h * (i + h)

        def infer():
            with torch.no_grad():
                lstm(x)

        def train():
            out, _ = lstm(x)
            (out * r).sum().backward()

        res = {}
        print(f"config {name}: batch {b}, seq {t}, input {i}, hidden {h}")
        for what, fn, flops in (("inference", infer, fwd_flops), ("training", train, 3 * fwd_flops)):
            med, p10, p90 = timed(fn, 3, args.iters)
            tok = b * t / med
            res[what] = {"ms": med * 1e3, "tokens_per_s": tok, "gflops": flops / med / 1e9}
            print(f"  torch {what:<16} {med * 1e3:8.2f} ms (p10 {p10 * 1e3:.2f}, p90 {p90 * 1e3:.2f})"
                  f"  {tok:9.0f} tokens/s  {flops / med / 1e9:6.1f} GFLOP/s")
        results[name] = res
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
