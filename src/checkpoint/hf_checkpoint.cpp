#include "checkpoint/hf_checkpoint.h"

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "formats/hf_config.h"
#include "quant/dequantize.h"

namespace piquant {
namespace {

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

GgmlType weight_type_of(const SafeTensor& t) {
  switch (t.dtype) {
    case SafeDtype::F32: return GgmlType::F32;
    case SafeDtype::F16: return GgmlType::F16;
    case SafeDtype::BF16: return GgmlType::BF16;
    default:
      throw FormatError(t.file, "tensor '" + t.name + "' dtype",
                        std::string(safe_dtype_name(t.dtype)) + " is not a weight type piquant reads (F32, F16, BF16)");
  }
}

void add_hf_ffn_down_bias(LlamaParams& p, const SafetensorsFiles& weights) {
  p.ffn_down_bias.clear();
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    if (weights.find(hf_tensor_name({WeightKind::FfnDownBias, l})) == nullptr) continue;
    p.ffn_down_bias.resize(static_cast<std::size_t>(p.n_layer), false);
    p.ffn_down_bias[static_cast<std::size_t>(l)] = true;
  }
}

HfCheckpoint::HfCheckpoint(const std::string& dir, const CheckpointOptions& options) : dir_(dir) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  name_ = root.filename().empty() ? root.parent_path().filename().string() : root.filename().string();
  const fs::path config = root / "config.json";
  if (!fs::exists(config)) throw Error(dir + ": not a Hugging Face checkpoint folder (no config.json)");
  params_ = load_hf_config(config.string());
  const std::string tokenizer = options.tokenizer_path.empty() ? (root / "tokenizer.json").string() : options.tokenizer_path;
  if (!fs::exists(tokenizer)) throw Error(dir + ": no tokenizer.json (give one with --tokenizer)");
  vocab_ = load_vocab_hf(tokenizer);
  if (static_cast<std::int64_t>(vocab_.size()) > params_.n_vocab) {
    throw Error(tokenizer + ": the tokenizer has " + std::to_string(vocab_.size()) + " tokens but config.json's vocab_size is " +
                std::to_string(params_.n_vocab));
  }
  weights_ = std::make_unique<SafetensorsFiles>(dir);
  add_hf_ffn_down_bias(params_, *weights_);
  rope_factors_ = params_.rope_freq_factors();

  for (CheckpointTensor t : llama_tensor_layout(params_)) {
    if (t.id.kind == WeightKind::RopeFreqs) {
      t.stored_type = GgmlType::F32;
      tensors_.push_back(std::move(t));
      sources_.push_back(nullptr);
      continue;
    }
    const std::string hf_name = hf_tensor_name(t.id);
    const SafeTensor* src = weights_->find(hf_name);
    if (src == nullptr) throw FormatError(dir, "tensor '" + hf_name + "'", "missing from the checkpoint");
    const std::vector<std::int64_t> expected(t.shape.rbegin(), t.shape.rend());
    if (src->shape != expected) {
      throw FormatError(src->file, "tensor '" + hf_name + "' shape",
                        "is " + shape_string(src->shape) + " but config.json implies " + shape_string(expected));
    }
    t.stored_type = weight_type_of(*src);
    tensors_.push_back(std::move(t));
    sources_.push_back(src);
  }
}

const SafeTensor& HfCheckpoint::source_of(const CheckpointTensor& tensor) const {
  const std::size_t index = static_cast<std::size_t>(&tensor - tensors_.data());
  if (index >= tensors_.size() || sources_[index] == nullptr) throw Error(dir_ + ": tensor " + tensor.name + " has no stored data");
  return *sources_[index];
}

void HfCheckpoint::read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const {
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > tensor.n_rows()) {
    throw Error(dir_ + ": rows [" + std::to_string(first_row) + ", +" + std::to_string(n_rows) + ") of " + tensor.name +
                " out of range");
  }
  if (tensor.id.kind == WeightKind::RopeFreqs) {
    std::memcpy(out, rope_factors_.data(), rope_factors_.size() * sizeof(float));
    return;
  }
  const SafeTensor& src = source_of(tensor);
  const std::int64_t row_length = tensor.row_length();
  const bool permute = tensor.id.kind == WeightKind::AttnQ || tensor.id.kind == WeightKind::AttnK;
  const std::size_t row_bytes = static_cast<std::size_t>(row_length) * safe_dtype_bytes(src.dtype);
  for (std::int64_t r = 0; r < n_rows; ++r) {
    const std::int64_t gguf_row = first_row + r;
    const std::int64_t src_row = permute ? hf_row_for_gguf_row(gguf_row, params_.head_dim) : gguf_row;
    dequantize_row(tensor.stored_type, src.data.data() + static_cast<std::size_t>(src_row) * row_bytes, out + r * row_length,
                   row_length);
  }
}

void HfCheckpoint::release(const CheckpointTensor& tensor) const {
  if (tensor.id.kind == WeightKind::RopeFreqs) return;
  const SafeTensor& src = source_of(tensor);
  weights_->file_of(src).release(src.file_offset, src.data.size());
}

}  // namespace piquant
