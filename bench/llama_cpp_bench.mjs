#!/usr/bin/env node
// Times stock llama.cpp (prebuilt, from the npm package node-llama-cpp) on one GGUF:
// the prompt evaluated as one batch, then greedy decoding one token at a time.
// Used by bench/compare_llama_cpp.sh; prints one JSON line.
//
//   llama_cpp_bench.mjs MODEL.gguf PROMPT_FILE N_GEN [--threads N]
//
// The prompt is the file's text tokenized by llama.cpp, with BOS when the model asks
// for it (as `piquant generate` does). prompt_seconds runs from the start of the
// evaluation to the first sampled token; decode_seconds covers the N_GEN - 1 tokens
// after it (each one evaluation and one greedy pick). node-llama-cpp is looked up
// in $PIQUANT_INTEROP_DIR (e.g. build/interop, installed by the ctest fixture
// interop_npm_install).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

function fail(message) {
  process.stderr.write(`llama_cpp_bench.mjs: ${message}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let threads = 2;
const positional = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--threads") threads = Number(args[++i]);
  else positional.push(args[i]);
}
const [modelPath, promptFile, genArg] = positional;
const nGen = Number(genArg);
if (!modelPath || !promptFile || !Number.isInteger(nGen) || nGen < 2 || !Number.isInteger(threads) || threads < 1) {
  fail("usage: llama_cpp_bench.mjs MODEL.gguf PROMPT_FILE N_GEN(>=2) [--threads N]");
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

const llama = await nlc.getLlama({
  gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, progressLogs: false,
  maxThreads: threads, logLevel: "error", logger: () => {},
});
const loadStart = performance.now();
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const prompt = model.tokenize(readFileSync(promptFile, "utf8"), false);
if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) prompt.unshift(model.tokens.bos);
const contextSize = Math.ceil((prompt.length + nGen + 1) / 256) * 256;
const context = await model.createContext({ contextSize, batchSize: contextSize, sequences: 1, threads });
const sequence = context.getSequence();
const loadSeconds = (performance.now() - loadStart) / 1000;

const start = performance.now();
let firstAt = 0;
let generated = 0;
for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
  generated++;
  if (generated === 1) firstAt = performance.now();
  if (generated >= nGen) break;
}
const end = performance.now();
const promptSeconds = (firstAt - start) / 1000;
const decodeSeconds = (end - firstAt) / 1000;
process.stdout.write(JSON.stringify({
  threads, load_seconds: loadSeconds,
  prompt_tokens: prompt.length, prompt_seconds: promptSeconds, prompt_tps: prompt.length / promptSeconds,
  generated, decode_seconds: decodeSeconds, decode_tps: (generated - 1) / decodeSeconds,
}) + "\n");
process.exit(0);
