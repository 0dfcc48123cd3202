#!/usr/bin/env bash
# The main job on the embedded default: builds the piquant CLI and runs
# examples/default.toml, the reference project's pipeline on piquant's own small model
# (models/default): prune 25% of the MLP neurons in the middle layers → LoRA recovery by
# distillation from the unpruned model → merge → importance matrix → Q4_K_M and Q3_K_M →
# perplexity and KLD on held-out text → speed. It ends with the path of REPORT.md and its main
# table, after a sentence from the smallest file. Rerunning skips every step that is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target piquant
built=$(date +%s)
./build/piquant pipeline examples/default.toml -o runs/default
end=$(date +%s)

echo "A greedy continuation by the smallest file (runs/default/quantize/model-Q3_K_M.gguf):"
./build/piquant generate -m runs/default/quantize/model-Q3_K_M.gguf -p "The state of the Union is" -n 40 --temp 0 2>/dev/null
echo
echo
echo "Built in $((built - start)) s, pipeline in $((end - built)) s. The report, with its plots: $(pwd)/runs/default/REPORT.md"
echo
# Its main table: size and quality per variant.
awk '/^\| variant \| parameters/ {on = 1} on && /^$/ {exit} on' runs/default/REPORT.md
