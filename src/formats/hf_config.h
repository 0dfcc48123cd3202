#pragma once
// Hugging Face config.json for LlamaForCausalLM (Llama 2, 3, 3.1, 3.2): hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
// head_dim, vocab_size, rms_norm_eps, rope_theta, rope_scaling (type llama3),
// max_position_embeddings, tie_word_embeddings, bos_token_id, eos_token_id (int or
// list). piquant's extension for pruned models: intermediate_size may be a list with
// one width per layer.
#include <string>

#include <nlohmann/json.hpp>

#include "formats/llama_params.h"

namespace piquant {

// `source` names the file in error messages.
LlamaParams parse_hf_config(const nlohmann::json& config, const std::string& source);
LlamaParams load_hf_config(const std::string& path);  // path to config.json
nlohmann::json hf_config_to_json(const LlamaParams& params);  // incl. architectures, model_type, torch_dtype bf16

}  // namespace piquant
