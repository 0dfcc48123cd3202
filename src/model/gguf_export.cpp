#include "model/gguf_export.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/gguf_metadata.h"
#include "quant/row_encoder.h"

namespace piquant {
namespace {

LlamaFileType file_type_for(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return LlamaFileType::AllF32;
    case GgmlType::F16: return LlamaFileType::MostlyF16;
    case GgmlType::BF16: return LlamaFileType::MostlyBF16;
    default: throw Error("convert writes f32, f16 or bf16; use `piquant quantize` for " + ggml_type_name(type));
  }
}

GgmlType tensor_type(const CheckpointTensor& t, GgmlType wanted) {
  return t.shape.size() == 1 ? GgmlType::F32 : wanted;
}

}  // namespace

Vocab padded_vocab(const Vocab& vocab, std::int64_t n_vocab, const std::string& source) {
  if (static_cast<std::int64_t>(vocab.size()) > n_vocab) {
    throw Error(source + ": the tokenizer has " + std::to_string(vocab.size()) + " tokens, more than the model's " +
                std::to_string(n_vocab));
  }
  Vocab out = vocab;
  for (std::int64_t id = static_cast<std::int64_t>(vocab.size()); id < n_vocab; ++id) {
    out.tokens.push_back("[PAD" + std::to_string(id) + "]");
    out.types.push_back(TokenType::Unused);
    if (!out.scores.empty()) out.scores.push_back(0.0f);
  }
  return out;
}

GgufExportSummary export_gguf(const Checkpoint& checkpoint, const std::string& out_path, const GgufExportOptions& options) {
  const LlamaParams& params = checkpoint.params();
  if (!row_encoder_supports(options.type)) file_type_for(options.type);  // throws with advice

  GgufWriter writer(out_path);
  write_model_metadata(params, checkpoint.model_name(), file_type_for(options.type), writer);
  write_vocab_gguf(padded_vocab(checkpoint.vocab(), params.n_vocab, checkpoint.path()), writer);
  for (const CheckpointTensor& t : checkpoint.tensors()) writer.add_tensor(t.name, tensor_type(t, options.type), t.shape);
  writer.write_header();

  std::vector<float> rows;
  std::vector<std::uint8_t> encoded;
  std::uint64_t written = 0;
  const auto& tensors = checkpoint.tensors();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const CheckpointTensor& t = tensors[i];
    const GgmlType type = tensor_type(t, options.type);
    const std::int64_t row_length = t.row_length();
    const std::int64_t rows_per_chunk =
        std::max<std::int64_t>(1, static_cast<std::int64_t>(options.chunk_bytes / (sizeof(float) * row_length)));
    writer.begin_tensor(t.name);
    for (std::int64_t first = 0; first < t.n_rows(); first += rows_per_chunk) {
      const std::int64_t n = std::min(rows_per_chunk, t.n_rows() - first);
      rows.resize(static_cast<std::size_t>(n * row_length));
      encoded.resize(ggml_nbytes(type, static_cast<std::uint64_t>(n * row_length)));
      checkpoint.read_rows(t, first, n, rows.data());
      encode_rows(type, rows.data(), n, row_length, encoded.data());
      writer.write_tensor_bytes(encoded);
      written += encoded.size();
      checkpoint.release(t);  // per chunk: a 1 GB embedding must not stay resident either
    }
    writer.end_tensor();
    if (options.progress) options.progress(i + 1, tensors.size(), written);
  }
  writer.finish();

  GgufExportSummary summary;
  summary.tensor_count = tensors.size();
  summary.architecture = architecture_for(params);
  summary.file_bytes = written;
  return summary;
}

}  // namespace piquant
