#!/usr/bin/env bash
# Quantization quality on piquant's default model (issue 16's table): Q4_K_M and Q3_K_M
# plain, with an importance matrix, and with AWQ + an importance matrix collected on the
# AWQ-scaled model; then size-budget mixed precision (`quantize --target-size`) at exactly
# the byte size of each fixed recipe's imatrix file. Every file is scored by `piquant kld`
# against the float model on held-out text (KLD, perplexity, top-1 agreement).
#
# Calibration (imatrix, AWQ, sensitivities) reads IMATRIX_TEXT; evaluation reads EVAL_TEXT,
# which the model never saw in training (the State of the Union addresses since 1950).
#
# How to run, from the project root:
#   cmake --preset release && ninja -C build piquant
#   bash bench/awq_budget_quality.sh [WORK_DIR]      # default WORK_DIR: build/awq-budget
# About 8 minutes on 2 cores, most of it the per-tensor sensitivities (cached in
# WORK_DIR/sensitivity.json, so a rerun plans new budgets at once).
# Settings (environment): PIQUANT (default build/piquant), SHARED (default
# $PIQUANT_SHARED, else ../shared), MODEL (models/default/piquant-default.gguf),
# IMATRIX_TEXT ($SHARED/corpora/austen.txt), IMATRIX_CTX (256), IMATRIX_CHUNKS (64),
# AWQ_CHUNKS (16), EVAL_TEXT ($SHARED/corpora/sotu_1950plus.txt), CTX (256), CHUNKS (40),
# THREADS (2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/build/awq-budget}
piquant=${PIQUANT:-$root/build/piquant}
shared=${SHARED:-${PIQUANT_SHARED:-$root/../shared}}
model=${MODEL:-$root/models/default/piquant-default.gguf}
calib=${IMATRIX_TEXT:-$shared/corpora/austen.txt}
imatrix_ctx=${IMATRIX_CTX:-256}
imatrix_chunks=${IMATRIX_CHUNKS:-64}
awq_chunks=${AWQ_CHUNKS:-16}
eval_text=${EVAL_TEXT:-$shared/corpora/sotu_1950plus.txt}
ctx=${CTX:-256}
chunks=${CHUNKS:-40}
threads=${THREADS:-2}
mkdir -p "$work"
q() { "$piquant" -q "$@"; }

q kld --base "$model" -m "$model" -f "$eval_text" --ctx "$ctx" --chunks "$chunks" -t "$threads" \
  --save-logits "$work/base.logits" --json >"$work/base.json"
q imatrix -m "$model" -f "$calib" --ctx "$imatrix_ctx" --chunks "$imatrix_chunks" -t "$threads" -o "$work/plain.imatrix" >/dev/null

score() {  # score NAME FILE SECONDS
  q kld --base-logits "$work/base.logits" -m "$2" -f "$eval_text" --ctx "$ctx" --chunks "$chunks" -t "$threads" --json \
    >"$work/$1.kld.json"
  python3 - "$1" "$2" "$work/$1.kld.json" "$3" <<'EOF' >>"$work/rows.md"
import json, os, sys
name, path, result, seconds = sys.argv[1:]
r = json.load(open(result))
print(f"| {name} | {os.path.getsize(path)} | {r['kld_mean']:.6f} ± {r['kld_stderr']:.6f} | "
      f"{r['ppl_model']:.3f} ± {r['ppl_model_stderr']:.3f} | {r['top1_agreement']:.4f} | {seconds} |")
EOF
}

: >"$work/rows.md"
for recipe in Q4_K_M Q3_K_M; do
  q quantize "$model" "$work/$recipe-plain.gguf" "$recipe" -t "$threads"
  score "$recipe plain" "$work/$recipe-plain.gguf" -
  q quantize "$model" "$work/$recipe-imatrix.gguf" "$recipe" --imatrix "$work/plain.imatrix" -t "$threads"
  score "$recipe + imatrix" "$work/$recipe-imatrix.gguf" -
  start=$(date +%s.%N)
  q awq -m "$model" -f "$calib" --ctx "$imatrix_ctx" --chunks "$awq_chunks" --for-recipe "$recipe" -t "$threads" \
    -o "$work/awq-$recipe.gguf" --json >"$work/awq-$recipe.json"
  awq_seconds=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
  q imatrix -m "$work/awq-$recipe.gguf" -f "$calib" --ctx "$imatrix_ctx" --chunks "$imatrix_chunks" -t "$threads" \
    -o "$work/awq-$recipe.imatrix" >/dev/null
  q quantize "$work/awq-$recipe.gguf" "$work/$recipe-awq.gguf" "$recipe" --imatrix "$work/awq-$recipe.imatrix" -t "$threads"
  score "$recipe + AWQ + imatrix" "$work/$recipe-awq.gguf" "$awq_seconds (AWQ)"
done
for recipe in Q4_K_M Q3_K_M; do
  size=$(stat -c %s "$work/$recipe-imatrix.gguf")
  start=$(date +%s.%N)
  q quantize "$model" "$work/budget-$recipe.gguf" --target-size "$size" --imatrix "$work/plain.imatrix" \
    --calib "$calib" --sensitivity "$work/sensitivity.json" --plan-out "$work/budget-$recipe.plan" -t "$threads"
  seconds=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
  score "budget at $recipe + imatrix's size ($size B)" "$work/budget-$recipe.gguf" "$seconds"
done

printf '| variant | file bytes | KLD vs float | perplexity | top-1 agreement | seconds |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
python3 - "$work/base.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| float (F16) | | 0 | {r['ppl_base']:.3f} ± {r['ppl_base_stderr']:.3f} | 1 | |")
EOF
cat "$work/rows.md"
