#!/usr/bin/env node
// Stock llama.cpp as a command-line oracle for piquant's interop tests.
//
// llama.cpp comes prebuilt inside the npm package node-llama-cpp (pinned in
// package.json, installed by the ctest fixture interop_npm_install into
// <build>/interop). Every subcommand prints one JSON document on stdout; llama.cpp's
// own log goes to stderr, and only when the command fails or --verbose is given.
//
//   metadata FILE.gguf                      metadata and tensor infos
//   tokenize FILE.gguf TEXT_FILE [--special] [--list]
//   generate FILE.gguf PROMPT N             greedy continuation of N tokens
//   logits   FILE.gguf TOKEN_IDS [--probabilities]
//   chunk-logits FILE.gguf CHUNKS_JSON OUT.bin [--first N]
//                                           logits of many sequences, each from an
//                                           empty cache, as raw float32 (perplexity)
//
// Options: --threads N (default 1: ggml's worker threads spin, which on a small,
// shared CI box is many times slower than one thread), --context N, --verbose,
// --kv-type F32|F16|... (KV cache type, default F16) and --flash-attention
// auto|on|off (default auto, which turns it on for CPU). Both defaults round
// attention through f16 and move logits by ~5e-3 on stories260K; for comparing
// with an f32 reference use --kv-type F32 --flash-attention off (with flash
// attention on, the KV type makes no difference). --batch N caps how many tokens go
// into one llama_decode call (default: the whole context). --lora FILE.gguf applies a
// llama.cpp LoRA adapter (scale 1) to the context (generate, logits, chunk-logits).
// The package is looked up in $PIQUANT_INTEROP_DIR (the install folder), else next
// to this script.
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const usage = `usage: llama_cpp.mjs COMMAND ARGS [--threads N] [--context N] [--verbose]
       [--kv-type F32|F16] [--flash-attention auto|on|off] [--batch N] [--lora FILE.gguf]   (generate, logits)
  metadata FILE.gguf
  tokenize FILE.gguf TEXT_FILE [--special] [--list]
      TEXT_FILE is UTF-8 text, or with --list a JSON array of strings.
      --special parses special-token text (e.g. "<s>") as special tokens.
      Never adds BOS/EOS (llama.cpp's add_special = false).
  generate FILE.gguf PROMPT N
      Greedy (temperature 0) continuation; BOS is added when the model asks for it.
  logits FILE.gguf TOKEN_IDS [--probabilities]
      TOKEN_IDS is a JSON array of token ids, or a file holding one. Prints the
      full-vocabulary next-token logits after every prefix tokens[0..i].
  chunk-logits FILE.gguf CHUNKS_JSON OUT.bin [--first N]
      CHUNKS_JSON is a file holding a JSON array of token-id arrays. Each array is
      evaluated from an empty cache; the next-token logits at its positions
      N..length-1 (default N = 0) are written to OUT.bin as rows of n_vocab
      little-endian float32, array after array. Prints {n_vocab, n_chunks, first, rows}.`;

class UsageError extends Error {}

function parseArgs(argv) {
  const positional = [];
  const flags = {
    threads: 1, context: 0, batch: 0, kvType: null, flashAttention: "auto",
    verbose: false, special: false, list: false, probabilities: false, first: 0, lora: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const takeNumber = (name) => {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 0) throw new UsageError(`${name} needs a non-negative integer`);
      return value;
    };
    if (arg === "--threads") flags.threads = Math.max(1, takeNumber("--threads"));
    else if (arg === "--context") flags.context = takeNumber("--context");
    else if (arg === "--batch") flags.batch = Math.max(1, takeNumber("--batch"));
    else if (arg === "--kv-type") flags.kvType = String(argv[++i] ?? "").toUpperCase();
    else if (arg === "--flash-attention") {
      const value = argv[++i];
      if (!["auto", "on", "off"].includes(value)) throw new UsageError("--flash-attention takes auto, on or off");
      flags.flashAttention = value === "auto" ? "auto" : value === "on";
    }
    else if (arg === "--verbose") flags.verbose = true;
    else if (arg === "--special") flags.special = true;
    else if (arg === "--list") flags.list = true;
    else if (arg === "--probabilities") flags.probabilities = true;
    else if (arg === "--first") flags.first = takeNumber("--first");
    else if (arg === "--lora") {
      flags.lora = argv[++i];
      if (!flags.lora) throw new UsageError("--lora needs a GGUF adapter file");
    }
    else if (arg === "--help" || arg === "-h") throw new UsageError("");
    else if (arg.startsWith("--")) throw new UsageError(`unknown option ${arg}`);
    else positional.push(arg);
  }
  return { positional, flags };
}

async function importNodeLlamaCpp() {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const base = process.env.PIQUANT_INTEROP_DIR || here;
  const require = createRequire(path.join(base, "package.json"));
  let entry;
  try {
    entry = require.resolve("node-llama-cpp");
  } catch {
    throw new Error(`node-llama-cpp is not installed under ${base}/node_modules ` +
                    "(run the ctest fixture interop_npm_install, e.g. `ctest -L interop`)");
  }
  return import(pathToFileURL(entry).href);
}

// llama.cpp's log, kept in memory: printed only on failure or with --verbose, so
// that expected noise (node-llama-cpp's resource simulation fails on vocab-only
// files) does not read like an error. The loader's key/value dump is parsed for
// the value types llama.cpp's own GGUF reader saw.
class LogCollector {
  constructor() {
    this.lines = [];
  }
  // node-llama-cpp hands over one llama.cpp log line per call, newline stripped.
  add(level, message) {
    for (const line of String(message).split("\n")) {
      if (line.trim()) this.lines.push(`[${level}] ${line}`);
    }
  }
  text() {
    return this.lines.join("\n");
  }
  // "llama_model_loader: - kv   5:   llama.feed_forward_length u32 = 11008" -> {key: "u32"}
  kvTypes() {
    const types = {};
    for (const line of this.lines) {
      const match = /llama_model_loader: - kv\s+\d+:\s+(\S+)\s+(\S+)\s+=/.exec(line);
      if (match && !(match[1] in types)) types[match[1]] = match[2];
    }
    return types;
  }
}

async function openLlama(nlc, flags, log) {
  return nlc.getLlama({
    gpu: false,
    build: "never",
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: false,
    maxThreads: flags.threads,
    logLevel: "info",
    logger: (level, message) => log.add(level, message),
  });
}

// JSON with 64-bit integers written as exact numbers (JSON.stringify rejects BigInt).
function toJson(value) {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (Number.isFinite(value)) return JSON.stringify(value);
    return JSON.stringify(String(value));  // NaN/Infinity have no JSON spelling
  }
  if (Array.isArray(value)) return "[" + value.map(toJson).join(",") + "]";
  if (value !== null && typeof value === "object") {
    return "{" + Object.entries(value).map(([k, v]) => JSON.stringify(k) + ":" + toJson(v)).join(",") + "}";
  }
  return JSON.stringify(value ?? null);
}

// The same text in pieces, split down to `depth` levels, so that a result such as
// logits for many positions x 128k tokens never has to be one string in memory.
function* jsonChunks(value, depth = 2) {
  const isObject = value !== null && typeof value === "object";
  if (depth === 0 || !isObject) {
    yield toJson(value);
    return;
  }
  const array = Array.isArray(value);
  const entries = array ? value.map((v) => [null, v]) : Object.entries(value);
  yield array ? "[" : "{";
  for (let i = 0; i < entries.length; i++) {
    const [key, item] = entries[i];
    yield (i > 0 ? "," : "") + (array ? "" : JSON.stringify(key) + ":");
    yield* jsonChunks(item, depth - 1);
  }
  yield array ? "]" : "}";
}

async function writeJson(value) {
  const write = (text) => new Promise((resolve, reject) => process.stdout.write(text, (e) => (e ? reject(e) : resolve())));
  let buffered = "";
  for (const chunk of jsonChunks(value, 3)) {
    buffered += chunk;
    if (buffered.length > 1 << 20) {
      await write(buffered);
      buffered = "";
    }
  }
  await write(buffered + "\n");
}

// readGgufFileInfo nests keys on their dots ("a.b.c" -> a: {b: {c}}); joining the
// path back gives the file's keys (leaves are scalars or arrays, never objects).
function flattenMetadata(nested, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(nested)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) flattenMetadata(value, name, out);
    else out[name] = value;
  }
  return out;
}

async function commandMetadata(nlc, [file], flags, log) {
  if (!file) throw new UsageError("metadata needs FILE.gguf");
  const info = await nlc.readGgufFileInfo(file, { readTensorInfo: true, logWarnings: false });
  const result = {
    reader: "node-llama-cpp readGgufFileInfo",
    version: info.version,
    tensor_count: info.tensorCount,
    data_offset: info.infoEndOffset,
    metadata: flattenMetadata(info.metadata),
    tensors: (info.tensorInfo ?? []).map((t) => ({
      name: t.name,
      type: t.ggmlType,
      type_name: nlc.GgmlType[t.ggmlType] ?? null,
      shape: t.dimensions,
      offset: t.offset,
    })),
  };
  // llama.cpp's view: a vocab-only load parses the header (and the hyperparameters
  // for the architecture) with llama.cpp's own reader, which logs every key's type.
  const llama = await openLlama(nlc, flags, log);
  try {
    const model = await llama.loadModel({ modelPath: file, vocabOnly: true, gpuLayers: 0 });
    await model.dispose();
    result.llama_cpp_load_error = null;
  } catch (error) {
    result.llama_cpp_load_error = String(error?.message ?? error);
  }
  result.llama_cpp_types = log.kvTypes();
  return result;
}

async function commandTokenize(nlc, [file, textFile], flags, log) {
  if (!file || !textFile) throw new UsageError("tokenize needs FILE.gguf TEXT_FILE");
  const raw = readFileSync(textFile, "utf8");
  const texts = flags.list ? JSON.parse(raw) : [raw];
  if (!Array.isArray(texts) || texts.some((t) => typeof t !== "string")) {
    throw new UsageError(`${textFile}: --list needs a JSON array of strings`);
  }
  const llama = await openLlama(nlc, flags, log);
  const model = await llama.loadModel({ modelPath: file, vocabOnly: true, gpuLayers: 0 });
  // model.tokenize() -> llama.cpp common_tokenize(vocab, text, add_special=false, parse_special).
  const tokens = texts.map((text) => model.tokenize(text, flags.special));
  return flags.list ? { tokens } : { tokens: tokens[0] };
}

async function openSequence(model, needed, flags) {
  const contextSize = flags.context > 0 ? flags.context : Math.max(256, Math.ceil(needed / 256) * 256);
  const options = {
    contextSize, batchSize: flags.batch > 0 ? Math.min(flags.batch, contextSize) : contextSize, sequences: 1, threads: flags.threads, flashAttention: flags.flashAttention,
  };
  if (flags.lora) options.lora = { adapters: [{ filePath: flags.lora, scale: 1 }] };
  if (flags.kvType) {
    options.experimentalKvCacheKeyType = flags.kvType;
    options.experimentalKvCacheValueType = flags.kvType;
  }
  const context = await model.createContext(options);
  return context.getSequence();
}

async function commandGenerate(nlc, [file, prompt, count], flags, log) {
  const n = Number(count);
  if (!file || prompt === undefined || !Number.isInteger(n) || n < 0) {
    throw new UsageError("generate needs FILE.gguf PROMPT N");
  }
  const llama = await openLlama(nlc, flags, log);
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  // The model's own BOS rule: llama.cpp's llama_vocab_get_add_bos (the file's
  // tokenizer.ggml.add_bos_token, else the vocabulary type's default).
  const promptTokens = model.tokenize(prompt, false);
  const bos = model.tokens.bos;
  if (model.tokens.shouldPrependBosToken && bos != null) promptTokens.unshift(bos);
  const sequence = await openSequence(model, promptTokens.length + n + 1, flags);
  const tokens = [];
  let stop = "length";
  if (n > 0) {
    // temperature 0: llama.cpp's greedy sampler, no penalties; stops early at an
    // end-of-generation token (which is not included).
    for await (const token of sequence.evaluate(promptTokens, { temperature: 0 })) {
      tokens.push(token);
      if (tokens.length >= n) break;
    }
    if (tokens.length < n) stop = "eog";
  }
  return { prompt_tokens: promptTokens, tokens, text: model.detokenize(tokens), stop };
}

function readTokenIds(arg) {
  const text = arg.trimStart().startsWith("[") ? arg : readFileSync(arg, "utf8");
  const ids = JSON.parse(text);
  if (!Array.isArray(ids) || ids.length === 0 || ids.some((t) => !Number.isInteger(t) || t < 0)) {
    throw new UsageError("TOKEN_IDS must be a non-empty JSON array of token ids");
  }
  return ids;
}

async function commandLogits(nlc, [file, idsArg], flags, log) {
  if (!file || !idsArg) throw new UsageError("logits needs FILE.gguf TOKEN_IDS");
  const ids = readTokenIds(idsArg);
  const llama = await openLlama(nlc, flags, log);
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const vocabSize = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length;
  if (!Number.isInteger(vocabSize)) throw new Error(`${file}: no tokenizer.ggml.tokens array`);
  for (const id of ids) {
    if (id >= vocabSize) throw new UsageError(`token id ${id} is outside the vocabulary (size ${vocabSize})`);
  }
  const sequence = await openSequence(model, ids.length, flags);
  // One batch, an output at every position. With temperature 0 the sampler chain is
  // only the greedy picker, which leaves the candidates' logits as llama.cpp
  // computed them, so `logits: true` is the whole raw row.
  const generateNext = { logits: true, probabilities: flags.probabilities, options: { temperature: 0 } };
  const results = await sequence.controlledEvaluate(ids.map((id) => [id, { generateNext }]));
  const dense = (map, what, position) => {
    if (!map || map.size !== vocabSize) {
      throw new Error(`position ${position}: node-llama-cpp returned ${map?.size ?? 0} ${what}, expected ${vocabSize}`);
    }
    const row = new Array(vocabSize);
    for (const [token, value] of map) row[token] = value;
    return row;
  };
  const logits = [];
  const probabilities = [];
  const argmax = [];
  results.forEach((result, position) => {
    logits.push(dense(result?.next?.logits, "logits", position));
    if (flags.probabilities) probabilities.push(dense(result.next.probabilities, "probabilities", position));
    argmax.push(logits[position].reduce((best, value, token, row) => (value > row[best] ? token : best), 0));
  });
  if (results.length !== ids.length) throw new Error(`got ${results.length} outputs for ${ids.length} tokens`);
  const output = { n_vocab: vocabSize, tokens: ids, argmax, logits };
  if (flags.probabilities) output.probabilities = probabilities;
  return output;
}

// Many independent sequences in one process (loading llama.cpp takes a second):
// the binary output keeps tens of MB of logits exact and quick to read.
async function commandChunkLogits(nlc, [file, chunksFile, outFile], flags, log) {
  if (!file || !chunksFile || !outFile) throw new UsageError("chunk-logits needs FILE.gguf CHUNKS_JSON OUT.bin");
  const chunks = JSON.parse(readFileSync(chunksFile, "utf8"));
  const valid = Array.isArray(chunks) && chunks.length > 0 && chunks.every((ids) =>
    Array.isArray(ids) && ids.length > flags.first && ids.every((t) => Number.isInteger(t) && t >= 0));
  if (!valid) {
    throw new UsageError(`${chunksFile}: needs a non-empty JSON array of token-id arrays, each longer than --first ${flags.first}`);
  }
  const llama = await openLlama(nlc, flags, log);
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const vocabSize = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length;
  if (!Number.isInteger(vocabSize)) throw new Error(`${file}: no tokenizer.ggml.tokens array`);
  if (chunks.some((ids) => ids.some((id) => id >= vocabSize))) {
    throw new UsageError(`${chunksFile}: a token id is outside the vocabulary (size ${vocabSize})`);
  }
  const sequence = await openSequence(model, Math.max(...chunks.map((ids) => ids.length)), flags);
  const generateNext = { logits: true, options: { temperature: 0 } };
  const out = openSync(outFile, "w");
  let rows = 0;
  try {
    for (const [c, ids] of chunks.entries()) {
      await sequence.clearHistory();
      const results = await sequence.controlledEvaluate(ids.map((id, i) => (i >= flags.first ? [id, { generateNext }] : id)));
      for (let i = flags.first; i < ids.length; i++) {
        const map = results[i]?.next?.logits;
        if (!map || map.size !== vocabSize) {
          throw new Error(`chunk ${c} position ${i}: node-llama-cpp returned ${map?.size ?? 0} logits, expected ${vocabSize}`);
        }
        const row = new Float32Array(vocabSize);
        for (const [token, value] of map) row[token] = value;
        writeSync(out, new Uint8Array(row.buffer));
        rows++;
      }
    }
  } finally {
    closeSync(out);
  }
  return { n_vocab: vocabSize, n_chunks: chunks.length, first: flags.first, rows };
}

const commands = {
  metadata: commandMetadata,
  tokenize: commandTokenize,
  generate: commandGenerate,
  logits: commandLogits,
  "chunk-logits": commandChunkLogits,
};

async function main() {
  const log = new LogCollector();
  let flags = { verbose: false };
  try {
    const parsed = parseArgs(process.argv.slice(2));
    flags = parsed.flags;
    const [name, ...args] = parsed.positional;
    const command = commands[name];
    if (!command) throw new UsageError(name ? `unknown command ${name}` : "");
    const nlc = await importNodeLlamaCpp();
    if (flags.kvType && typeof nlc.GgmlType[flags.kvType] !== "number") {
      throw new UsageError(`--kv-type: ${flags.kvType} is not a ggml type name (F32, F16, Q8_0, ...)`);
    }
    const result = await command(nlc, args, flags, log);
    const logText = log.text();
    if (flags.verbose && logText) process.stderr.write(logText + "\n");
    // Waits for every write: stdout may be a pipe and the process exits right after.
    await writeJson(result);
    return 0;
  } catch (error) {
    const logText = log.text();
    if (logText) process.stderr.write(logText + "\n");
    if (error instanceof UsageError) {
      if (error.message) process.stderr.write(`llama_cpp.mjs: ${error.message}\n`);
      process.stderr.write(usage + "\n");
      return 2;
    }
    process.stderr.write(`llama_cpp.mjs: ${error?.stack ?? error}\n`);
    return 1;
  }
}

// Exit explicitly: node-llama-cpp keeps native handles that would hold the process open.
process.exit(await main());
