#!/usr/bin/env bash
# Our `train bench` (fused, op-by-op, candle-nn's LSTM) against PyTorch's nn.LSTM on the same
# full training step (embedding -> LSTM -> last state -> linear(2) -> cross-entropy -> backward
# -> Adam) and inference, configs A and B, then the ratio table.
#
#   scripts/bench_compare.sh [--threads N] [--rounds R] [--paths fused,ops,candle_nn] [--set bench.slow_steps=5 ...]
#
# With int8 in --paths (e.g. --paths fused,int8,bf16,sparse50,sparse90) PyTorch also times its
# dynamic-int8 model (bench_pytorch.py --quantized) and a second table gives each compressed
# path's inference against our fused f32 and against PyTorch's f32 and dynamic int8.
#
# Needs PyTorch in a venv (PYTHON, default .venv/bin/python; see README "Performance").
# Each round runs ours then PyTorch back to back for each config, so that both see the same
# machine; the table gives the median over rounds of each side's tokens/s and of the per-round
# ratios, with the ratios' range (a shared machine's speed drifts by 10-15% over minutes,
# which moves both sides together). The load average is printed with each run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=0
ROUNDS=3
PATHS=fused,ops,candle_nn
SETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --paths) PATHS=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p train
TORCH_THREADS=$THREADS
[ "$THREADS" = 0 ] && TORCH_THREADS=$(nproc)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$ROUNDS"); do
  for c in a b; do
    C=$(echo $c | tr a-z A-Z)
    echo "== round $r/$ROUNDS, config $C (load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
    ./target/release/train bench --config configs/bench_$c.toml --set run.threads=$THREADS --paths "$PATHS" "${SETS[@]}" --json | tee "$tmp/ours_${c}_$r.txt"
    QUANT=()
    case ",$PATHS," in *,int8,*|*,bf16,*|*,sparse50,*|*,sparse90,*) QUANT=(--quantized) ;; esac
    "$PYTHON" scripts/bench_pytorch.py --step --only $C --threads $TORCH_THREADS --iters 30 --json "${QUANT[@]}" | tee "$tmp/torch_${c}_$r.txt"
  done
done
"$PYTHON" - "$tmp" "$ROUNDS" <<'PY'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
def last(p):
    return json.loads(open(p).read().strip().splitlines()[-1])
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
f = lambda x: "-" if x is None else f"{x:,.0f}"
def ratio(pairs):
    rs = [a / b for a, b in pairs if a is not None and b]
    if not rs:
        return "-"
    return f"{statistics.median(rs):.2f}x" + (f" ({min(rs):.2f}-{max(rs):.2f})" if len(rs) > 1 else "")
print()
print(f"medians over {rounds} round(s); ratios: median of the per-round ratios (range)")
print()
print("| config | mode | fused tok/s | ops tok/s | candle-nn tok/s | PyTorch tok/s | fused / PyTorch | fused / candle-nn | fused / ops |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for c in "ab":
    ours = [last(f"{tmp}/ours_{c}_{r}.txt") for r in range(1, rounds + 1)]
    torch = [last(f"{tmp}/torch_{c}_{r}.txt")[c.upper()] for r in range(1, rounds + 1)]
    for mode in ("train", "infer"):
        o = [x[f"{mode}_tokens_per_s"] for x in ours]
        t = [x[f"{mode}_tokens_per_s"] for x in torch]
        fu, op, nn = ([x[k] for x in o] for k in ("fused", "ops", "candle_nn"))
        print(f"| {c.upper()} | {mode} | {f(med(fu))} | {f(med(op))} | {f(med(nn))} | {f(med(t))} | "
              f"{ratio(zip(fu, t))} | {ratio(zip(fu, nn))} | {ratio(zip(fu, op))} |")
    rss = [x.get("peak_rss_mb_fused") or 0 for x in ours]
    print(f"| {c.upper()} | peak RSS | {min(rss):.0f}-{max(rss):.0f} MB (fused only) | | | | | | |")
comp = [p for p in ("int8", "bf16", "sparse50", "sparse90")
        if any(last(f"{tmp}/ours_a_{r}.txt")["infer_tokens_per_s"].get(p) for r in range(1, rounds + 1))]
if comp:
    cpu = last(f"{tmp}/ours_a_1.txt").get("cpu", "?")
    print()
    print(f"compressed inference (CPU: {cpu}); ratios: median of the per-round ratios (range)")
    print()
    print("| config | path | tok/s | / our fused f32 | / PyTorch f32 | / PyTorch dynamic int8 |")
    print("|---|---|---:|---:|---:|---:|")
    for c in "ab":
        ours = [last(f"{tmp}/ours_{c}_{r}.txt")["infer_tokens_per_s"] for r in range(1, rounds + 1)]
        torch = [last(f"{tmp}/torch_{c}_{r}.txt")[c.upper()] for r in range(1, rounds + 1)]
        tq = [x.get("infer_int8_tokens_per_s") for x in torch]
        tf = [x["infer_tokens_per_s"] for x in torch]
        fu = [x.get("fused") for x in ours]
        print(f"| {c.upper()} | PyTorch dynamic int8 | {f(med(tq))} | {ratio(zip(tq, fu))} | {ratio(zip(tq, tf))} | 1.00x |")
        for p in comp:
            v = [x.get(p) for x in ours]
            print(f"| {c.upper()} | {p} | {f(med(v))} | {ratio(zip(v, fu))} | {ratio(zip(v, tf))} | {ratio(zip(v, tq))} |")
PY
