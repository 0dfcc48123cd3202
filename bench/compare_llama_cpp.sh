#!/usr/bin/env bash
# Speed of piquant's engine against stock llama.cpp on the same F16 GGUF, back to back.
#
# How to run, from the project root:
#   cmake --preset release && ninja -C build piquant
#   ctest --test-dir build -R interop_npm_install   # node-llama-cpp into build/interop, once
#   bash bench/compare_llama_cpp.sh [WORK_DIR]       # default WORK_DIR: build/bench
#
# What it does: synthesizes a random-weight Llama 3.2 1B (`piquant synth --preset
# llama-3.2-1b`; speed does not depend on the weights' values) and converts it to
# F16 GGUF once (kept in WORK_DIR for later runs; ~2.5 GB twice), writes a prompt,
# then for RUNS rounds runs `piquant generate` (greedy) and llama.cpp through
# bench/llama_cpp_bench.mjs with the same file, threads, prompt and generation
# length, and prints prompt and decode tokens/s of both (best of the rounds) and
# piquant / llama.cpp ratios. Both engines use an F16 KV cache (llama.cpp: its
# defaults, flash attention on for CPU).
#
# Settings (environment): PIQUANT (default build/piquant), PIQUANT_INTEROP_DIR
# (default build/interop), MODEL (an F16 GGUF to use instead of the synthesized one),
# THREADS (2), PROMPT_SENTENCES (8, ~17 tokens each), GEN_TOKENS (32), RUNS (2),
# REFERENCE_THREADS (1; empty: skip): one more round of both at that thread count.
# Speed on a shared machine depends on its load: the script prints the load average
# before and after; compare numbers from the same run only. ggml's worker threads
# spin while they wait, so when other processes take the cores llama.cpp's
# multi-threaded speed collapses far more than piquant's; the reference round at one
# thread shows how much of a difference is that.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/build/bench}
piquant=${PIQUANT:-$root/build/piquant}
export PIQUANT_INTEROP_DIR=${PIQUANT_INTEROP_DIR:-$root/build/interop}
threads=${THREADS:-2}
reference_threads=${REFERENCE_THREADS-1}
sentences=${PROMPT_SENTENCES:-8}
gen=${GEN_TOKENS:-32}
runs=${RUNS:-2}

[[ -x $piquant ]] || { echo "compare_llama_cpp.sh: $piquant is not built (ninja -C build piquant, or set PIQUANT)" >&2; exit 1; }
command -v node >/dev/null || { echo "compare_llama_cpp.sh: node is needed for llama.cpp (node-llama-cpp)" >&2; exit 1; }
mkdir -p "$work"

model=${MODEL:-$work/llama-3.2-1b-f16.gguf}
if [[ ! -f $model ]]; then
  echo "== synthesizing llama-3.2-1b and converting it to F16 GGUF in $work"
  "$piquant" -q synth --preset llama-3.2-1b -o "$work/llama-3.2-1b-hf"
  "$piquant" -q convert "$work/llama-3.2-1b-hf" --type f16 -o "$model"
  rm -rf "$work/llama-3.2-1b-hf"
fi

prompt=$work/prompt.txt
: > "$prompt"
for ((i = 0; i < sentences; i++)); do
  printf 'The old lighthouse keeper climbed the stairs again, counting every step as he went. ' >> "$prompt"
done

# piquant generate logs "prompt: N tokens in S s (X tokens/s)" and
# "generated: N tokens in S s (X tokens/s), ..." on stderr.
run_piquant() {
  local log=$work/piquant.log
  "$piquant" generate -m "$model" -f "$prompt" -n "$gen" --temp 0 -t "$threads" -c 512 --no-echo >/dev/null 2>"$log" || {
    cat "$log" >&2; exit 1; }
  local p g
  p=$(grep -E '^(.*[^a-z])?prompt: [0-9]+ tokens in ' "$log" | tail -1) || true
  g=$(grep -E '^(.*[^a-z])?generated: [0-9]+ tokens in ' "$log" | tail -1) || true
  [[ -n $p && -n $g ]] || { echo "compare_llama_cpp.sh: cannot find piquant's timing lines in:" >&2; cat "$log" >&2; exit 1; }
  # -> "prompt_tokens prompt_tps generated decode_tps"
  echo "$(sed -E 's/.*prompt: ([0-9]+) tokens in .*\(([0-9.e+-]+) tokens\/s\).*/\1 \2/' <<<"$p") $(sed -E 's/.*generated: ([0-9]+) tokens in .*\(([0-9.e+-]+) tokens\/s\).*/\1 \2/' <<<"$g")"
}

run_llama_cpp() {
  local json
  json=$(node "$root/bench/llama_cpp_bench.mjs" "$model" "$prompt" "$gen" --threads "$threads")
  node -e 'const j = JSON.parse(process.argv[1]); console.log(`${j.prompt_tokens} ${j.prompt_tps} ${j.generated} ${j.decode_tps}`)' "$json"
}

max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }

echo "== $(basename "$model"), threads $threads, $gen generated tokens, $runs rounds; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
best_pq_prompt=0 best_pq_decode=0 best_ll_prompt=0 best_ll_decode=0
for ((r = 1; r <= runs; r++)); do
  pq=$(run_piquant)
  ll=$(run_llama_cpp)
  read -r pq_np pq_prompt pq_ng pq_decode <<<"$pq"
  read -r ll_np ll_prompt ll_ng ll_decode <<<"$ll"
  printf 'round %d: piquant   prompt %4d tok %8.2f tok/s, decode %3d tok %7.2f tok/s\n' "$r" "$pq_np" "$pq_prompt" "$pq_ng" "$pq_decode"
  printf 'round %d: llama.cpp prompt %4d tok %8.2f tok/s, decode %3d tok %7.2f tok/s\n' "$r" "$ll_np" "$ll_prompt" "$ll_ng" "$ll_decode"
  [[ $pq_np == "$ll_np" ]] || echo "warning: prompt lengths differ (piquant $pq_np, llama.cpp $ll_np tokens)" >&2
  best_pq_prompt=$(max "$best_pq_prompt" "$pq_prompt"); best_pq_decode=$(max "$best_pq_decode" "$pq_decode")
  best_ll_prompt=$(max "$best_ll_prompt" "$ll_prompt"); best_ll_decode=$(max "$best_ll_decode" "$ll_decode")
done
echo "== best of $runs (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
awk -v pp="$best_pq_prompt" -v pd="$best_pq_decode" -v lp="$best_ll_prompt" -v ld="$best_ll_decode" 'BEGIN {
  printf "%-10s %14s %14s\n", "", "prompt tok/s", "decode tok/s"
  printf "%-10s %14.2f %14.2f\n", "piquant", pp, pd
  printf "%-10s %14.2f %14.2f\n", "llama.cpp", lp, ld
  printf "%-10s %14.2f %14.2f\n", "ratio", pp / lp, pd / ld
}'

if [[ -n $reference_threads && $reference_threads != "$threads" ]]; then
  threads=$reference_threads
  pq=$(run_piquant)
  ll=$(run_llama_cpp)
  read -r pq_np pq_prompt pq_ng pq_decode <<<"$pq"
  read -r ll_np ll_prompt ll_ng ll_decode <<<"$ll"
  echo "== reference round with $threads thread(s)"
  awk -v pp="$pq_prompt" -v pd="$pq_decode" -v lp="$ll_prompt" -v ld="$ll_decode" 'BEGIN {
    printf "%-10s %14.2f %14.2f\n", "piquant", pp, pd
    printf "%-10s %14.2f %14.2f\n", "llama.cpp", lp, ld
    printf "%-10s %14.2f %14.2f\n", "ratio", pp / lp, pd / ld
  }'
fi
