#pragma once
// The shape of a Llama-family model, whatever file it came from. MLP widths are
// per layer so that structurally pruned models are first-class.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace piquant {

// Llama 3.1's frequency-dependent RoPE scaling (rope_scaling.rope_type == "llama3").
struct RopeScaling {
  std::string type = "llama3";
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  std::int64_t original_max_position_embeddings = 8192;
};

struct LlamaParams {
  std::int64_t n_vocab = 0;
  std::int64_t n_embd = 0;     // hidden_size
  std::int64_t n_layer = 0;
  std::int64_t n_head = 0;
  std::int64_t n_head_kv = 0;
  std::int64_t head_dim = 0;   // usually n_embd / n_head
  std::vector<std::int64_t> n_ff;  // intermediate size of each layer
  // Per layer: whether it has blk.N.ffn_down.bias (n_embd values added after ffn_down's
  // product), as a model pruned with bias compensation does; empty: no layer has one.
  std::vector<bool> ffn_down_bias;
  std::int64_t n_ctx_train = 2048;  // max_position_embeddings
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  std::int64_t bos_token_id = -1;
  std::vector<std::int64_t> eos_token_ids;

  bool uniform_ff() const;  // every layer has the same MLP width
  bool has_ffn_down_bias(std::int64_t layer) const;
  std::int64_t n_params() const;  // weights incl. embeddings, norms and the output matrix if untied
  // Throws Error naming `source` and the field when a value is absurd (non-positive
  // sizes, n_head not a multiple of n_head_kv, n_ff count != n_layer, ...).
  void validate(const std::string& source) const;

  // RoPE frequency factors for llama3 scaling, one per rotated pair (head_dim / 2),
  // as llama.cpp's rope_freqs tensor: each pair's frequency is divided by its factor.
  std::vector<float> rope_freq_factors() const;
};

// The llama3 rope_scaling whose rope_freq_factors() for `params` (head_dim, rope_theta)
// are `factors` to float precision (a GGUF's rope_freqs tensor, which is all a GGUF
// keeps of it), preferring low_freq_factor 1, high_freq_factor 4 and original context
// 8192 as every Llama 3.x has; nullopt when every factor is 1. Throws Error naming
// `source` when no llama3 scaling gives these factors.
std::optional<RopeScaling> llama3_scaling_from_factors(const LlamaParams& params, const std::vector<float>& factors,
                                                       const std::string& source);

}  // namespace piquant
