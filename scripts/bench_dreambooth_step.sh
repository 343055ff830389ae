#!/usr/bin/env bash
# DreamBooth step time of GSOFT b=16 against BOFT b=8 with 4 factors (the same 118,784 parameters)
# and LoRA r=16, on the authors' attention targets (to_q, to_k, to_v, to_out.0): each method trains
# subject 19 for STEPS steps at one thread, in ROUNDS rounds whose order rotates, so that no method
# always runs first or after the same one. Prints per run the process's user and system CPU
# seconds, wall seconds, and the run's own seconds per step (summary.json). docs/benchmarks.md
# quotes its output. The class images come from a compare folder (cached there by compare).
# Usage: scripts/bench_dreambooth_step.sh [ROUNDS] [STEPS] [CLASS_IMAGES_DIR]
# GSOFT_BIN=path runs another build of gsoft.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
steps=${2:-60}
class_dir=${3:-runs/diffusion-compare/class_images/0}
bin=${GSOFT_BIN:-build/gsoft}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--threads 1 diffusion dreambooth --model models/fashion-diffusion --subject-fmnist 19
        --target-modules to_q,to_k,to_v,to_out.0 --max-steps "$steps" --checkpoint-every 0 --log-every 0
        --num-class-images 100 --prior-loss-weight 0.2 --class-images-dir "$class_dir")
specs=("gsoft:--method gsoft --block-size 16" "boft_m4:--method boft --block-size 8 --boft-factors 4"
       "lora:--method lora --r 16 --lora-alpha 16")
echo "round method user_s sys_s wall_s trainable_params s_per_step"
for round in $(seq "$rounds"); do
  for i in 0 1 2; do
    spec=${specs[$(( (i + round) % 3 ))]}
    name=${spec%%:*}
    read -r -a flags <<< "${spec#*:}"
    /usr/bin/time -o "$out/time" -f "%U %S %e" "$bin" "${common[@]}" "${flags[@]}" --out "$out/$name" > /dev/null 2> "$out/log"
    echo "$round $name $(cat "$out/time") $(python3 -c "import json,sys; d = json.load(open(sys.argv[1])); print(d['trainable_params'], d['seconds_per_step'])" "$out/$name/summary.json")"
    rm -rf "${out:?}/$name"
  done
done
