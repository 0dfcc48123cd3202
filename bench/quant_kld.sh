#!/usr/bin/env bash
# Quality of piquant's quantization recipes: mean KL divergence of each quantized model
# from its F32 original (`piquant kld`), with and without an importance matrix from
# `piquant imatrix`, on two models:
#   stories260K   the real 260K-parameter Llama from ../shared; its 64-wide rows are
#                 shorter than a K-quant block, so K recipes fall back to Q5_0/Q4_0
#   tiny          `piquant synth --preset tiny` (random weights, rows of 256/512: real
#                 K blocks), converted to F32
# Calibration text for the imatrix and evaluation text never overlap: the imatrix reads
# bytes 40000-100000 of austen.txt, kld scores its first 20000 bytes.
#
# How to run, from the project root:
#   cmake --preset release && ninja -C build piquant
#   bash bench/quant_kld.sh [WORK_DIR]      # default WORK_DIR: build/quant-kld
# Settings (environment): PIQUANT (default build/piquant), SHARED (default ../shared),
# CTX (128), THREADS (2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/build/quant-kld}
piquant=${PIQUANT:-$root/build/piquant}
shared=${SHARED:-$root/../shared}
ctx=${CTX:-128}
threads=${THREADS:-2}
mkdir -p "$work"

head -c 20000 "$shared/corpora/austen.txt" >"$work/eval.txt"
head -c 100000 "$shared/corpora/austen.txt" | tail -c 60000 >"$work/calib.txt"

"$piquant" -q convert "$shared/models/stories260K/stories260K.bin" --tokenizer "$shared/models/stories260K/tok512.bin" \
  --type f32 -o "$work/stories-f32.gguf"
[ -d "$work/tiny-hf" ] || "$piquant" -q synth --preset tiny --seed 7 -o "$work/tiny-hf"
"$piquant" -q convert "$work/tiny-hf" --type f32 -o "$work/tiny-f32.gguf"

printf '| model | recipe | imatrix | size (MiB) | mean KLD | ± | top-1 agreement | PPL base → model |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- |\n'
for model in stories tiny; do
  base="$work/$model-f32.gguf"
  "$piquant" -q imatrix -m "$base" -f "$work/calib.txt" --ctx "$ctx" -t "$threads" -o "$work/$model.imatrix"
  "$piquant" -q kld --base "$base" -m "$base" -f "$work/eval.txt" --ctx "$ctx" -t "$threads" \
    --save-logits "$work/$model-base.logits" --json >/dev/null
  if [ "$model" = stories ]; then recipes="Q8_0 Q5_0 Q4_0 Q4_K_M Q3_K_M"; else recipes="Q8_0 Q6_K Q4_K_M Q3_K_M Q2_K"; fi
  for recipe in $recipes; do
    for imatrix in no yes; do
      out="$work/$model-$recipe-$imatrix.gguf"
      if [ "$recipe" = Q5_0 ]; then args="Q4_0 --pure --tensor-type .*=q5_0"; else args=$recipe; fi
      if [ "$imatrix" = yes ]; then args="$args --imatrix $work/$model.imatrix"; fi
      # shellcheck disable=SC2086
      "$piquant" -q quantize "$base" "$out" $args -t "$threads"
      json=$("$piquant" -q kld --base-logits "$work/$model-base.logits" -m "$out" -f "$work/eval.txt" --ctx "$ctx" \
        -t "$threads" --json)
      python3 - "$model" "$recipe" "$imatrix" "$out" "$json" <<'EOF'
import json, os, sys
model, recipe, imatrix, path, text = sys.argv[1:]
r = json.loads(text)
print(f"| {model} | {recipe} | {imatrix} | {os.path.getsize(path) / 2**20:.2f} | {r['kld_mean']:.3g} | "
      f"{r['kld_stderr']:.2g} | {r['top1_agreement']:.4f} | {r['ppl_base']:.3f} → {r['ppl_model']:.3f} |")
EOF
    done
  done
done
