#include "quantize/awq_checkpoint.h"

#include "core/error.h"

namespace piquant {
namespace {

std::string tensor(WeightKind kind, std::int64_t layer) { return gguf_tensor_name(WeightId{kind, layer}); }

void multiply_in(std::vector<double>& factors, const std::vector<float>& s, bool divide) {
  if (factors.empty()) factors.assign(s.size(), 1.0);
  for (std::size_t j = 0; j < s.size(); ++j) {
    factors[j] = divide ? factors[j] / static_cast<double>(s[j]) : factors[j] * static_cast<double>(s[j]);
  }
}

}  // namespace

AwqScaledCheckpoint::AwqScaledCheckpoint(const Checkpoint& base, const std::vector<AwqGroup>& groups) : ForwardingCheckpoint(base) {
  for (const AwqGroup& g : groups) {
    if (g.scales.empty()) continue;
    const std::int64_t l = g.layer;
    switch (g.kind) {
      case AwqGroupKind::AttentionInput:
        scale_columns(tensor(WeightKind::AttnNorm, l), g.scales, true);
        for (WeightKind k : {WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV}) {
          scale_columns(tensor(k, l), g.scales, false);
        }
        break;
      case AwqGroupKind::MlpInput:
        scale_columns(tensor(WeightKind::FfnNorm, l), g.scales, true);
        for (WeightKind k : {WeightKind::FfnGate, WeightKind::FfnUp}) scale_columns(tensor(k, l), g.scales, false);
        break;
      case AwqGroupKind::MlpDown:
        scale_rows(tensor(WeightKind::FfnUp, l), g.scales, true);
        scale_columns(tensor(WeightKind::FfnDown, l), g.scales, false);
        break;
      case AwqGroupKind::AttentionOutput:
        scale_rows(tensor(WeightKind::AttnV, l), g.scales, true);
        scale_columns(tensor(WeightKind::AttnOutput, l), g.scales, false);
        break;
    }
  }
}

void AwqScaledCheckpoint::scale_columns(const std::string& name, const std::vector<float>& s, bool divide) {
  const CheckpointTensor* t = base_.find(name);
  if (t == nullptr) throw Error(base_.path() + ": AWQ scales " + name + ", which the model does not have");
  if (t->row_length() != static_cast<std::int64_t>(s.size())) {
    throw Error(base_.path() + ": " + name + " has rows of " + std::to_string(t->row_length()) + ", AWQ gives " +
                std::to_string(s.size()) + " column scales");
  }
  multiply_in(factors_[name].columns, s, divide);
}

void AwqScaledCheckpoint::scale_rows(const std::string& name, const std::vector<float>& s, bool divide) {
  const CheckpointTensor* t = base_.find(name);
  if (t == nullptr) throw Error(base_.path() + ": AWQ scales " + name + ", which the model does not have");
  if (t->shape.size() != 2 || t->n_rows() != static_cast<std::int64_t>(s.size())) {
    throw Error(base_.path() + ": " + name + " has " + std::to_string(t->n_rows()) + " rows, AWQ gives " +
                std::to_string(s.size()) + " row scales");
  }
  multiply_in(factors_[name].rows, s, divide);
}

void AwqScaledCheckpoint::read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows,
                                    float* out) const {
  base_.read_rows(tensor, first_row, n_rows, out);
  const auto it = factors_.find(tensor.name);
  if (it == factors_.end()) return;
  const Factors& f = it->second;
  const std::int64_t cols = tensor.row_length();
  for (std::int64_t r = 0; r < n_rows; ++r) {
    const double row_factor = f.rows.empty() ? 1.0 : f.rows[static_cast<std::size_t>(first_row + r)];
    float* row = out + r * cols;
    for (std::int64_t j = 0; j < cols; ++j) {
      const double column_factor = f.columns.empty() ? 1.0 : f.columns[static_cast<std::size_t>(j)];
      row[j] = static_cast<float>(static_cast<double>(row[j]) * column_factor * row_factor);
    }
  }
}

GgmlType awq_output_type(const AwqScaledCheckpoint& checkpoint, const CheckpointTensor& tensor) {
  if (checkpoint.touched(tensor.name) || tensor.shape.size() != 2) return GgmlType::F32;
  return tensor.stored_type;
}

}  // namespace piquant
