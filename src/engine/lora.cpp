#include "engine/lora.h"

#include <string>

#include "core/error.h"
#include "core/split_mix64.h"

namespace piquant {

bool lora_dropout_keeps(const LoraDropout& dropout, WeightId id, std::int64_t token, std::int64_t col) {
  const std::uint64_t weight = static_cast<std::uint64_t>(id.layer + 1) << 8 | static_cast<std::uint64_t>(id.kind);
  const std::uint64_t h = mix64(mix64(dropout.seed ^ mix64(weight)) + (static_cast<std::uint64_t>(token) << 32 | static_cast<std::uint64_t>(col)));
  // Kept with probability 1 − p: the top 53 bits as a uniform double in [0, 1).
  return static_cast<double>(h >> 11) * 0x1.0p-53 >= static_cast<double>(dropout.p);
}

void apply_lora_dropout(const LoraDropout& dropout, WeightId id, std::int64_t token0, const float* in, std::int64_t n_tokens,
                        std::int64_t cols, float* out) {
  if (!(dropout.p >= 0.0f && dropout.p < 1.0f)) throw Error("LoRA dropout " + std::to_string(dropout.p) + ": must be in [0, 1)");
  const float keep_scale = 1.0f / (1.0f - dropout.p);
  for (std::int64_t t = 0; t < n_tokens; ++t) {
    for (std::int64_t c = 0; c < cols; ++c) {
      out[t * cols + c] = lora_dropout_keeps(dropout, id, token0 + t, c) ? in[t * cols + c] * keep_scale : 0.0f;
    }
  }
}

LoraMatrix& LoraAdapter::add(WeightId id, std::int64_t rows, std::int64_t cols) {
  if (rank_ <= 0 || rows <= 0 || cols <= 0) {
    throw Error("LoRA " + gguf_tensor_name(id) + ": rank " + std::to_string(rank_) + " on a " + std::to_string(rows) + " × " +
                std::to_string(cols) + " weight");
  }
  LoraMatrix& m = matrices_[key(id)];
  m.rows = rows;
  m.cols = cols;
  m.rank = rank_;
  m.a.assign(static_cast<std::size_t>(rank_ * cols), 0.0f);
  m.b.assign(static_cast<std::size_t>(rows * rank_), 0.0f);
  return m;
}

const LoraMatrix* LoraAdapter::find(WeightId id) const {
  const auto it = matrices_.find(key(id));
  return it == matrices_.end() ? nullptr : &it->second;
}

LoraMatrix* LoraAdapter::find(WeightId id) {
  const auto it = matrices_.find(key(id));
  return it == matrices_.end() ? nullptr : &it->second;
}

std::int64_t LoraAdapter::parameter_count() const {
  std::int64_t n = 0;
  for (const auto& [k, m] : matrices_) n += static_cast<std::int64_t>(m.a.size() + m.b.size());
  return n;
}

std::vector<WeightId> LoraAdapter::ids() const {
  std::vector<WeightId> out;
  out.reserve(matrices_.size());
  for (const auto& [k, m] : matrices_) out.push_back(WeightId{static_cast<WeightKind>(k.second), k.first});
  return out;
}

}  // namespace piquant
