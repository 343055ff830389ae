#!/usr/bin/env bash
# How each adapted linear layer's fwd+bwd degrades on a busy machine: gsoft bench adapters (768 ->
# 768 on 4096 rows, at least MIN_SECONDS per method, so 20 or more repetitions when quiet) with
# 0, 1 and 2 other processes busy (`yes`), ROUNDS times. Prints median / worst ms per method and
# its slowdown against the quiet run of the same round. docs/benchmarks.md quotes its output.
# Usage: scripts/bench_contention.sh [THREADS] [ROUNDS] [MIN_SECONDS]
# GSOFT_BIN=path runs another build of gsoft.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-2}
min_seconds=${3:-1.5}
bin=${GSOFT_BIN:-build/gsoft}
busy_pids=()
trap '[ ${#busy_pids[@]} -eq 0 ] || kill "${busy_pids[@]}" 2>/dev/null || true' EXIT
for round in $(seq "$rounds"); do
  quiet=""
  for busy in 0 1 2; do
    busy_pids=()
    for _ in $(seq "$busy"); do yes > /dev/null & busy_pids+=($!); done
    result=$("$bin" --threads "$threads" bench adapters --min-seconds "$min_seconds" --no-merge --no-conv 2>/dev/null)
    [ ${#busy_pids[@]} -eq 0 ] || kill "${busy_pids[@]}"
    busy_pids=()
    [ "$busy" = 0 ] && quiet=$result
    python3 - "$round" "$busy" "$result" "$quiet" <<'PY'
import json, sys
rnd, busy, result, quiet = sys.argv[1:]
def parse(text):
    rows = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
    return {r["method"]: r for r in rows if r.get("layer") == "linear"}
now, base = parse(result), parse(quiet)
cells = [f"{m} {r['fwdbwd_ms']:.1f}/{r['fwdbwd_worst_ms']:.1f} ({r['fwdbwd_ms'] / base[m]['fwdbwd_ms']:.2f}x, n={r['reps']})"
         for m, r in now.items() if m in ("frozen", "gsoft_b8", "double_gsoft_b8", "lora_r8")]
print(f"round {rnd} busy {busy}: " + " | ".join(cells))
PY
  done
done
