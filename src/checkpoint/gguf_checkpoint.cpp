#include "checkpoint/gguf_checkpoint.h"

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "formats/gguf_metadata.h"
#include "quant/dequantize.h"

namespace piquant {
namespace {

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

GgufCheckpoint::GgufCheckpoint(const std::string& path, const CheckpointOptions& options) : file_(path) {
  params_ = read_model_params(file_);
  vocab_ = load_vocab_gguf(file_);
  name_ = file_.get_string("general.name", std::filesystem::path(path).stem().string());
  for (const GgufTensorInfo& info : file_.tensors()) {
    const auto id = parse_gguf_tensor_name(info.name);
    if (!id) throw FormatError(path, "tensor '" + info.name + "'", "is not a tensor of a llama model");
    if (id->layer >= params_.n_layer) {
      throw FormatError(path, "tensor '" + info.name + "'", "names a layer past block_count " + std::to_string(params_.n_layer));
    }
    if (info.type != GgmlType::F32 && info.type != GgmlType::F16 && info.type != GgmlType::BF16) {
      throw FormatError(path, "tensor '" + info.name + "' type",
                        ggml_type_name(info.type) + " input is not supported here (only F32, F16, BF16)");
    }
    tensors_.push_back(CheckpointTensor{info.name, *id, info.shape, info.type});
  }
  // The tensor list must be the one the hyperparameters imply (rope_freqs aside).
  for (const CheckpointTensor& expected : llama_tensor_layout(params_)) {
    const CheckpointTensor* t = find(expected.name);
    if (t == nullptr) throw FormatError(path, "tensor '" + expected.name + "'", "missing");
    if (t->shape != expected.shape) {
      throw FormatError(path, "tensor '" + expected.name + "' shape",
                        "is " + shape_text(t->shape) + " but the metadata implies " + shape_text(expected.shape));
    }
  }
}

void GgufCheckpoint::read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const {
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > tensor.n_rows()) {
    throw Error(path() + ": rows out of range for " + tensor.name);
  }
  const GgufTensorInfo& info = file_.tensor(tensor.name);
  const std::span<const std::uint8_t> data = file_.tensor_data(info);
  const std::uint64_t row_bytes = ggml_nbytes(info.type, static_cast<std::uint64_t>(tensor.row_length()));
  dequantize_row(info.type, data.data() + static_cast<std::uint64_t>(first_row) * row_bytes, out, n_rows * tensor.row_length());
}

void GgufCheckpoint::release(const CheckpointTensor& tensor) const {
  const GgufTensorInfo& info = file_.tensor(tensor.name);
  file_.file().release(file_.data_offset() + info.offset, info.size_bytes);
}

}  // namespace piquant
