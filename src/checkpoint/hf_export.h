#pragma once
// Writes any Checkpoint as a Hugging Face folder: config.json, safetensors (sharded
// like the published checkpoints, one dtype for every tensor) and the tokenizer files.
// Streams tensor by tensor in row chunks, as export_gguf does.
//
// Layout:
// - every layer the same MLP width (and `decilm` not asked for): LlamaForCausalLM
//   (formats/hf_config.h's hf_config_to_json);
// - widths that differ between layers: Nvidia's DeciLM layout (model_type
//   "nemotron-nas", architectures ["DeciLMForCausalLM"], per-layer widths in
//   block_configs as ffn_mult, see formats/hf_config.h). DeciLM can express widths that
//   are multiples of 256 only: another width is an Error naming the folder and the
//   layer, before anything is written (a GGUF keeps any width; or prune with --align 256).
//   llama.cpp's convert_hf_to_gguf.py turns this layout into its "deci" architecture.
//
// ffn_down biases (a pruned model's bias compensation) are written as
// "model.layers.N.mlp.down_proj.bias" (n_embd values) in either layout. That tensor is
// piquant's extension: transformers' Llama and Nvidia's DeciLM have no bias on
// down_proj alone (mlp_bias would put one on gate, up and down) and would ignore it,
// so only piquant (HfCheckpoint, LlamaModel) reads it back and applies it. For stock
// llama.cpp, write a GGUF: its llama and deci graphs load blk.N.ffn_down.bias.
//
// Q and K rows are written back in Hugging Face's order (checkpoint.h's
// hf_row_for_gguf_row); llama3 rope scaling goes to config.json (from the params, or
// recovered from a GGUF's rope_freqs tensor), never as a tensor.
//
// Tokenizer: tokenizer.json (+ tokenizer_config.json, special_tokens_map.json,
// generation_config.json where they exist beside it) copied from `tokenizer_json`, else
// from the checkpoint's own folder when it has a tokenizer.json; otherwise the vocabulary
// is written by save_vocab_hf (byte-level BPE vocabularies only: a SentencePiece
// vocabulary without a tokenizer.json to copy is an Error).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "formats/safetensors.h"

namespace piquant {

struct HfExportOptions {
  SafeDtype dtype = SafeDtype::BF16;  // F32, F16 or BF16, for every tensor (norms and biases too)
  bool decilm = false;                // the DeciLM layout even when every layer has the same width
  std::string tokenizer_json;         // a tokenizer.json to copy (see above); empty: the default
  std::uint64_t max_shard_bytes = 5ull << 30;
  std::size_t chunk_bytes = 64u << 20;  // float rows converted per step
  // Called after each tensor: (tensors done, tensors total, bytes written so far).
  std::function<void(std::size_t, std::size_t, std::uint64_t)> progress;
};

struct HfExportSummary {
  std::string layout;  // "llama" or "decilm"
  std::uint64_t tensor_bytes = 0;
  std::uint64_t tensor_count = 0;
  std::vector<std::string> files;  // paths written, config.json and tokenizer files included
};

// Writes into `dir` (created if missing; files already there with the same names are
// replaced, each atomically). Throws Error before writing anything when the model cannot
// be expressed (a DeciLM width, a rope_freqs tensor no llama3 scaling explains, a dtype
// other than F32/F16/BF16, a vocabulary it cannot save).
HfExportSummary export_hf(const Checkpoint& checkpoint, const std::string& dir, const HfExportOptions& options = {});

}  // namespace piquant
