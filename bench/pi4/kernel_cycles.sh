#!/usr/bin/env bash
# Cortex-A72 (Raspberry Pi 4) cycles per block of piquant's NEON decode kernels, from
# llvm-mca's static pipeline model, written as the C++ table src/speed/pi4_kernel_cycles.inc
# that `piquant bench --project-pi4` projects decode speed from.
#
#   bench/pi4/kernel_cycles.sh [OUT.inc]     (default: src/speed/pi4_kernel_cycles.inc)
#   bench/pi4/kernel_cycles.sh --check       (writes nothing; scripts/test.sh runs it)
#
# Re-run it whenever the kernels (src/kernels/q8_dot_*-inl.h) change. --check builds a
# fresh table in a temporary folder and compares it with the committed one
# (bench/pi4/compare_cycles.py): every number within 3% (at least 1 cycle) passes, so a
# compiler or LLVM update that shifts a cycle or two does not fail it, a kernel change
# that moves a type's cost does. PIQUANT_PI4_TOLERANCE=0.05 widens it.
#
# Method: bench/pi4/kernel_loops.cpp wraps each decode kernel (real -inl.h code, Highway's
# static NEON target, -O3 -mcpu=cortex-a72) and calls it on rows of 16 and 32 blocks of
# 256 weights. qemu-user runs it instruction by instruction and logs every executed
# address, so each call's trace is its exact dynamic path (llvm-mca alone would read the
# kernels' loops once and both sides of their branches). llvm-mca replays each trace on
# its Cortex-A72 model; the difference of the two row lengths gives cycles per block.
# What llvm-mca assumes: every load hits L1, branches are predicted. The memory side is
# the projection's separate bandwidth bound.
#
# Needs: aarch64-linux-gnu-g++ (with its static libc), qemu-aarch64, llvm-mca and
# llvm-objdump, python3 (scripts/setup.sh installs them). Set PIQUANT_PI4_KEEP=1 to keep
# the work folder (the asm kernel_loops.s, the traces) for reading.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
committed=$root/src/speed/pi4_kernel_cycles.inc
check=0
if [[ "${1:-}" == --check ]]; then
  check=1
  out=  # set below, inside the work folder
else
  out=${1:-$committed}
fi
cxx=${PIQUANT_AARCH64_CXX:-aarch64-linux-gnu-g++}
qemu=${PIQUANT_QEMU_AARCH64:-qemu-aarch64}
mca=${PIQUANT_LLVM_MCA:-llvm-mca}
objdump=${PIQUANT_LLVM_OBJDUMP:-llvm-objdump}

for tool in "$cxx" "$qemu" "$mca" "$objdump" python3; do
  command -v "$tool" >/dev/null || { echo "kernel_cycles.sh: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/pi4_cycles.XXXXXX")
if [[ "${PIQUANT_PI4_KEEP:-0}" == 1 ]]; then
  echo "work folder: $work"
else
  trap 'rm -rf "$work"' EXIT
fi
if ((check)); then out=$work/fresh.inc; fi

# The Pi 4 build's flags (src/kernels/simd_config.h compiles NEON as the static target,
# without Highway's "+crypto"); kernel_cycles.py also rejects any crypto instruction in
# the traces, since the Pi 4's A72 has none.
flags=(-std=c++20 -O3 -mcpu=cortex-a72 -DNDEBUG -I"$root/src")
src="$root/src"
if [[ "${PIQUANT_PI4_KEEP:-0}" == 1 ]]; then
  "$cxx" "${flags[@]}" -S -o "$work/kernel_loops.s" "$root/bench/pi4/kernel_loops.cpp"
fi
"$cxx" "${flags[@]}" -static -o "$work/kernel_loops" "$root/bench/pi4/kernel_loops.cpp" \
  "$src/kernels/q8_activations.cpp" "$src/formats/ggml_type.cpp" "$src/core/error.cpp"

versions="$("$cxx" --version | head -n1), -O3 -mcpu=cortex-a72; $("$mca" --version | grep -m1 -o 'LLVM version [0-9.]*') llvm-mca -mcpu=cortex-a72"
python3 "$root/bench/pi4/kernel_cycles.py" --binary "$work/kernel_loops" --objdump "$objdump" --qemu "$qemu" \
  --mca "$mca" --out "$out" --versions "$versions" --workdir "$work"

if ((check)); then
  python3 "$root/bench/pi4/compare_cycles.py" "$out" "$committed" --tolerance "${PIQUANT_PI4_TOLERANCE:-0.03}"
fi
