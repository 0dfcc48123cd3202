#!/usr/bin/env bash
# Speed of piquant's engine against stock llama.cpp on the same GGUF, measured the same
# way on both sides, back to back.
#
# How to run, from the project root:
#   cmake --preset release && ninja -C build piquant
#   ctest --test-dir build -R interop_npm_install   # node-llama-cpp into build/interop, once
#   bash bench/compare_llama_cpp.sh [WORK_DIR]       # default WORK_DIR: build/bench
#
# What it does: unless MODEL is set, synthesizes a random-weight Llama 3.2 1B (`piquant
# synth --preset llama-3.2-1b`; speed does not depend on the weights' values) and
# converts it to F16 GGUF once (kept in WORK_DIR for later runs; ~2.5 GB twice). Then
# runs `piquant bench -o json` and bench/llama_cpp_bench.mjs (llama.cpp through
# node-llama-cpp) on the same file with the same threads, prompt lengths, decode length,
# repetitions and pseudo-random input token ids, and prints one table: decode tokens/s,
# prompt tokens/s and time to first token per prompt length (one batch), warm load time
# and peak RSS of both, as mean ± sample standard deviation over RUNS, with the ratios
# piquant / llama.cpp; then piquant's cold load, bytes read per token, measured read
# bandwidth and bandwidth efficiency (llama.cpp has no equivalent of those).
# Both use an F16 KV cache (llama.cpp: its defaults, flash attention on for CPU).
#
# Methods: see src/speed/speed_bench.h (piquant) and bench/llama_cpp_bench.mjs. Load:
# piquant's clock stops when every weight page is resident; llama.cpp's loadModel
# returns after mapping the file and advising the kernel to read it (pages still missing
# are read by the first evaluation), so on a cold cache the two differ in meaning; on a
# warm cache both are small. Peak RSS: piquant's VmHWM (one process, all repetitions,
# before its bandwidth probe); llama.cpp's is the node process's VmHWM minus its VmRSS
# just before the first load (node's own baseline).
#
# Settings (environment): PIQUANT (default build/piquant), PIQUANT_INTEROP_DIR
# (default build/interop), MODEL (a GGUF to use instead of the synthesized one),
# THREADS (2), PROMPTS (64,512), GEN_TOKENS (128), RUNS (3), COLD_REPS (1: piquant's
# cold loads, 0: none), BANDWIDTH_MIB (1024: piquant's read-bandwidth probe buffer),
# REFERENCE_THREADS (1; empty: skip): one more comparison at that thread count.
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
prompts=${PROMPTS:-64,512}
gen=${GEN_TOKENS:-128}
runs=${RUNS:-3}
cold_reps=${COLD_REPS:-1}
bandwidth_mib=${BANDWIDTH_MIB:-1024}

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

# One comparison at $1 threads: both JSON files, then the table.
compare() {
  local t=$1 pq_json=$work/piquant-bench-t$1.json ll_json=$work/llama-cpp-bench-t$1.json
  echo "== $(basename "$model"), $t threads, prompts $prompts, $gen decoded tokens, $runs runs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$piquant" bench -m "$model" -p "$prompts" -n "$gen" -t "$t" -r "$runs" --cold-reps "$cold_reps" \
    --bandwidth-mib "$bandwidth_mib" -o json > "$pq_json"
  node "$root/bench/llama_cpp_bench.mjs" "$model" --prompts "$prompts" --gen "$gen" --threads "$t" --runs "$runs" > "$ll_json"
  echo "== load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
  node - "$pq_json" "$ll_json" <<'JS'
const fs = require("node:fs");
const [pq, ll] = process.argv.slice(2).map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const GiB = 1024 ** 3;
const ms = (s, digits) => (!s ? "-" : s.stddev === undefined ? s.mean.toFixed(digits) : `${s.mean.toFixed(digits)} ± ${s.stddev.toFixed(digits)}`);
const ratio = (a, b) => (a && b && b.mean > 0 ? (a.mean / b.mean).toFixed(2) : "-");
const rows = [];
const row = (name, a, b, digits) => rows.push([name, ms(a, digits), ms(b, digits), ratio(a, b)]);
row(`decode t/s (tg${pq.decode.n_tokens})`, pq.decode.tokens_per_second, ll.decode.tokens_per_second, 2);
pq.prompt.forEach((p, i) => row(`prompt t/s (pp${p.n_tokens})`, p.tokens_per_second, ll.prompt[i]?.tokens_per_second, 2));
pq.prompt.forEach((p, i) => row(`time to first token, pp${p.n_tokens} (s)`, p.ttft_seconds, ll.prompt[i]?.ttft_seconds, 3));
row("load, warm (s)", pq.load_warm_seconds, ll.load_seconds, 3);
row("peak RSS (GiB)", { mean: pq.peak_rss_bytes / GiB }, { mean: ll.peak_rss_bytes / GiB }, 2);
const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c].length), ["", "piquant", "llama.cpp", "piquant/llama.cpp"][c].length));
const line = (r) => console.log(r.map((x, c) => (c === 0 ? x.padEnd(widths[c]) : x.padStart(widths[c]))).join("  "));
line(["", "piquant", "llama.cpp", "piquant/llama.cpp"]);
rows.forEach(line);
console.log("(t/s: higher is better; seconds and RSS: lower is better; mean ± sample sd over " + pq.reps + " runs)");
const cold = pq.load_cold_seconds;
console.log(`piquant only: load, cold ${cold ? ms(cold, 3) + " s (page cache " + (pq.cold_evicted ? "evicted" : "NOT evicted") + ")" : "not measured"}; ` +
  `bytes read per token ${(pq.bytes_per_token.total / 1e9).toFixed(3)} GB; ` +
  (pq.bandwidth ? `read bandwidth ${pq.bandwidth.read_gbs.toFixed(2)} GB/s at ${pq.threads} threads, bandwidth efficiency ${(pq.bandwidth.efficiency * 100).toFixed(0)}%`
                : "bandwidth not measured"));
JS
}

compare "$threads"
if [[ -n $reference_threads && $reference_threads != "$threads" ]]; then
  echo
  echo "== reference comparison at $reference_threads thread(s)"
  compare "$reference_threads"
fi
