#pragma once
// Tensor names: GGUF's (llama.cpp's) and Hugging Face's for the same weight.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace piquant {

// What a weight is, independent of naming scheme.
enum class WeightKind {
  TokenEmbedding,
  AttnNorm,
  AttnQ,
  AttnK,
  AttnV,
  AttnOutput,
  FfnNorm,
  FfnGate,
  FfnUp,
  FfnDown,
  FfnDownBias,  // n_embd, added after ffn_down's product (a pruned model's bias compensation)
  OutputNorm,
  Output,
  RopeFreqs,
};

struct WeightId {
  WeightKind kind;
  std::int64_t layer = -1;  // -1 for weights outside the blocks
  bool operator==(const WeightId&) const = default;
};

std::string gguf_tensor_name(WeightId id);  // "blk.3.ffn_up.weight"
std::string hf_tensor_name(WeightId id);    // "model.layers.3.mlp.up_proj.weight"; throws for RopeFreqs
std::optional<WeightId> parse_gguf_tensor_name(std::string_view name);
std::optional<WeightId> parse_hf_tensor_name(std::string_view name);
bool is_per_layer(WeightKind kind);

}  // namespace piquant
