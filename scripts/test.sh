#!/usr/bin/env bash
# Builds piquant and runs every test: the Release build (incl. the llama.cpp interop
# tests) and the same unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
# Usage: scripts/test.sh [--release-only]
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

if [[ "${1:-}" != "--release-only" ]]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  ctest --preset asan -j "$jobs"
fi
