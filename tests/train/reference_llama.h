#pragma once
// A Llama forward pass in double, written from the definition for the gradient tests:
// every weight a plain double matrix, attention by explicit loops, the loss summed per
// position. Independent of the engine's blocks and kernels (it shares nothing but the
// model's weight values, read once).
#include <cstdint>
#include <map>
#include <vector>

#include "engine/llama_model.h"
#include "engine/lora.h"

namespace piquant::testing {

struct ReferenceLlama {
  LlamaParams params;
  RopePairing pairing = RopePairing::Interleaved;
  std::vector<double> rope_factors;            // head_dim / 2, or empty
  std::map<std::pair<int, std::int64_t>, std::vector<double>> w;  // (kind, layer) → values, row-major

  // The model's weights in double, with an adapter merged: W + scale · B · A.
  static ReferenceLlama of(const LlamaModel& model, const LoraAdapter* lora = nullptr);
  std::vector<double>& at(WeightId id) { return w.at({static_cast<int>(id.kind), id.layer}); }

  // Σ_t weights[t] · (log Σ exp(z_t) − z_t[targets[t]]) over the positions of one sequence.
  double loss(const std::vector<std::int32_t>& inputs, const std::vector<std::int32_t>& targets,
              const std::vector<float>& weights) const;
};

}  // namespace piquant::testing
