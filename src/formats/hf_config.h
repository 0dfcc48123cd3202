#pragma once
// Hugging Face config.json for LlamaForCausalLM (Llama 2, 3, 3.1, 3.2): hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
// head_dim, vocab_size, rms_norm_eps, rope_theta, rope_scaling (type llama3),
// max_position_embeddings, tie_word_embeddings, bos_token_id, eos_token_id (int or
// list). piquant's extension for pruned models: intermediate_size may be a list with
// one width per layer.
//
// Also Nvidia's DeciLM layout (model_type "nemotron-nas", architectures
// ["DeciLMForCausalLM"], as Llama-3.1-Nemotron-51B; llama.cpp's converter turns it into
// the "deci" GGUF architecture): the same keys, but the MLP widths and KV head counts
// come from "block_configs", one entry per layer:
//   {"attention": {"n_heads_in_group": G, "no_op": false, "replace_with_linear": false},
//    "ffn": {"ffn_mult": M, "no_op": false, "replace_with_linear": false}}
// num_key_value_heads = num_attention_heads / G, and the width is DeciLM's
// intermediate_size = find_multiple(int(2 · M · hidden_size / 3), 256), evaluated in
// double left to right (as Python does) and rounded up to a multiple of 256: only
// multiples of 256 are expressible. piquant runs layers that are plain Llama blocks
// with one G for all layers; no_op / replace_with_linear blocks and a varying G are
// FormatErrors naming the block. Keys piquant does not know inside a block are
// ignored on reading and never written (loaders that build typed records from these
// entries may reject them), so no explicit per-block width is written: the M written
// gives the width exactly through the formula.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "formats/llama_params.h"

namespace piquant {

// `source` names the file in error messages.
LlamaParams parse_hf_config(const nlohmann::json& config, const std::string& source);
LlamaParams load_hf_config(const std::string& path);  // path to config.json
nlohmann::json hf_config_to_json(const LlamaParams& params);  // incl. architectures, model_type, torch_dtype bf16

// DeciLM's width for an ffn_mult (the formula above).
std::int64_t decilm_intermediate_size(double ffn_mult, std::int64_t n_embd);
// The shortest decimal ffn_mult (at most 17 significant digits) whose 2 · M · n_embd / 3
// lies within 1 of `width` and whose decilm_intermediate_size is exactly `width`.
// Throws Error when width is not a positive multiple of 256 (no M gives it).
double decilm_ffn_mult(std::int64_t width, std::int64_t n_embd);
// The DeciLM / nemotron-nas config.json of a model (per-layer widths in block_configs,
// intermediate_size and num_key_value_heads null as in Nvidia's files). Throws Error
// naming `target` and the layer when a width is not a multiple of 256.
nlohmann::json decilm_config_to_json(const LlamaParams& params, const std::string& target);

}  // namespace piquant
