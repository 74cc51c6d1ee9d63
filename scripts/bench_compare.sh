#!/usr/bin/env bash
# Our `train bench` (fused, op-by-op, candle-nn's LSTM) against PyTorch's nn.LSTM on the same
# full training step (embedding -> LSTM -> last state -> linear(2) -> cross-entropy -> backward
# -> Adam) and inference, configs A and B, then the ratio table.
#
#   scripts/bench_compare.sh [--threads N] [--paths fused,ops,candle_nn] [--set bench.slow_steps=5 ...]
#
# Needs PyTorch in a venv (PYTHON, default .venv/bin/python; see README "Performance").
# The machine's load is printed with each config: numbers taken under load are not comparable.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=0
PATHS=fused,ops,candle_nn
SETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --paths) PATHS=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p train
TORCH_THREADS=$THREADS
[ "$THREADS" = 0 ] && TORCH_THREADS=$(nproc)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for c in a b; do
  C=$(echo $c | tr a-z A-Z)
  echo "== config $C (load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
  ./target/release/train bench --config configs/bench_$c.toml --set run.threads=$THREADS --paths "$PATHS" "${SETS[@]}" --json | tee "$tmp/ours_$c.txt"
  "$PYTHON" scripts/bench_pytorch.py --step --only $C --threads $TORCH_THREADS --iters 30 --json | tee "$tmp/torch_$c.txt"
done
"$PYTHON" - "$tmp" <<'PY'
import json, sys, os
tmp = sys.argv[1]
def last(p):
    return json.loads(open(p).read().strip().splitlines()[-1])
print()
print("| config | mode | fused tok/s | ops tok/s | candle-nn tok/s | PyTorch tok/s | fused / PyTorch | fused / candle-nn | fused / ops |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for c in "ab":
    ours, torch = last(f"{tmp}/ours_{c}.txt"), last(f"{tmp}/torch_{c}.txt")[c.upper()]
    for mode in ("train", "infer"):
        o = ours[f"{mode}_tokens_per_s"]
        t = torch[f"{mode}_tokens_per_s"]
        f = lambda x: "-" if x is None else f"{x:,.0f}"
        r = lambda a, b: "-" if a is None or b is None else f"{a / b:.2f}x"
        print(f"| {c.upper()} | {mode} | {f(o['fused'])} | {f(o['ops'])} | {f(o['candle_nn'])} | {f(t)} | "
              f"{r(o['fused'], t)} | {r(o['fused'], o['candle_nn'])} | {r(o['fused'], o['ops'])} |")
    print(f"| {c.upper()} | peak RSS | {ours.get('peak_rss_mb_fused') or 0:.0f} MB (fused only) | | | | | | |")
PY
