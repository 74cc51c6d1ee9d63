#!/usr/bin/env python3
"""Times PyTorch nn.LSTM on the fused-kernel micro-benchmark shapes (one layer, one direction,
f32, CPU), the counterpart of `cargo run --release -p model --example fused_bench`.

Config A: batch 64, seq 64, input 128, hidden 256. Config B: batch 32, seq 128, input 256,
hidden 512. Inference = forward under no_grad; training = forward + backward of
sum(output * r) to every weight and the input (no optimizer), median over --iters after warm-up.

    .venv/bin/python scripts/bench_pytorch.py [--iters 20] [--threads N] [--only A|B] [--json]

--step times the same full training step as `train bench` (configs/bench_a.toml, bench_b.toml):
embedding (vocab 16k) -> nn.LSTM -> last state -> Linear(2) -> cross-entropy -> backward -> Adam,
and inference (no_grad forward to the logits), on random token batches; with --json the last
line is {"A": {"train_tokens_per_s": .., "infer_tokens_per_s": ..}, ..}.

--quantized (with --step) also times inference of the same model after PyTorch's dynamic int8
quantisation, torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
(int8 weights, activations quantised at run time; the embedding stays f32), as
"infer_int8_tokens_per_s" — the counterpart of `train bench --paths int8`.
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
    ap.add_argument("--step", action="store_true", help="full classifier training step with Adam")
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--quantized", action="store_true",
                    help="with --step: also time dynamic-int8 inference (quantize_dynamic on LSTM + Linear)")
    args = ap.parse_args()
    if args.step:
        return step_main(args)
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


def step_main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"PyTorch {torch.__version__} classifier step (embedding -> nn.LSTM -> last h -> Linear(2) -> CE -> Adam), "
          f"{torch.get_num_threads()} threads, medians over {args.iters} steps")
    results = {}
    for name, (b, t, i, h) in SHAPES.items():
        if args.only and name != args.only:
            continue
        emb = torch.nn.Embedding(args.vocab, i)
        lstm = torch.nn.LSTM(i, h, batch_first=True)
        head = torch.nn.Linear(h, 2)
        params = list(emb.parameters()) + list(lstm.parameters()) + list(head.parameters())
        opt = torch.optim.Adam(params, lr=1e-3)
        batches = [(torch.randint(0, args.vocab, (b, t)), torch.randint(0, 2, (b,))) for _ in range(4)]
        k = [0]

        def logits(ids):
            _, (h_n, _) = lstm(emb(ids))
            return head(h_n[-1])

        def train():
            ids, y = batches[k[0] % 4]
            k[0] += 1
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(logits(ids), y)
            loss.backward()
            opt.step()

        def infer():
            ids, _ = batches[k[0] % 4]
            k[0] += 1
            with torch.no_grad():
                logits(ids)

        fwd_flops = 2.0 * b * t * 4 * h * (i + h)
        res = {}
        print(f"config {name}: batch {b}, seq {t}, embedding {i}, hidden {h}, vocab {args.vocab}")
        runs = [("train", train, 3 * fwd_flops), ("infer", infer, fwd_flops)]
        if args.quantized:
            class Net(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.emb, self.lstm, self.head = emb, lstm, head

                def forward(self, ids):
                    _, (h_n, _) = self.lstm(self.emb(ids))
                    return self.head(h_n[-1])

            qnet = torch.ao.quantization.quantize_dynamic(
                Net().eval(), {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)

            def infer_int8():
                ids, _ = batches[k[0] % 4]
                k[0] += 1
                with torch.no_grad():
                    qnet(ids)

            runs.append(("infer_int8", infer_int8, fwd_flops))
        for what, fn, flops in runs:
            med, p10, p90 = timed(fn, 3, args.iters)
            tok = b * t / med
            res[f"{what}_tokens_per_s"] = tok
            print(f"  torch {what:<8} {med * 1e3:8.2f} ms (p10 {p10 * 1e3:.2f}, p90 {p90 * 1e3:.2f})"
                  f"  {tok:9.0f} tokens/s  {flops / med / 1e9:6.1f} LSTM GFLOP/s")
        results[name] = res
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
