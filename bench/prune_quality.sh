#!/usr/bin/env bash
# The pruning quality table (issue 14): every criterion, uniform and global allocation,
# RATIO of the MLP neurons of the middle layers, perplexity and KL divergence against the
# unpruned model on held-out text; then a short recovery of the best criterion's and
# magnitude's models by LoRA on cross-entropy and by LoRA distillation from the unpruned
# model, equal steps.
#
# The model is stories260K (../shared) until the project's default model exists; its
# text is its own: stories sampled from its full distribution (temperature 1, no top-k,
# top-p or min-p truncation; seeds 1..N), so that the unpruned model is the text's true
# distribution and no pruned or fine-tuned model can beat its perplexity except by
# chance; split into calibration, training and held-out parts that share no story.
#
# From the project root, after a Release build:
#   bash bench/prune_quality.sh [WORK_DIR]          # default build/bench/prune
# Environment: PIQUANT (build/piquant), THREADS (2), RATIO (0.25), LAYERS (1-3),
# ALIGN (4), STEPS (recovery steps, 200), STORIES (600).
set -euo pipefail

WORK=${1:-build/bench/prune}
PIQUANT=${PIQUANT:-build/piquant}
THREADS=${THREADS:-2}
RATIO=${RATIO:-0.25}
LAYERS=${LAYERS:-1-3}
ALIGN=${ALIGN:-4}
STEPS=${STEPS:-200}
STORIES=${STORIES:-600}
SHARED=${PIQUANT_SHARED:-../shared}
CTX=256
mkdir -p "$WORK"

BASE=$WORK/stories260K.gguf
[ -f "$BASE" ] || "$PIQUANT" convert "$SHARED/models/stories260K/stories260K.bin" --tokenizer "$SHARED/models/stories260K/tok512.bin" \
  --type f32 -o "$BASE" 2> /dev/null

# The model's own stories: calibration (first 20%), training (next 60%), held-out (last 20%).
if [ ! -f "$WORK/heldout.txt" ]; then
  : > "$WORK/calib.txt"; : > "$WORK/train.txt"; : > "$WORK/heldout.txt"
  for i in $(seq 1 "$STORIES"); do
    if [ "$i" -le $((STORIES / 5)) ]; then part=calib; elif [ "$i" -le $((STORIES * 4 / 5)) ]; then part=train; else part=heldout; fi
    "$PIQUANT" generate -m "$BASE" -p "Once upon a time" -n 400 --temp 1 --top-k 0 --top-p 1 --min-p 0 -s "$i" -t 1 2> /dev/null >> "$WORK/$part.txt"
    printf '\n\n' >> "$WORK/$part.txt"
  done
fi

ppl() { "$PIQUANT" perplexity -m "$1" -f "$WORK/heldout.txt" -c $CTX -t "$THREADS" --kv-type f32 --json 2> /dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])'; }
kld() { "$PIQUANT" kld --base-logits "$WORK/base.logits" -m "$1" -f "$WORK/heldout.txt" -c $CTX -t "$THREADS" --kv-type f32 --json 2> /dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["kld_mean"])'; }
[ -f "$WORK/base.logits" ] || "$PIQUANT" kld --base "$BASE" -m "$BASE" --save-logits "$WORK/base.logits" -f "$WORK/heldout.txt" \
  -c $CTX -t "$THREADS" --kv-type f32 > /dev/null 2>&1
BASE_PPL=$(ppl "$BASE")
echo "unpruned stories260K: held-out perplexity $BASE_PPL ($(wc -w < "$WORK/heldout.txt") words held out)"
echo
echo "| criterion | allocation | widths | params | perplexity | KLD | ppl increase vs magnitude |"
echo "|---|---|---|---|---|---|---|"

declare -A PPL
for alloc in uniform global; do
  for crit in magnitude wanda activation flap taylor; do
    out=$WORK/$crit-$alloc.gguf
    "$PIQUANT" prune -m "$BASE" -o "$out" --layers "$LAYERS" --ratio "$RATIO" --align "$ALIGN" --criterion "$crit" \
      --allocation "$alloc" --calib "$WORK/calib.txt" --calib-seq $CTX --calib-tokens 65536 --type f32 -t "$THREADS" \
      --json > "$WORK/$crit-$alloc.json" 2> /dev/null
    widths=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(",".join(str(l["width_after"]) for l in r["per_layer"]))' "$WORK/$crit-$alloc.json")
    params=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["params_after"])' "$WORK/$crit-$alloc.json")
    p=$(ppl "$out"); k=$(kld "$out")
    PPL[$crit-$alloc]=$p
    rel=$(python3 -c "print('%.2f' % (($p - $BASE_PPL) / (${PPL[magnitude-$alloc]} - $BASE_PPL)))")
    echo "| $crit | $alloc | $widths | $params | $p | $k | $rel |"
  done
done

# The best criterion (lowest perplexity, uniform) and magnitude, recovered two ways.
BEST=$(for c in wanda activation flap taylor; do echo "${PPL[$c-uniform]} $c"; done | sort -g | head -1 | cut -d' ' -f2)
echo
echo "Recovery, $STEPS steps of LoRA r=8 on all targets, batch 4, sequence $CTX, on the training stories:"
echo "| model | pruned ppl | CE LoRA ppl | distilled ppl | CE KLD | distilled KLD | gap recovered: CE | distilled |"
echo "|---|---|---|---|---|---|---|---|"
for crit in "$BEST" magnitude; do
  pruned=$WORK/$crit-uniform.gguf
  for mode in ce distill; do
    teacher=(); [ $mode = distill ] && teacher=(--teacher "$BASE" --temperature 1)
    "$PIQUANT" finetune -m "$pruned" --data "$WORK/train.txt" --format text --max-seq $CTX --steps "$STEPS" --batch 4 \
      --lr 1e-3 --warmup 10 --held-out 0 -t "$THREADS" "${teacher[@]}" -o "$WORK/$crit-$mode.lora.gguf" > /dev/null 2>&1
    "$PIQUANT" merge -m "$pruned" --lora "$WORK/$crit-$mode.lora.gguf" --type f32 -o "$WORK/$crit-$mode.gguf" > /dev/null 2>&1
  done
  p0=${PPL[$crit-uniform]}; pc=$(ppl "$WORK/$crit-ce.gguf"); pd=$(ppl "$WORK/$crit-distill.gguf")
  kc=$(kld "$WORK/$crit-ce.gguf"); kd=$(kld "$WORK/$crit-distill.gguf")
  share() { python3 -c "print('%.0f%%' % (100 * ($p0 - $1) / ($p0 - $BASE_PPL)))"; }
  echo "| $crit | $p0 | $pc | $pd | $kc | $kd | $(share "$pc") | $(share "$pd") |"
done
