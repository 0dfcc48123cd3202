#pragma once
// A model whose weights live in memory as F32 and may change: training from scratch,
// full fine-tuning, and tests that build a model without a file. It runs through the
// same forward blocks as a mapped model (it is a LlamaModel).
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/llama_model.h"

namespace piquant {

class OwnedLlamaModel : public LlamaModel {
 public:
  // Matrices ~ N(0, stddev²) drawn in weight_ids() order from one seeded generator
  // (the same values on every machine); norms 1; ffn_down biases (where params flag
  // them) 0 and drawn from nothing, so the matrices equal those of the same shape
  // without biases. Untied unless params say tied.
  static std::unique_ptr<OwnedLlamaModel> random(const LlamaParams& params, const Vocab& vocab, RopePairing pairing,
                                                 std::uint64_t seed, float stddev = 0.02f);
  // An F32 copy of any model's weights (dequantized) and ffn_down biases, keeping its
  // layout and tokenizer.
  static std::unique_ptr<OwnedLlamaModel> copy_of(const LlamaModel& model);

  // Every tensor of the model in a fixed order: token embedding, per layer attn_norm,
  // q, k, v, o, ffn_norm, gate, up, down (and its bias where the layer has one), then
  // output_norm and (untied) output.
  std::vector<WeightId> weight_ids() const;
  // The F32 values of a weight: matrices rows × cols row-major, norms and biases n_embd. Writing
  // them changes the model (views into them stay valid: storage never moves).
  std::span<float> weight(WeightId id);
  std::span<const float> weight(WeightId id) const;
  bool tied_output() const { return params_.tie_word_embeddings; }

 private:
  OwnedLlamaModel(const LlamaParams& params, const Vocab& vocab, RopePairing pairing, std::vector<float> rope_factors);
  std::vector<float>& storage(WeightId id);
  std::vector<std::vector<float>> tensors_;  // in weight_ids() order
  std::vector<WeightId> ids_;
};

// Shape (rows, cols) of weight `id` in a model of this shape; norms and biases are (1, n_embd).
std::pair<std::int64_t, std::int64_t> weight_shape(const LlamaParams& params, WeightId id);

}  // namespace piquant
