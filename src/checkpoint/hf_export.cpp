#include "checkpoint/hf_export.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "formats/hf_config.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

namespace fs = std::filesystem;

const char* torch_dtype_name(SafeDtype dtype) {
  switch (dtype) {
    case SafeDtype::F32: return "float32";
    case SafeDtype::F16: return "float16";
    case SafeDtype::BF16: return "bfloat16";
    default: break;
  }
  throw Error(std::string("Hugging Face output: dtype ") + safe_dtype_name(dtype) + " is not a weight type (F32, F16 or BF16)");
}

// n floats as `dtype`, little-endian, into out (n · safe_dtype_bytes(dtype) bytes).
void encode(SafeDtype dtype, const float* in, std::size_t n, std::uint8_t* out) {
  if (dtype == SafeDtype::F32) {
    std::memcpy(out, in, n * sizeof(float));
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint16_t h = dtype == SafeDtype::F16 ? f32_to_f16(in[i]) : f32_to_bf16(in[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

void copy_file_atomic(const fs::path& from, const fs::path& to) {
  const MappedFile in(from.string());
  AtomicFileWriter out(to.string());
  out.write(in.data(), in.size());
  out.commit();
}

// The tokenizer.json to copy, or empty to write the vocabulary.
fs::path tokenizer_source(const Checkpoint& checkpoint, const HfExportOptions& options, const std::string& dir) {
  if (!options.tokenizer_json.empty()) {
    if (!fs::is_regular_file(options.tokenizer_json)) throw Error(options.tokenizer_json + ": no such tokenizer.json");
    return options.tokenizer_json;
  }
  std::error_code ec;
  const fs::path own = fs::path(checkpoint.path()) / "tokenizer.json";
  if (fs::is_directory(checkpoint.path(), ec) && fs::is_regular_file(own, ec)) return own;
  if (checkpoint.vocab().kind != TokenizerKind::Bpe) {
    throw Error(dir + ": a SentencePiece vocabulary cannot be written as tokenizer.json here; export from a folder "
                      "that has the model's tokenizer.json, or give one to copy");
  }
  return {};
}

}  // namespace

HfExportSummary export_hf(const Checkpoint& checkpoint, const std::string& dir, const HfExportOptions& options) {
  const char* torch_dtype = torch_dtype_name(options.dtype);
  const std::vector<CheckpointTensor>& tensors = checkpoint.tensors();

  // What config.json states, checked before anything is written.
  LlamaParams params = checkpoint.params();
  params.tie_word_embeddings = checkpoint.find(gguf_tensor_name({WeightKind::Output, -1})) == nullptr;
  const CheckpointTensor* rope = checkpoint.find(gguf_tensor_name({WeightKind::RopeFreqs, -1}));
  if (rope != nullptr && !params.rope_scaling) {
    std::vector<float> factors(static_cast<std::size_t>(rope->n_elements()));
    checkpoint.read_rows(*rope, 0, rope->n_rows(), factors.data());
    params.rope_scaling = llama3_scaling_from_factors(params, factors, checkpoint.path());
  }
  const bool decilm = options.decilm || !params.uniform_ff();
  nlohmann::json config = decilm ? decilm_config_to_json(params, dir) : hf_config_to_json(params);
  config["torch_dtype"] = torch_dtype;
  const fs::path tokenizer = tokenizer_source(checkpoint, options, dir);

  fs::create_directories(dir);
  HfExportSummary summary;
  summary.layout = decilm ? "decilm" : "llama";
  if (tokenizer.empty()) {
    save_vocab_hf(checkpoint.vocab(), dir);
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) summary.files.push_back((fs::path(dir) / name).string());
  } else {
    for (const std::string name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
      const fs::path from = name == "tokenizer.json" ? tokenizer : tokenizer.parent_path() / name;
      const fs::path to = fs::path(dir) / name;
      std::error_code ec;
      if (!fs::is_regular_file(from, ec)) continue;
      if (!fs::equivalent(from, to, ec)) copy_file_atomic(from, to);  // (equivalent: written over its own folder)
      summary.files.push_back(to.string());
    }
  }

  std::vector<const CheckpointTensor*> written;
  for (const CheckpointTensor& t : tensors) {
    if (t.id.kind != WeightKind::RopeFreqs) written.push_back(&t);
  }
  SafetensorsWriter writer(dir, options.max_shard_bytes);
  writer.set_metadata("format", "pt");
  for (const CheckpointTensor* t : written) writer.add(hf_tensor_name(t->id), options.dtype, {t->shape.rbegin(), t->shape.rend()});

  const std::size_t element_bytes = safe_dtype_bytes(options.dtype);
  const std::int64_t head_dim = params.head_dim;
  std::vector<float> rows, ordered;
  std::vector<std::uint8_t> bytes;
  for (std::size_t i = 0; i < written.size(); ++i) {
    const CheckpointTensor& t = *written[i];
    const std::int64_t row_length = t.row_length();
    const bool permute = t.id.kind == WeightKind::AttnQ || t.id.kind == WeightKind::AttnK;
    std::int64_t rows_per_chunk =
        std::max<std::int64_t>(1, static_cast<std::int64_t>(options.chunk_bytes / (sizeof(float) * row_length)));
    // Q/K rows move within their head only: chunks of whole heads.
    if (permute) rows_per_chunk = std::max<std::int64_t>(1, rows_per_chunk / head_dim) * head_dim;
    for (std::int64_t first = 0; first < t.n_rows(); first += rows_per_chunk) {
      const std::int64_t n = std::min(rows_per_chunk, t.n_rows() - first);
      rows.resize(static_cast<std::size_t>(n * row_length));
      checkpoint.read_rows(t, first, n, rows.data());
      const float* source = rows.data();
      if (permute) {
        ordered.resize(rows.size());
        for (std::int64_t r = 0; r < n; ++r) {
          const std::int64_t hf_row = hf_row_for_gguf_row(first + r, head_dim) - first;
          std::copy_n(rows.data() + r * row_length, row_length, ordered.data() + hf_row * row_length);
        }
        source = ordered.data();
      }
      bytes.resize(rows.size() * element_bytes);
      encode(options.dtype, source, rows.size(), bytes.data());
      writer.write(bytes);
      summary.tensor_bytes += bytes.size();
      checkpoint.release(t);
    }
    if (options.progress) options.progress(i + 1, written.size(), summary.tensor_bytes);
  }
  writer.finish();
  for (const std::string& file : writer.files()) summary.files.push_back(file);
  summary.tensor_count = written.size();

  // Last: a folder without config.json is not taken for a checkpoint if this is interrupted.
  const std::string config_path = (fs::path(dir) / "config.json").string();
  AtomicFileWriter out(config_path);
  const std::string text = config.dump(2) + "\n";
  out.write(text.data(), text.size());
  out.commit();
  summary.files.push_back(config_path);
  return summary;
}

}  // namespace piquant
