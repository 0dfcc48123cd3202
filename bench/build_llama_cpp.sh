#!/usr/bin/env bash
# Builds stock llama.cpp natively (Release, -DGGML_NATIVE=ON: this CPU's SIMD) from the
# source that the npm package node-llama-cpp ships, for the benches that need llama.cpp's
# own command-line tools (bench/compare_quantizer.sh): llama-quantize, llama-imatrix,
# llama-perplexity and llama-bench, static, into BUILD_DIR/bin.
#
# How to run, from the project root:
#   ctest --test-dir build -R interop_npm_install   # node-llama-cpp into build/interop, once
#   bash bench/build_llama_cpp.sh [BUILD_DIR]        # default BUILD_DIR: build/llama.cpp-native
# It prints the bin folder as its last line, so a script can take it:
#   bin=$(bash bench/build_llama_cpp.sh | tail -n 1)
#
# Where the source comes from: node-llama-cpp's llama/ folder holds gitRelease.bundle, a
# git bundle with one squashed commit of the llama.cpp release it was made for (its tag
# is in llama/llama.cpp.info.json); `git clone` of the bundle gives the source tree.
# node-llama-cpp's own patches (llama/patches) are not applied: this is stock llama.cpp.
# No CURL/OpenSSL, tests, examples or server. On 2 cores the build takes ~7 minutes;
# when BUILD_DIR/bin already holds the four tools built from the same commit (the stamp
# BUILD_DIR/built-commit), nothing is done.
#
# Settings (environment): LLAMA_CPP_BUILD_DIR (BUILD_DIR, when no argument is given),
# PIQUANT_INTEROP_DIR (default build/interop), JOBS (default: nproc).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${LLAMA_CPP_BUILD_DIR:-$root/build/llama.cpp-native}}
interop=${PIQUANT_INTEROP_DIR:-$root/build/interop}
jobs=${JOBS:-$(nproc)}
package=$interop/node_modules/node-llama-cpp
bundle=$package/llama/gitRelease.bundle
tools=(llama-quantize llama-imatrix llama-perplexity llama-bench)

if [[ ! -f $bundle ]]; then
  cat >&2 <<EOF
build_llama_cpp.sh: node-llama-cpp is not installed ($bundle is missing).
Install the pinned version (tests/interop/package.json) into $interop with
  cmake --preset release && ctest --test-dir build -R interop_npm_install
or by hand:
  mkdir -p $interop && cp tests/interop/package.json tests/interop/package-lock.json $interop/
  (cd $interop && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true NODE_LLAMA_CPP_POSTINSTALL=skip \\
     npm install --ignore-scripts --no-audit --no-fund --omit=optional)
or set PIQUANT_INTEROP_DIR to a folder where it is installed.
EOF
  exit 1
fi
for tool in git cmake c++; do
  command -v "$tool" >/dev/null || { echo "build_llama_cpp.sh: $tool is needed" >&2; exit 1; }
done

commit=$(git bundle list-heads "$bundle" | awk '$2 == "HEAD" { print $1 }')
[[ -n $commit ]] || commit=$(git bundle list-heads "$bundle" | awk 'NR == 1 { print $1 }')
[[ -n $commit ]] || { echo "build_llama_cpp.sh: $bundle lists no commit" >&2; exit 1; }
tag=$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$package/llama/llama.cpp.info.json" 2>/dev/null || true)
version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$package/package.json" | head -n 1)
echo "llama.cpp ${tag:-(no tag)}, commit $commit (from node-llama-cpp $version)"

bin=$dir/bin
built() {
  [[ -f $dir/built-commit && $(cat "$dir/built-commit") == "$commit" ]] || return 1
  local tool
  for tool in "${tools[@]}"; do [[ -x $bin/$tool ]] || return 1; done
}
if built; then
  echo "already built from $commit; nothing to do"
  echo "$bin"
  exit 0
fi

rm -f "$dir/built-commit"
mkdir -p "$dir"
src=$dir/src
if [[ ! -d $src/.git || $(git -C "$src" rev-parse HEAD 2>/dev/null) != "$commit" ]]; then
  echo "== source: git clone of $bundle into $src"
  rm -rf "$src"
  git -c advice.detachedHead=false clone -q "$bundle" "$src"
  git -C "$src" -c advice.detachedHead=false checkout -q "$commit"
fi

started=$(date +%s)
echo "== configuring (Release, GGML_NATIVE=ON, static, no CURL/OpenSSL, no tests/examples/server)"
cmake -S "$src" -B "$dir/cmake-build" -G "$(command -v ninja >/dev/null && echo Ninja || echo 'Unix Makefiles')" \
  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF >"$dir/configure.log" 2>&1 ||
  { tail -n 40 "$dir/configure.log" >&2; echo "build_llama_cpp.sh: configure failed ($dir/configure.log)" >&2; exit 1; }
echo "== building ${tools[*]} with $jobs jobs (log: $dir/build.log)"
cmake --build "$dir/cmake-build" --config Release -j "$jobs" --target "${tools[@]}" >"$dir/build.log" 2>&1 ||
  { tail -n 40 "$dir/build.log" >&2; echo "build_llama_cpp.sh: build failed ($dir/build.log)" >&2; exit 1; }
# The tools are static: copy them out of the CMake tree (llama.cpp fixes its own bin/ there).
mkdir -p "$bin"
for tool in "${tools[@]}"; do
  [[ -x $dir/cmake-build/bin/$tool ]] || { echo "build_llama_cpp.sh: $tool was not built" >&2; exit 1; }
  cp "$dir/cmake-build/bin/$tool" "$bin/$tool"
done
echo "$commit" >"$dir/built-commit"
echo "== built in $(( $(date +%s) - started )) s: $("$dir/cmake-build/bin/llama-perplexity" --version 2>&1 | tr "\n" " ")"
echo "$bin"
