#pragma once
// Random-weight Hugging Face checkpoints of real shapes, for speed and memory work at
// real scale without downloading a model: bf16 safetensors (sharded like the real
// ones), config.json and a real tokenizer.json. Speed does not depend on the values.
#include <cstdint>
#include <string>
#include <vector>

#include "formats/llama_params.h"
#include "tokenizer/vocab.h"

namespace piquant {

// "llama-3.1-8b", "llama-3.2-1b" (both need the Llama 3 tokenizer) or "tiny" (4 layers
// of width 256 with GQA and llama3 rope scaling, and its own 512-token tokenizer).
LlamaParams synth_preset(const std::string& name);
std::vector<std::string> synth_preset_names();
bool synth_preset_has_own_tokenizer(const std::string& name);

// Applies a --mlp-widths spec: either one width per layer ("96,128,64,160"), or
// range overrides on the preset's width ("4-27:10752", "0:512,3:256").
void apply_mlp_widths(LlamaParams& params, const std::string& spec);

struct SynthOptions {
  std::uint64_t seed = 1;
  float stddev = 0.02f;  // weights ~ N(0, stddev); norms are 1, ffn_down biases (if params flag any) 0
  unsigned threads = 0;  // 0: all cores
  std::uint64_t max_shard_bytes = 5ull << 30;
};

// Writes config.json, model*.safetensors (+ index) into dir. The tokenizer files are
// the caller's (save_vocab_hf or a copy of a real tokenizer.json).
void write_synthetic_weights(const LlamaParams& params, const std::string& dir, const SynthOptions& options);

}  // namespace piquant
