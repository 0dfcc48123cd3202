#pragma once
// A Llama forward pass in double, written from the definition for the gradient tests:
// every weight a plain double matrix, attention by explicit loops, the loss summed per
// position. Independent of the engine's blocks and kernels (it shares nothing but the
// model's weight values, read once).
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "engine/llama_model.h"
#include "engine/lora.h"

namespace piquant::testing {

struct ReferenceLlama {
  LlamaParams params;
  RopePairing pairing = RopePairing::Interleaved;
  std::vector<double> rope_factors;            // head_dim / 2, or empty
  std::map<std::pair<int, std::int64_t>, std::vector<double>> w;  // (kind, layer) → values, row-major (ffn_down biases too)

  // With dropout on (dropout.p > 0) the adapter stays apart, applied per position to
  // its dropped input: W · x + scale · B · (A · drop(x)) (lora.h's mask).
  std::optional<LoraAdapter> lora;
  LoraDropout dropout;

  // The model's weights in double, with an adapter merged: W + scale · B · A (or kept
  // apart, with dropout).
  static ReferenceLlama of(const LlamaModel& model, const LoraAdapter* lora = nullptr, const LoraDropout& dropout = {});
  std::vector<double>& at(WeightId id) { return w.at({static_cast<int>(id.kind), id.layer}); }

  // The next-token logits z_t (n_vocab each) after every prefix inputs[0..t].
  std::vector<std::vector<double>> logits(const std::vector<std::int32_t>& inputs) const;
  // Σ_t weights[t] · (log Σ exp(z_t) − z_t[targets[t]]) over the positions of one sequence.
  double loss(const std::vector<std::int32_t>& inputs, const std::vector<std::int32_t>& targets,
              const std::vector<float>& weights) const;

 private:
  // The residual stream after the last layer, per position (n_embd each).
  std::vector<std::vector<double>> hidden(const std::vector<std::int32_t>& inputs) const;
  // y = W x for weight {kind, layer} at position t (rows × cols), the adapter added when kept apart.
  std::vector<double> linear(WeightKind kind, std::int64_t layer, std::int64_t rows, std::int64_t cols,
                             const std::vector<double>& x, std::int64_t t) const;
};

}  // namespace piquant::testing
