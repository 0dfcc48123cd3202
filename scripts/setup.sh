#!/usr/bin/env bash
# Installs every build and test dependency of piquant from Debian's packages, including
# the Raspberry Pi 4 cross build (arm64 multiarch libraries, cross compiler, qemu-user).
# Idempotent: installs only what is missing, and says nothing when all is there.
# `--main`: only what building piquant and running the main job (scripts/demo.sh) needs.
set -euo pipefail

# What `piquant` itself needs to build and to run the pipeline (README's first command).
main_packages=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libcli11-dev libpcre2-dev libhwy-dev libtomlplusplus-dev
  # The configure step also finds the test framework (the tests are not built for the main job).
  libgtest-dev libgmock-dev
  # The pipeline report's plots.
  gnuplot-nox
)
# And what the tests and benchmarks need (README's test command).
test_packages=(
  libbenchmark-dev
  nodejs npm python3 python3-numpy
  # The training tests' independent reference (tests/train/python) and the PyTorch anchor of bench/train_bench.sh.
  python3-torch libopenblas0-pthread
  # Raspberry Pi 4 (aarch64): cross compiler, emulator for its tests, the arm64 libraries,
  # and llvm-mca for static throughput estimates of the NEON kernels.
  g++-aarch64-linux-gnu qemu-user llvm
  libc6:arm64 libstdc++6:arm64 libhwy-dev:arm64 libpcre2-dev:arm64 libtomlplusplus-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64
)
case "${1:-}" in
  --main) packages=("${main_packages[@]}") ;;
  "") packages=("${main_packages[@]}" "${test_packages[@]}") ;;
  *) echo "usage: scripts/setup.sh [--main]   (--main: only what the main job needs, not the tests)" >&2; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
needs_arm64=0
for p in "${packages[@]}"; do
  # node and npm may come from outside Debian (e.g. an image's own Node.js): accept them on PATH.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  missing+=("$p")
  [[ "$p" == *:arm64 ]] && needs_arm64=1
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  # arm64 packages come from the same Debian mirror once dpkg knows the architecture.
  if ((needs_arm64)) && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
  fi
  # env, not export: sudo would drop an exported DEBIAN_FRONTEND.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
