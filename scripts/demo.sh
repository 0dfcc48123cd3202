#!/usr/bin/env bash
# The main job on the embedded default: a tiny random-weight Llama with per-layer
# MLP widths, converted to GGUF (architecture deci) and inspected. Output in out/.
set -euo pipefail
cd "$(dirname "$0")/.."

cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target piquant
mkdir -p out
./build/piquant synth --preset tiny --mlp-widths 384,512,256,448 -o out/tiny-hf
./build/piquant convert out/tiny-hf -o out/tiny-f16.gguf --type f16
./build/piquant inspect out/tiny-f16.gguf
