#include "checkpoint/gguf_export.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "formats/gguf_metadata.h"
#include "checkpoint/row_encoder.h"

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

namespace {

GgmlType export_type(const CheckpointTensor& t, const GgufExportOptions& options) {
  return options.type_for ? options.type_for(t) : tensor_type(t, options.type);
}

// The writer with every key and tensor added, nothing written yet.
GgufWriter prepared_writer(const Checkpoint& checkpoint, const std::string& out_path, const GgufExportOptions& options) {
  const LlamaParams& params = checkpoint.params();
  const bool planned = static_cast<bool>(options.type_for);
  for (const CheckpointTensor& t : checkpoint.tensors()) {
    if (!row_encoder_supports(export_type(t, options))) throw Error(t.name + ": cannot encode " + ggml_type_name(export_type(t, options)));
  }
  GgufWriter writer(out_path);
  write_model_metadata(params, checkpoint.model_name(), planned ? options.file_type : file_type_for(options.type), writer);
  if (planned) writer.set("general.quantization_version", std::uint32_t{2});
  write_vocab_gguf(padded_vocab(checkpoint.vocab(), params.n_vocab, checkpoint.path()), writer);
  for (const CheckpointTensor& t : checkpoint.tensors()) writer.add_tensor(t.name, export_type(t, options), t.shape);
  return writer;
}

}  // namespace

GgufExportLayout gguf_export_layout(const Checkpoint& checkpoint, const GgufExportOptions& options) {
  const GgufWriter writer = prepared_writer(checkpoint, "(layout)", options);
  GgufExportLayout layout;
  layout.alignment = writer.alignment();
  layout.data_offset = writer.data_offset();
  layout.file_bytes = writer.file_size();
  for (const CheckpointTensor& t : checkpoint.tensors()) {
    layout.tensor_bytes += ggml_nbytes(export_type(t, options), static_cast<std::uint64_t>(t.n_elements()));
  }
  return layout;
}

GgufExportSummary export_gguf(const Checkpoint& checkpoint, const std::string& out_path, const GgufExportOptions& options) {
  const LlamaParams& params = checkpoint.params();
  const auto type_of = [&](const CheckpointTensor& t) { return export_type(t, options); };
  GgufWriter writer = prepared_writer(checkpoint, out_path, options);
  writer.write_header();
  ThreadPool pool(std::max(1u, options.n_threads));

  std::vector<float> rows;
  std::vector<std::uint8_t> encoded;
  std::uint64_t written = 0;
  const auto& tensors = checkpoint.tensors();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const CheckpointTensor& t = tensors[i];
    const GgmlType type = type_of(t);
    const std::int64_t row_length = t.row_length();
    const std::uint64_t row_bytes = ggml_nbytes(type, static_cast<std::uint64_t>(row_length));
    std::vector<float> importance;
    if (options.importance) importance = options.importance(t);
    if (!importance.empty() && static_cast<std::int64_t>(importance.size()) != row_length) {
      throw Error(t.name + ": importance has " + std::to_string(importance.size()) + " values for rows of " +
                  std::to_string(row_length));
    }
    const std::int64_t rows_per_chunk =
        std::max<std::int64_t>(1, static_cast<std::int64_t>(options.chunk_bytes / (sizeof(float) * row_length)));
    writer.begin_tensor(t.name);
    for (std::int64_t first = 0; first < t.n_rows(); first += rows_per_chunk) {
      const std::int64_t n = std::min(rows_per_chunk, t.n_rows() - first);
      rows.resize(static_cast<std::size_t>(n * row_length));
      encoded.resize(ggml_nbytes(type, static_cast<std::uint64_t>(n * row_length)));
      checkpoint.read_rows(t, first, n, rows.data());
      pool.parallel_for(n, 1, [&](std::int64_t begin, std::int64_t end) {
        encode_rows(type, rows.data() + begin * row_length, end - begin, row_length,
                    encoded.data() + static_cast<std::uint64_t>(begin) * row_bytes, importance.empty() ? nullptr : importance.data());
      });
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
  summary.tensor_bytes = written;
  return summary;
}

}  // namespace piquant
