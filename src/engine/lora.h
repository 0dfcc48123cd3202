#pragma once
// A LoRA adapter: low-rank updates of a model's linear weights. For a weight W
// (rows × cols, out = W · in) the adapted product is
//   out = W · in + scale · B · (A · in),   scale = alpha / rank,
// with A rank × cols and B rows × rank, both row-major F32 (PEFT's lora_A / lora_B
// shapes). Merged, W' = W + scale · B · A.
//
// Rows of B follow the layout of the model the adapter belongs to: for Q and K that is
// GGUF's interleaved rotation pairs (a model loaded from GGUF) or Hugging Face's
// half-split order (a model loaded from safetensors), recorded in `layout`. The adapter
// files convert on the way in and out (GGUF adapters are interleaved, PEFT half-split).
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "formats/tensor_names.h"
#include "kernels/matrix_view.h"
#include "kernels/rope.h"

namespace piquant {

struct LoraMatrix {
  std::int64_t rows = 0, cols = 0, rank = 0;
  std::vector<float> a;  // rank × cols
  std::vector<float> b;  // rows × rank
  MatrixView a_view() const { return {GgmlType::F32, reinterpret_cast<const std::uint8_t*>(a.data()), rank, cols, 4u * static_cast<std::size_t>(cols)}; }
  MatrixView b_view() const { return {GgmlType::F32, reinterpret_cast<const std::uint8_t*>(b.data()), rows, rank, 4u * static_cast<std::size_t>(rank)}; }
};

// Dropout on an adapter's input in training (PEFT's lora_dropout): out = W · in + scale ·
// B · (A · drop(in)), drop(x) = x / (1 − p) where kept, 0 elsewhere. Whether element
// (token, column) of weight `id`'s input is kept is a hash of (seed, id, token, column),
// not a draw from a generator, so the forward, its recomputation during the backward and
// the backward itself see the same mask however the tokens are split into calls; the
// caller changes the seed for every sequence of every step.
struct LoraDropout {
  float p = 0.0f;  // 0: off
  std::uint64_t seed = 0;
};
bool lora_dropout_keeps(const LoraDropout& dropout, WeightId id, std::int64_t token, std::int64_t col);
// out (n_tokens × cols) = drop(in) for tokens token0 .. token0 + n_tokens − 1.
void apply_lora_dropout(const LoraDropout& dropout, WeightId id, std::int64_t token0, const float* in, std::int64_t n_tokens,
                        std::int64_t cols, float* out);

class LoraAdapter {
 public:
  LoraAdapter(std::int64_t rank, float alpha, RopePairing layout) : rank_(rank), alpha_(alpha), layout_(layout) {}

  std::int64_t rank() const { return rank_; }
  float alpha() const { return alpha_; }
  float scale() const { return alpha_ / static_cast<float>(rank_); }
  RopePairing layout() const { return layout_; }

  // A zero-initialised pair for weight `id` of shape rows × cols (replaces an existing one).
  LoraMatrix& add(WeightId id, std::int64_t rows, std::int64_t cols);
  const LoraMatrix* find(WeightId id) const;
  LoraMatrix* find(WeightId id);
  bool empty() const { return matrices_.empty(); }
  std::size_t size() const { return matrices_.size(); }
  std::int64_t parameter_count() const;

  // Every adapted weight, ordered by layer, then by WeightKind (a stable order for files,
  // optimizer state and checkpoints).
  std::vector<WeightId> ids() const;

 private:
  using Key = std::pair<std::int64_t, int>;  // (layer, kind)
  static Key key(WeightId id) { return {id.layer, static_cast<int>(id.kind)}; }
  std::int64_t rank_;
  float alpha_;
  RopePairing layout_;
  std::map<Key, LoraMatrix> matrices_;
};

}  // namespace piquant
