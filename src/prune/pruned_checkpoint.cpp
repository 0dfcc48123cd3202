#include "prune/pruned_checkpoint.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace piquant {

PrunedCheckpoint::PrunedCheckpoint(const Checkpoint& source, LlamaParams pruned, std::vector<std::vector<std::int64_t>> kept,
                                   std::vector<std::vector<float>> biases)
    : source_(source), params_(std::move(pruned)), kept_(std::move(kept)), biases_(std::move(biases)) {
  const LlamaParams& sp = source_.params();
  const auto n_layer = static_cast<std::size_t>(sp.n_layer);
  if (params_.n_layer != sp.n_layer || kept_.size() != n_layer) throw Error("pruning: one list of kept neurons per layer expected");
  if (biases_.empty()) biases_.resize(n_layer);
  if (biases_.size() != n_layer) throw Error("pruning: one bias (or none) per layer expected");
  for (std::size_t l = 0; l < n_layer; ++l) {
    const auto& k = kept_[l];
    if (static_cast<std::int64_t>(k.size()) != params_.n_ff[l]) {
      throw Error("pruning: layer " + std::to_string(l) + " keeps " + std::to_string(k.size()) + " neurons but the shape says " +
                  std::to_string(params_.n_ff[l]));
    }
    if (k.empty() || !std::is_sorted(k.begin(), k.end()) || std::adjacent_find(k.begin(), k.end()) != k.end() ||
        k.front() < 0 || k.back() >= sp.n_ff[l]) {
      throw Error("pruning: layer " + std::to_string(l) + "'s kept neurons must be distinct, ascending and below " +
                  std::to_string(sp.n_ff[l]));
    }
    const bool has_bias = !biases_[l].empty() || sp.has_ffn_down_bias(static_cast<std::int64_t>(l));
    if (has_bias != params_.has_ffn_down_bias(static_cast<std::int64_t>(l))) {
      throw Error("pruning: layer " + std::to_string(l) + "'s ffn_down bias flag does not match its bias");
    }
    if (!biases_[l].empty() && static_cast<std::int64_t>(biases_[l].size()) != sp.n_embd) {
      throw Error("pruning: layer " + std::to_string(l) + "'s bias has " + std::to_string(biases_[l].size()) + " values, not " +
                  std::to_string(sp.n_embd));
    }
  }
  params_.validate("the pruned model");
  for (CheckpointTensor t : llama_tensor_layout(params_)) {
    const CheckpointTensor* src = source_.find(t.name);
    t.stored_type = src != nullptr ? src->stored_type : GgmlType::F32;
    tensors_.push_back(std::move(t));
  }
}

const CheckpointTensor& PrunedCheckpoint::source_tensor(const CheckpointTensor& tensor) const {
  const CheckpointTensor* src = source_.find(tensor.name);
  if (src == nullptr) throw Error(source_.path() + ": tensor " + tensor.name + " is not in the source");
  return *src;
}

void PrunedCheckpoint::read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const {
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > tensor.n_rows()) {
    throw Error("pruned " + source_.path() + ": rows [" + std::to_string(first_row) + ", +" + std::to_string(n_rows) + ") of " +
                tensor.name + " out of range");
  }
  const auto layer = static_cast<std::size_t>(tensor.id.layer);
  switch (tensor.id.kind) {
    case WeightKind::FfnGate:
    case WeightKind::FfnUp: {
      // Rows are neurons: read each run of consecutive kept neurons at once.
      const CheckpointTensor& src = source_tensor(tensor);
      const auto& kept = kept_[layer];
      const std::int64_t len = tensor.row_length();
      std::int64_t r = 0;
      while (r < n_rows) {
        const std::int64_t start = kept[static_cast<std::size_t>(first_row + r)];
        std::int64_t run = 1;
        while (r + run < n_rows && kept[static_cast<std::size_t>(first_row + r + run)] == start + run) ++run;
        source_.read_rows(src, start, run, out + r * len);
        r += run;
      }
      return;
    }
    case WeightKind::FfnDown: {
      // Rows are outputs, columns neurons: read whole rows, keep the kept columns.
      const CheckpointTensor& src = source_tensor(tensor);
      const auto& kept = kept_[layer];
      const std::int64_t src_len = src.row_length(), len = tensor.row_length();
      constexpr std::int64_t kRowsPerRead = 16;
      std::vector<float> rows(static_cast<std::size_t>(std::min(n_rows, kRowsPerRead) * src_len));
      for (std::int64_t r0 = 0; r0 < n_rows; r0 += kRowsPerRead) {
        const std::int64_t n = std::min(kRowsPerRead, n_rows - r0);
        source_.read_rows(src, first_row + r0, n, rows.data());
        for (std::int64_t r = 0; r < n; ++r) {
          const float* in = rows.data() + r * src_len;
          float* o = out + (r0 + r) * len;
          for (std::int64_t c = 0; c < len; ++c) o[c] = in[kept[static_cast<std::size_t>(c)]];
        }
      }
      return;
    }
    case WeightKind::FfnDownBias: {
      const std::int64_t n = tensor.row_length();
      std::vector<float> total(static_cast<std::size_t>(n), 0.0f);
      if (const CheckpointTensor* src = source_.find(tensor.name)) source_.read_rows(*src, 0, 1, total.data());
      const auto& added = biases_[layer];
      for (std::size_t i = 0; i < added.size(); ++i) total[i] += added[i];
      std::memcpy(out, total.data(), total.size() * sizeof(float));
      return;
    }
    default:
      source_.read_rows(source_tensor(tensor), first_row, n_rows, out);
  }
}

void PrunedCheckpoint::release(const CheckpointTensor& tensor) const {
  if (const CheckpointTensor* src = source_.find(tensor.name)) source_.release(*src);
}

}  // namespace piquant
