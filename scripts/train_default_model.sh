#!/usr/bin/env bash
# Trains piquant's default model (models/default) from nothing, as it was trained:
#   1. the text: the State of the Union addresses before 1950, Jane Austen's six novels and
#      the King James Bible (16.5 MB, all public domain, from ../shared/corpora); the
#      addresses since 1950 (sotu_1950plus.txt) are held out for evaluation;
#   2. a 4096-token byte-level BPE tokenizer learned from that text (piquant train-tokenizer);
#   3. a Llama-3-style model of 8,982,272 parameters: hidden 256, 7 layers, 4 heads of 64
#      with 2 KV heads (GQA), MLP 1024, vocabulary 4096, context 512, untied output; every
#      matrix row a multiple of 256, so the K-quants apply, also after pruning the MLP to 768;
#   4. 1200 AdamW steps of 8 × 512 tokens (4.9M tokens, 1.14 passes over the text), warm-up
#      60 steps, peak lr 2e-3, cosine to 2e-4, weight decay 0.1, clip 1 (piquant train, F32,
#      2 threads: about 75 minutes on this project's 2-core machine);
#   5. the F16 GGUF (18 MB) and its perplexity on the held-out text.
# Killed, it resumes from its last checkpoint (every 50 steps) when run again.
# Usage: scripts/train_default_model.sh [WORK_DIR]   (default build/default-model; then copy
# WORK_DIR/piquant-default.gguf, training-log.jsonl and held-out.json into models/default)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-build/default-model}
PIQUANT=${PIQUANT:-build/piquant}
SHARED=${PIQUANT_SHARED:-../shared}
THREADS=${THREADS:-2}
mkdir -p "$WORK"

all=$SHARED/corpora/sotu_all.txt
recent=$SHARED/corpora/sotu_1950plus.txt
keep=$(($(stat -c%s "$all") - $(stat -c%s "$recent")))
if ! tail -c +$((keep + 1)) "$all" | cmp -s - "$recent"; then
  echo "train_default_model: $all does not end with $recent; cannot hold the recent addresses out" >&2
  exit 1
fi
if [ ! -f "$WORK/train.txt" ]; then
  { head -c "$keep" "$all"; cat "$SHARED/corpora/austen.txt" "$SHARED/corpora/kjv.txt"; } > "$WORK/train.txt.partial"
  mv "$WORK/train.txt.partial" "$WORK/train.txt"
fi

"$PIQUANT" train-tokenizer --data "$WORK/train.txt" --vocab-size 4096 -o "$WORK/tokenizer"

cat > "$WORK/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 7,
 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 4096, "max_position_embeddings": 512,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false, "bos_token_id": 4088, "eos_token_id": 4089,
 "hidden_act": "silu", "torch_dtype": "bfloat16"}
JSON

resume=()
if [ -f "$WORK/train-state.safetensors" ]; then resume=(--resume); fi
"$PIQUANT" train --config "$WORK/config.json" --tokenizer "$WORK/tokenizer/tokenizer.json" --data "$WORK/train.txt" \
  --max-seq 512 --steps 1200 --batch 8 --lr 2e-3 --warmup 60 --min-lr-ratio 0.1 --weight-decay 0.1 --clip 1 \
  --held-out-count 64 --eval-every 100 --checkpoint "$WORK/train-state.safetensors" --checkpoint-every 50 "${resume[@]}" \
  --seed 1 -t "$THREADS" --log "$WORK/training-log.jsonl" --json --name piquant-default-9m --type f32 \
  -o "$WORK/model-f32.gguf" > "$WORK/train.json"

# The loss curve: training batches and the held-out sequences (gnuplot, as the pipeline's report).
python3 - "$WORK/training-log.jsonl" "$WORK/loss.dat" "$WORK/eval.dat" <<'PY'
import json, sys
steps = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    steps[r["step"]] = r  # a resumed run repeats steps: the last wins
with open(sys.argv[2], "w") as loss, open(sys.argv[3], "w") as ev:
    for s in sorted(steps):
        loss.write(f"{s} {steps[s]['loss']}\n")
        if "eval_loss" in steps[s]:
            ev.write(f"{s} {steps[s]['eval_loss']}\n")
PY
gnuplot <<GP
set terminal pngcairo size 900,560 font 'sans,11' noenhanced
set output '$WORK/training-loss.png'
set title 'piquant-default: training loss (nats per token)'
set xlabel 'step (8 x 512 tokens)'
set ylabel 'loss'
set grid
plot '$WORK/loss.dat' using 1:2 with lines title 'training batch', '$WORK/eval.dat' using 1:2 with linespoints pt 7 title 'held-out sequences'
GP

"$PIQUANT" convert "$WORK/model-f32.gguf" -o "$WORK/piquant-default.gguf" --type f16
"$PIQUANT" perplexity -m "$WORK/piquant-default.gguf" -f "$recent" --ctx 512 -t "$THREADS" --json > "$WORK/held-out.json"
echo "wrote $WORK/piquant-default.gguf; held-out perplexity: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' "$WORK/held-out.json" 2>/dev/null || cat "$WORK/held-out.json")"
