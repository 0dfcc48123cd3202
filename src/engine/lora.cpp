#include "engine/lora.h"

#include <string>

#include "core/error.h"

namespace piquant {

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
