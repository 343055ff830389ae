#!/usr/bin/env bash
# GSOFT learning-rate probe (docs/diffusion.md): DreamBooth runs with `diffusion compare`'s GSOFT
# flags but another learning rate, evaluated at steps 100 and 300, reusing the compare grid's class
# images (run the compare first). LRS picks the rates, PAIRS the subjects as INDEX:CLASS.
# Usage: LRS="3e-4" PAIRS="19:0 2:1 1:2" scripts/dreambooth_lr_probe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-build/gsoft}
for lr in ${LRS:-1e-4 3e-4}; do
  for pair in ${PAIRS:-19:0 2:1 1:2}; do
    s=${pair%%:*}; k=${pair##*:}
    d=runs/lr-sweep/subject$s/gsoft-lr$lr
    mkdir -p $d
    [ -f $d/result.json ] || $bin --threads 2 diffusion dreambooth --model models/fashion-diffusion --subject-fmnist $s \
      --out $d --method gsoft --block-size 16 --lr $lr --max-steps 300 --save-steps 100 --num-class-images 100 \
      --prior-loss-weight 0.2 --class-images-dir runs/diffusion-compare/class_images/$k > $d/train.log 2>&1 \
      && tail -1 $d/train.log > $d/result.json
    for st in 100 300; do
      suf=""; [ $st = 100 ] && suf="-step100"
      [ -f $d/eval$st.json ] || $bin --threads 2 diffusion eval-subject --model models/fashion-diffusion \
        --adapter $d/adapter$suf --subject-fmnist $s --n-base 8 --n 4 --steps 50 > $d/eval$st.json 2> $d/eval$st.log
      echo "subject $s lr $lr @$st: $(python3 -c "import json;d=json.load(open('$d/eval$st.json'))['result'];print(d['subject_fidelity'],d['instance_ncc'],d['prompt_fidelity'])")"
    done
  done
done
