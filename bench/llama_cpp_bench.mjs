#!/usr/bin/env node
// Times stock llama.cpp (prebuilt, from the npm package node-llama-cpp) on one GGUF the
// way `piquant bench` times piquant, so that bench/compare_llama_cpp.sh can put the two
// side by side. Prints one JSON object on stdout; progress on stderr.
//
//   llama_cpp_bench.mjs MODEL.gguf [--prompts 64,512] [--gen 128] [--threads 2] [--runs 3] [--seed 1]
//
// Each run: load the model (load_seconds: llama.cpp's loadModel with its defaults, mmap
// and prefetch advice; the context is made after the clock stops), a context of
// max(prompt lengths, 8 + gen) + 1 positions whose batch holds the longest prompt, a
// one-token warm-up; then for each prompt length p: clear the sequence, evaluate p
// tokens in one batch until the first sampled token (ttft_seconds; p / ttft is
// tokens_per_second); then clear, evaluate 8 tokens untimed and `gen` tokens one at a
// time (each one evaluation and one greedy pick; decode tokens/s). The model is freed at
// the end of each run. Inputs are the same pseudo-random valid token ids as
// `piquant bench` (splitmix64 from --seed, uniform over the vocabulary), not text.
// Every timing is {mean, stddev (sample), n, samples} over the runs.
//
// Memory: peak_rss_bytes = VmHWM of this node process at the end minus its VmRSS just
// before the first load (node and the llama.cpp addon's own baseline), both from
// /proc/self/status; the raw numbers are in vm_hwm_bytes and baseline_rss_bytes.
//
// node-llama-cpp is looked up in $PIQUANT_INTEROP_DIR (e.g. build/interop, installed by
// the ctest fixture interop_npm_install).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

function fail(message) {
  process.stderr.write(`llama_cpp_bench.mjs: ${message}\n`);
  process.exit(2);
}
const log = (message) => process.stderr.write(`llama_cpp_bench: ${message}\n`);

const args = process.argv.slice(2);
const opts = { prompts: [64, 512], gen: 128, threads: 2, runs: 3, seed: 1 };
let modelPath;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--prompts") opts.prompts = args[++i].split(",").map(Number);
  else if (a === "--gen") opts.gen = Number(args[++i]);
  else if (a === "--threads") opts.threads = Number(args[++i]);
  else if (a === "--runs") opts.runs = Number(args[++i]);
  else if (a === "--seed") opts.seed = Number(args[++i]);
  else if (a.startsWith("--")) fail(`unknown option ${a}`);
  else modelPath = a;
}
const positive = (n) => Number.isInteger(n) && n > 0;
if (!modelPath || !opts.prompts.length || !opts.prompts.every(positive) || !positive(opts.gen) ||
    !positive(opts.threads) || !positive(opts.runs) || !Number.isInteger(opts.seed)) {
  fail("usage: llama_cpp_bench.mjs MODEL.gguf [--prompts P1,P2] [--gen N>0] [--threads N>0] [--runs N>0] [--seed S]");
}
const base = process.env.PIQUANT_INTEROP_DIR;
if (!base) fail("set PIQUANT_INTEROP_DIR to the folder holding node_modules/node-llama-cpp");
let entry;
try {
  entry = createRequire(path.join(path.resolve(base), "package.json")).resolve("node-llama-cpp");
} catch {
  fail(`node-llama-cpp is not installed under ${base} (run: ctest --test-dir <build> -R interop_npm_install)`);
}
const nlc = await import(pathToFileURL(entry).href);

// kB fields of /proc/self/status, in bytes.
function procStatus(key) {
  const m = readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
  return m ? Number(m[1]) * 1024 : 0;
}

// splitmix64, as piquant's speed bench draws its token ids.
function tokenSource(seed, nVocab) {
  const mask = (1n << 64n) - 1n;
  let state = BigInt(seed) & mask;
  return (n) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      state = (state + 0x9E3779B97F4A7C15n) & mask;
      let z = state;
      z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & mask;
      z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & mask;
      z ^= z >> 31n;
      out.push(Number(z % BigInt(nVocab)));
    }
    return out;
  };
}

function packageVersion() {
  try {
    return JSON.parse(readFileSync(path.join(path.resolve(base), "node_modules/node-llama-cpp/package.json"), "utf8")).version;
  } catch {
    return "(version unknown)";
  }
}

function stats(samples) {
  const n = samples.length;
  const mean = samples.reduce((a, b) => a + b, 0) / n;
  const stddev = n > 1 ? Math.sqrt(samples.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, stddev, n, samples };
}

const llama = await nlc.getLlama({
  gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, progressLogs: false,
  maxThreads: opts.threads, logLevel: "error", logger: () => {},
});
const baselineRss = procStatus("VmRSS");
const decodePrompt = 8;
const maxPrompt = Math.max(...opts.prompts);
const contextSize = Math.max(maxPrompt, decodePrompt + opts.gen) + 1;
const seconds = (start) => (performance.now() - start) / 1000;

const load = [];
const ttft = opts.prompts.map(() => []);
const decode = [];
for (let run = 0; run < opts.runs; run++) {
  const loadStart = performance.now();
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  load.push(seconds(loadStart));
  const embd = model.fileInfo.tensorInfo?.find((t) => t.name === "token_embd.weight");
  if (!embd) fail(`${modelPath}: no token_embd.weight to size the vocabulary from`);
  const nextTokens = tokenSource(opts.seed, Number(embd.dimensions[1]));
  const context = await model.createContext({ contextSize, batchSize: maxPrompt, sequences: 1, threads: opts.threads });
  const sequence = context.getSequence();
  const tag = `run ${run + 1}/${opts.runs}:`;
  log(`${tag} load ${load.at(-1).toFixed(3)} s`);

  await sequence.evaluateWithoutGeneratingNewTokens(nextTokens(1));  // warm-up
  for (let i = 0; i < opts.prompts.length; i++) {
    await sequence.clearHistory();
    const prompt = nextTokens(opts.prompts[i]);
    const start = performance.now();
    for await (const token of sequence.evaluate(prompt, { temperature: 0 })) break;  // the first sampled token
    ttft[i].push(seconds(start));
    log(`${tag} pp${opts.prompts[i]} ${ttft[i].at(-1).toFixed(3)} s`);
  }

  await sequence.clearHistory();
  let start = 0;
  let steps = -1;  // the first token comes from the untimed prompt
  for await (const token of sequence.evaluate(nextTokens(decodePrompt), { temperature: 0 })) {
    if (++steps === 0) start = performance.now();
    if (steps >= opts.gen) break;
  }
  decode.push(seconds(start));
  log(`${tag} tg${opts.gen} ${decode.at(-1).toFixed(3)} s`);
  await context.dispose();
  await model.dispose();
}
const vmHwm = procStatus("VmHWM");

process.stdout.write(JSON.stringify({
  engine: `llama.cpp via node-llama-cpp ${packageVersion()}`,
  model: modelPath, threads: opts.threads, runs: opts.runs, n_ctx: contextSize,
  token_source: "pseudo-random token ids (splitmix64), not text", token_seed: opts.seed,
  load_seconds: stats(load),
  prompt: opts.prompts.map((p, i) => ({
    n_tokens: p, ttft_seconds: stats(ttft[i]), tokens_per_second: stats(ttft[i].map((t) => p / t)),
  })),
  decode: {
    n_tokens: opts.gen, prompt_tokens: decodePrompt, seconds: stats(decode),
    tokens_per_second: stats(decode.map((t) => opts.gen / t)),
  },
  peak_rss_bytes: vmHwm - baselineRss, vm_hwm_bytes: vmHwm, baseline_rss_bytes: baselineRss,
}, null, 2) + "\n");
process.exit(0);
