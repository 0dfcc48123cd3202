#include "checkpoint/llama2c_checkpoint.h"

#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace piquant {
namespace {

// The llama2.c array holding each kind of weight.
const char* array_name(WeightKind kind, bool shared_classifier) {
  switch (kind) {
    case WeightKind::TokenEmbedding: return "token_embedding";
    case WeightKind::AttnNorm: return "rms_att";
    case WeightKind::AttnQ: return "wq";
    case WeightKind::AttnK: return "wk";
    case WeightKind::AttnV: return "wv";
    case WeightKind::AttnOutput: return "wo";
    case WeightKind::FfnNorm: return "rms_ffn";
    case WeightKind::FfnGate: return "w1";
    case WeightKind::FfnDown: return "w2";
    case WeightKind::FfnUp: return "w3";
    case WeightKind::OutputNorm: return "rms_final";
    case WeightKind::Output: return shared_classifier ? "token_embedding" : "wcls";
    case WeightKind::RopeFreqs:
    case WeightKind::FfnDownBias: break;
  }
  throw Error("llama2.c checkpoints have no " + gguf_tensor_name({kind, 0}));
}

std::string default_tokenizer(const std::string& path) {
  return (std::filesystem::path(path).parent_path() / "tokenizer.bin").string();
}

}  // namespace

Llama2cCheckpoint::Llama2cCheckpoint(const std::string& path, const CheckpointOptions& options)
    : path_(path), name_(std::filesystem::path(path).stem().string()), file_(path) {
  const std::string tokenizer = options.tokenizer_path.empty() ? default_tokenizer(path) : options.tokenizer_path;
  if (!std::filesystem::exists(tokenizer)) {
    throw Error(path + ": a llama2.c checkpoint needs its tokenizer.bin: none at " + tokenizer + " (give one with --tokenizer)");
  }
  vocab_ = load_vocab_llama2c(tokenizer, file_.params().n_vocab);
  tensors_ = llama_tensor_layout(file_.params());
  for (auto& t : tensors_) t.stored_type = GgmlType::F32;
}

std::span<const float> Llama2cCheckpoint::source_of(const CheckpointTensor& tensor) const {
  const auto& array = file_.array(array_name(tensor.id.kind, file_.shared_classifier()));
  return is_per_layer(tensor.id.kind) ? file_.layer_data(array, tensor.id.layer) : file_.data(array);
}

void Llama2cCheckpoint::read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows,
                                       float* out) const {
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > tensor.n_rows()) {
    throw Error(path_ + ": rows out of range for " + tensor.name);
  }
  const std::span<const float> data = source_of(tensor);
  const std::size_t row_length = static_cast<std::size_t>(tensor.row_length());
  if (data.size() != static_cast<std::size_t>(tensor.n_elements())) {
    throw FormatError(path_, tensor.name, "holds " + std::to_string(data.size()) + " values, expected " +
                                              std::to_string(tensor.n_elements()));
  }
  std::memcpy(out, data.data() + static_cast<std::size_t>(first_row) * row_length,
              static_cast<std::size_t>(n_rows) * row_length * sizeof(float));
}

void Llama2cCheckpoint::release(const CheckpointTensor& tensor) const {
  const std::span<const float> data = source_of(tensor);
  const auto offset = static_cast<std::uint64_t>(reinterpret_cast<const std::uint8_t*>(data.data()) - file_.file().data());
  file_.file().release(offset, data.size_bytes());
}

}  // namespace piquant
