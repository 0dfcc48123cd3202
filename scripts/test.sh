#!/usr/bin/env bash
# Builds piquant and runs every test: the Release build (incl. the llama.cpp interop
# tests), the same unit tests under AddressSanitizer + UndefinedBehaviorSanitizer, and
# the Raspberry Pi 4 cross build (aarch64) whose unit tests run under qemu-aarch64 on an
# emulated Cortex-A72, so every NEON kernel is checked against its scalar reference,
# and the Pi 4 cycle table (bench/pi4/kernel_cycles.sh --check) is compared with the kernels.
# Usage: scripts/test.sh [--release-only] [--no-aarch64]
set -euo pipefail
cd "$(dirname "$0")/.."

release_only=0
aarch64=1
for arg in "$@"; do
  case "$arg" in
    --release-only) release_only=1 ;;
    --no-aarch64) aarch64=0 ;;
    *) echo "usage: scripts/test.sh [--release-only] [--no-aarch64]" >&2; exit 2 ;;
  esac
done

jobs=$(nproc)
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

# The Release unit tests again under each lower SIMD level this CPU runs. CI may land on
# an AVX2-only or an AVX-512 machine, and PIQUANT_SIMD (read by the test binaries and by
# the CLI they spawn) makes this one run exactly what such a CPU would, so every CPU-
# dependent path is tested wherever CI runs. The interop tests ran once above. About
# 45 s per level on 2 cores; x86 has up to 4 lower levels, aarch64 none. The whole-
# pipeline runs (DefaultPipeline: about a minute each, orchestration whose arithmetic the
# unit tests cover level by level) ran once above, and are left out here and under ASan.
pipeline_runs='DefaultPipeline\.(Reports|Killed)'
# Likewise the tests that drive quantize's size budget and awq through the CLI several
# times each (about 40 s in Release, many minutes under ASan or qemu): the library code
# they reach is tested in-process by the Sensitivity*, BudgetPlan, Knapsack and Awq tests,
# which do run at every level, under ASan and on aarch64.
pipeline_runs="$pipeline_runs|BudgetCli\.|Awq\.AlphaZeroReproduces"

simd_level() {  # the level a PIQUANT_SIMD value gives here, empty if this CPU lacks it
  PIQUANT_SIMD=$1 build/tests/test_core --gtest_list_tests 2>&1 >/dev/null | sed -n 's/^PIQUANT_SIMD=.*: SIMD target \([A-Z0-9_]*\)$/\1/p' || true
}
best=$(simd_level best)
for level in avx512 avx2 sse4 scalar; do
  target=$(simd_level "$level")
  if [[ -n $target && $target != "$best" ]]; then
    echo "== Release unit tests with PIQUANT_SIMD=$level ($target)"
    PIQUANT_SIMD=$level ctest --preset release -j "$jobs" -LE interop -E "$pipeline_runs"
  fi
done

if ((release_only)); then exit 0; fi

if ((aarch64)); then
  cmake --preset aarch64 >/dev/null
  cmake --build --preset aarch64 -j "$jobs"
  ctest --preset aarch64 -j "$jobs" -E "$pipeline_runs"
fi

# Pi 4 cycle table: builds a fresh one from today's NEON kernels in a temporary folder
# (cross build, qemu trace, llvm-mca; about 30 s) and compares it with the committed
# src/speed/pi4_kernel_cycles.inc within 3% per number.
# Needs the same cross toolchain as the aarch64 step, so --no-aarch64 skips it too.
if ((aarch64)); then
  echo "== Pi 4 kernel cycle table (bench/pi4/kernel_cycles.sh --check)"
  bash bench/pi4/kernel_cycles.sh --check
fi

cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
ctest --preset asan -j "$jobs" -E "$pipeline_runs"
