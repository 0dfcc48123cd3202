#!/usr/bin/env bash
# Training speed and memory, each against its anchor measured in the same run:
#   1. LoRA r=8 on q,k,v,o,gate,up,down, one sequence of SEQ tokens per step, on a
#      random-weight Llama 3.2 1B (`piquant synth`): piquant finetune's tokens/s vs the
#      same step in PyTorch on the CPU (bench/torch_lora_bench.py, Debian's python3-torch,
#      F32, the same threads).
#   2. Full training of a ~10M-parameter model (piquant train): tokens/s and achieved
#      GFLOP/s, counted as 6 · N · tokens (the forward and backward products of the N
#      matrix weights; the attention's T² terms added), and with the recomputed forward
#      of activation checkpointing (8 · N), against the machine's F32 peak if PEAK_GFLOPS
#      is given (e.g. 2 cores × 32 flops/cycle × 3.0 GHz for AVX-512 Zen 4 = 192).
#   3. Peak RSS of LoRA over a Q4_K_M base at sequence SEQ (Q4KM=path to a GGUF, e.g. the
#      seed-shape Llama 3.1 8B pruned and quantized), against the file's size + 2 GB.
#
# From the project root, after a Release build:
#   bash bench/train_bench.sh [WORK_DIR]          # default build/bench
# Environment: PIQUANT (build/piquant), THREADS (2), SEQ (512), STEPS (3, after one
# warm-up step), Q4KM (unset: part 3 skipped), PEAK_GFLOPS (unset: no share printed),
# SKIP_TORCH=1 (part 1 without the anchor), PARTS ("1 2 3": which parts to run).
# PyTorch's speed depends on the BLAS Debian's alternatives point it to: scripts/setup.sh
# installs OpenBLAS (libopenblas0-pthread); with only the reference BLAS (libblas3)
# PyTorch runs several times slower.
set -euo pipefail

WORK=${1:-build/bench}
PIQUANT=${PIQUANT:-build/piquant}
THREADS=${THREADS:-2}
SEQ=${SEQ:-512}
STEPS=${STEPS:-3}
SHARED=${PIQUANT_SHARED:-../shared}
TEXT=$SHARED/corpora/austen.txt
mkdir -p "$WORK"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# Tokens/s over the log's steps after the first (its warm-up): tokens / elapsed between.
steady_tokens_per_s() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = rows[-(len(rows) - 1):] if len(rows) > 1 else rows
first = json.loads(open(sys.argv[1]).readline())
tokens = sum(r["tokens"] for r in rows)
print(tokens / (rows[-1]["elapsed_s"] - first["elapsed_s"]))
PY
}

PARTS=${PARTS:-1 2 3}
part() { [[ " $PARTS " == *" $1 "* ]]; }

# 1. LoRA on Llama 3.2 1B vs PyTorch.
if part 1; then
L1B=$WORK/llama-3.2-1b
if [ ! -f "$L1B/config.json" ]; then
  "$PIQUANT" synth --preset llama-3.2-1b --tokenizer "$SHARED/tokenizers/llama3/tokenizer.json" -o "$L1B"
fi
rm -f "$WORK/lora.log"
"$PIQUANT" finetune -m "$L1B" --data "$TEXT" --format text --max-seq "$SEQ" --steps $((STEPS + 1)) --batch 1 \
  --lora-r 8 --lora-alpha 16 --held-out 0 -t "$THREADS" --log "$WORK/lora.log" --json -o "$WORK/lora-1b.gguf" > "$WORK/lora.json"
PQ_LORA=$(steady_tokens_per_s "$WORK/lora.log")
echo "piquant LoRA r=8, Llama 3.2 1B shape, seq $SEQ, $THREADS threads: $PQ_LORA tokens/s"
if [ "${SKIP_TORCH:-0}" != 1 ]; then
  TORCH_JSON=$(/usr/bin/python3 bench/torch_lora_bench.py "$L1B" --seq "$SEQ" --steps "$STEPS" --threads "$THREADS" --rank 8)
  TORCH_LORA=$(echo "$TORCH_JSON" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')
  echo "PyTorch ($TORCH_JSON): $TORCH_LORA tokens/s"
  python3 -c "print('ratio piquant / PyTorch: %.2f' % ($PQ_LORA / $TORCH_LORA))"
fi
fi

# 2. Full training of a ~10M-parameter model.
if part 2; then
cat > "$WORK/10m-config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 6,
 "num_attention_heads": 6, "num_key_value_heads": 6, "vocab_size": 512, "max_position_embeddings": 1024,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}
JSON
rm -f "$WORK/full.log"
"$PIQUANT" train --config "$WORK/10m-config.json" --tokenizer "$SHARED/models/stories260K/tok512.bin" --data "$TEXT" \
  --max-seq "$SEQ" --steps $((STEPS + 1)) --batch 1 --held-out 0 -t "$THREADS" --log "$WORK/full.log" --json \
  -o "$WORK/full-10m.gguf" > "$WORK/full.json"
PQ_FULL=$(steady_tokens_per_s "$WORK/full.log")
python3 - "$PQ_FULL" "$SEQ" "${PEAK_GFLOPS:-0}" <<'PY'
import sys
tps, T, peak = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
E, F, L, V = 384, 1024, 6, 512
N = L * (4 * E * E + 3 * E * F) + V * E          # matrix weights (the output matrix; embedding rows are lookups)
attention = L * 2 * 2 * T / 2 * E                  # QK^T and PV per token, forward, average causal length T/2
useful = tps * (6 * N + 3 * attention) / 1e9
with_recompute = tps * (8 * N + 4 * attention) / 1e9
print(f"piquant full training, {N/1e6:.1f}M matrix parameters, seq {T}: {tps:.0f} tokens/s, "
      f"{useful:.1f} GFLOP/s (6N), {with_recompute:.1f} GFLOP/s with the recomputed forward (8N)")
if peak > 0:
    print(f"  = {100*useful/peak:.0f}% ({100*with_recompute/peak:.0f}%) of the {peak:.0f} GFLOP/s F32 peak")
PY
fi

# 3. Peak RSS of LoRA over a Q4_K_M base.
if part 3 && [ -n "${Q4KM:-}" ]; then
  "$PIQUANT" finetune -m "$Q4KM" --data "$TEXT" --format text --max-seq "$SEQ" --steps 1 --batch 1 --lora-r 8 \
    --held-out 0 -t "$THREADS" --json -o "$WORK/lora-q4km.gguf" > "$WORK/q4km.json"
  python3 - "$WORK/q4km.json" "$Q4KM" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1])); size = os.path.getsize(sys.argv[2])
print(f"LoRA over {sys.argv[2]} ({size/2**30:.2f} GiB): peak RSS {r['peak_rss_bytes']/2**30:.2f} GiB, "
      f"goal <= {(size + 2e9)/2**30:.2f} GiB (file + 2 GB); plan {r['memory']['total']/2**30:.2f} GiB")
PY
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
