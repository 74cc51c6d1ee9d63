#!/usr/bin/env bash
# Same bits before and after a refactor: runs a short training run of every training config in
# configs/ and prints the SHA-256 of its checkpoints/last.safetensors and metrics.jsonl.
#
#   scripts/same_bits.sh [--bin PATH] [--steps N] [--threads T] [--only NAME]... > after.tsv
#   diff before.tsv after.tsv        # empty: every config gives the same bytes
#
# Record a table with the binary built from the old commit (`--bin`, e.g. a copy of
# target/release/train saved before the change), then with the new one, and diff the two.
# Sweep specs (*.sweep.toml) and benchmark shapes (bench_*.toml) are not training configs and
# are skipped. The hub is answered from ../shared/hf (offline); runs go to a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/train
steps=40
threads=2
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    *) echo "same_bits.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ ! -x "$bin" ]; then
  echo "same_bits.sh: no binary at $bin (cargo build --release -p train, or --bin PATH)" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HOME=${HF_HOME:-../shared/hf} HF_HUB_OFFLINE=1

printf 'config\tlast.safetensors\tmetrics.jsonl\n'
for cfg in configs/*.toml; do
  name=$(basename "$cfg" .toml)
  case "$name" in *.sweep|bench_*) continue ;; esac
  if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " == *" $name "* ]]; then continue; fi
  run="$work/$name"
  if ! "$bin" --config "$cfg" --set train.max_steps="$steps" --set train.epochs=1 \
      --set run.threads="$threads" --run-dir "$run" --quiet >"$work/$name.log" 2>&1; then
    printf '%s\tFAILED\tFAILED\n' "$name"
    sed 's/^/    /' "$work/$name.log" | tail -5 >&2
    continue
  fi
  ckpt=$(sha256sum "$run/checkpoints/last.safetensors" | cut -c1-16)
  metrics=$(sha256sum "$run/metrics.jsonl" | cut -c1-16)
  printf '%s\t%s\t%s\n' "$name" "$ckpt" "$metrics"
done
