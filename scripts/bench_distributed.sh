#!/usr/bin/env bash
# Steps per second of one process with 2 threads against 2 processes with 1 thread each (c10d
# Gloo on loopback), for GSOFT and full fine-tuning of the shipped encoder on the polarity
# sentences, with the all-reduce bytes and time per step. docs/benchmarks.md quotes its output.
# Usage: scripts/bench_distributed.sh [STEPS]   (after scripts/build.sh and scripts/setup.sh)
# GSOFT_BIN=path runs another build of gsoft (for a before/after comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-40}
bin=${GSOFT_BIN:-build/gsoft}
data="data/polarity/polarity-en-pang&lee2.csv"
out=runs/bench-distributed
common=(train --model models/polarity-bert --train-file "$data" --no-header --text-column 1 --label-column 0
        --max-steps "$steps" --batch-size 32 --max-len 64 --dropout 0 --log-every 1000 --no-resume)
for method in gsoft full; do
  margs=(--method "$method"); [ "$method" = gsoft ] && margs+=(--block-size 8)
  one=$("$bin" --threads 2 "${common[@]}" "${margs[@]}" --out "$out/$method-1x2" 2>/dev/null | tail -1)
  two=$("$bin" "${common[@]}" "${margs[@]}" --nproc 2 --out "$out/$method-2x1" 2>/dev/null | tail -1)
  # One bucket larger than the model: the exchange starts only after the whole backward.
  late=$("$bin" "${common[@]}" "${margs[@]}" --nproc 2 --bucket-mb 1024 --out "$out/$method-2x1-late" 2>/dev/null | tail -1)
  python3 - "$method" "$one" "$two" "$late" <<'PY'
import json, sys
method, one, two, late = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
s1, s2 = one["steps"] / one["train_seconds"], two["steps"] / two["train_seconds"]
print(json.dumps({"method": method, "steps_per_s_1x2": round(s1, 3), "steps_per_s_2x1": round(s2, 3),
                  "ratio_2x1_over_1x2": round(s2 / s1, 3), "trainable_params": one["trainable_params"],
                  "all_reduce_bytes_per_step": two["all_reduce_bytes_per_step"],
                  "all_reduce_ms_per_step": round(two["all_reduce_ms_per_step"], 2),
                  "ms_per_step_2x1": round(1000 / s2, 1),
                  "ms_per_step_2x1_one_bucket": round(1000 * late["train_seconds"] / late["steps"], 1),
                  "all_reduce_ms_per_step_one_bucket": round(late["all_reduce_ms_per_step"], 2)}))
PY
done
