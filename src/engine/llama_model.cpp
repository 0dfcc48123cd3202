#include "engine/llama_model.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/logger.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "kernels/matmul.h"
#include "formats/gguf_metadata.h"
#include "checkpoint/hf_checkpoint.h"
#include "quant/dequantize.h"
#include "formats/tensor_names.h"

namespace piquant {
namespace {

std::string shape_text(std::int64_t rows, std::int64_t cols) {
  return "[" + std::to_string(rows) + " x " + std::to_string(cols) + "]";
}

// Checks a weight's shape and type against what the hyperparameters imply.
void check_matrix(const MatrixView& m, std::int64_t rows, std::int64_t cols, const std::string& file,
                  const std::string& name) {
  if (m.rows != rows || m.cols != cols) {
    throw FormatError(file, "tensor '" + name + "' shape",
                      "is " + shape_text(m.rows, m.cols) + " (rows x cols) but the metadata implies " + shape_text(rows, cols));
  }
  if (!matmul_supports(m.type)) {
    throw FormatError(file, "tensor '" + name + "' type", ggml_type_name(m.type) + " weights are not supported by the engine yet");
  }
}

// The GGUF file, mapped or read whole into memory, with how long a read took.
GgufFile open_gguf(const std::string& path, const ModelLoadOptions& options) {
  if (options.use_mmap) return GgufFile(path, FileLoad::Map);
  const auto start = std::chrono::steady_clock::now();
  GgufFile file(path, FileLoad::ReadIntoMemory);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::debug("read ", path, ": ", static_cast<double>(file.file().size()) / 1e6, " MB in ", seconds, " s (",
             static_cast<double>(file.file().size()) / 1e6 / std::max(seconds, 1e-9), " MB/s)");
  return file;
}

// A model read from a GGUF file: weights are views into the mapped file (or its
// read-in copy, with use_mmap = false).
class GgufLlamaModel : public LlamaModel {
 public:
  GgufLlamaModel(const std::string& path, const ModelLoadOptions& options) : file_(open_gguf(path, options)) {
    path_ = path;
    params_ = read_model_params(file_);
    Vocab vocab = load_vocab_gguf(file_);
    tokenizer_ = Tokenizer::create(std::move(vocab));
    rope_pairing_ = RopePairing::Interleaved;
    // Read-ahead on the map. By default none is asked for: loading stays instant, each
    // weight page comes in when the first forward pass touches it (with the kernel's
    // normal read-around), and pages stay shared in the page cache for the next run.
    // MADV_SEQUENTIAL would mark the pages use-once, so they would be reclaimed first
    // although every token reads them again; MADV_RANDOM would turn off read-ahead and
    // fault one 4 KiB page at a time, which on an SD card is slowest of all. The header
    // was just parsed, so prefetch asks for the data section only.
    if (options.prefetch && options.use_mmap) {
      const MappedFile& map = file_.file();
      map.advise_willneed(file_.data_offset(), map.size() - std::min<std::uint64_t>(file_.data_offset(), map.size()));
    }

    bind_weights(
        path, [this](WeightId id) { return matrix(gguf_tensor_name(id)); },
        [this](WeightId id, std::int64_t n) { return norm(gguf_tensor_name(id), n); },
        file_.find_tensor("output.weight") != nullptr);
    const LlamaParams& p = params_;
    if (const GgufTensorInfo* rope = file_.find_tensor("rope_freqs.weight")) {
      if (rope->type != GgmlType::F32 || rope->n_elements() != p.head_dim / 2) {
        throw FormatError(path, "tensor 'rope_freqs.weight'", "must be F32 with head_dim/2 = " + std::to_string(p.head_dim / 2) + " values");
      }
      const auto data = file_.tensor_data(*rope);
      rope_factors_.resize(static_cast<std::size_t>(p.head_dim / 2));
      std::memcpy(rope_factors_.data(), data.data(), rope_factors_.size() * sizeof(float));
    }
    for (const auto& t : file_.tensors()) weight_bytes_ += t.size_bytes;
  }

 private:
  MatrixView matrix(const std::string& name) const {
    const GgufTensorInfo& info = file_.tensor(name);
    if (info.shape.size() != 2) throw FormatError(path_, "tensor '" + name + "' shape", "must have 2 dimensions");
    MatrixView m;
    m.type = info.type;
    m.data = file_.tensor_data(info).data();
    m.cols = info.shape[0];
    m.rows = info.shape[1];
    m.row_bytes = static_cast<std::size_t>(ggml_nbytes(info.type, static_cast<std::uint64_t>(m.cols)));
    return m;
  }

  // A norm's weights or a bias: one dimension of n values.
  const float* norm(const std::string& name, std::int64_t n) {
    const GgufTensorInfo& info = file_.tensor(name);
    if (info.shape.size() != 1 || info.n_elements() != n) {
      throw FormatError(path_, "tensor '" + name + "' shape", "must be one dimension of " + std::to_string(n) + " values");
    }
    const auto data = file_.tensor_data(info);
    if (info.type == GgmlType::F32) return reinterpret_cast<const float*>(data.data());
    if (info.type != GgmlType::F16 && info.type != GgmlType::BF16) {
      throw FormatError(path_, "tensor '" + name + "' type",
                        ggml_type_name(info.type) + ": norm weights and biases must be F32, F16 or BF16");
    }
    return owned_float_copy(info.type, data.data(), n);
  }

  void release_matrix(WeightId id, const MatrixView& m) const override {
    const MappedFile& map = file_.file();
    map.release(static_cast<std::uint64_t>(m.data - map.data()), static_cast<std::uint64_t>(m.rows) * m.row_bytes);
  }

  GgufFile file_;
};

// Safetensors are only ever mapped: reading a checkpoint into memory is left to GGUF.
SafetensorsFiles mapped_checkpoint(const std::string& dir, const ModelLoadOptions& options) {
  if (!options.use_mmap) {
    throw Error(dir + ": reading a model into memory instead of mapping it (--no-mmap) needs a GGUF file, "
                      "not a Hugging Face folder; convert it first (piquant convert) or leave --no-mmap out");
  }
  return SafetensorsFiles(dir);
}

// A model read straight from a Hugging Face folder: weights are views into the mapped
// safetensors. Q and K keep HF's row order; RoPE pairs elements the HF way instead.
class HfLlamaModel : public LlamaModel {
 public:
  HfLlamaModel(const std::string& dir, const ModelLoadOptions& options) : weights_(mapped_checkpoint(dir, options)) {
    namespace fs = std::filesystem;
    path_ = dir;
    params_ = load_hf_config((fs::path(dir) / "config.json").string());
    add_hf_ffn_down_bias(params_, weights_);
    const fs::path tokenizer = fs::path(dir) / "tokenizer.json";
    if (!fs::exists(tokenizer)) throw Error(dir + ": no tokenizer.json");
    tokenizer_ = Tokenizer::create(load_vocab_hf(tokenizer.string()));
    rope_pairing_ = RopePairing::HalfSplit;
    rope_factors_ = params_.rope_freq_factors();

    bind_weights(
        dir, [this](WeightId id) { return matrix(hf_tensor_name(id)); },
        [this](WeightId id, std::int64_t n) { return norm(hf_tensor_name(id), n); }, !params_.tie_word_embeddings);
    weight_bytes_ = weights_.total_bytes();
    if (options.prefetch) {
      for (const auto& name : weights_.names()) {
        const SafeTensor& t = weights_.tensor(name);
        weights_.file_of(t).advise_willneed(t.file_offset, t.data.size());
      }
    }
  }

 private:
  MatrixView matrix(const std::string& name) const {
    const SafeTensor& t = weights_.tensor(name);
    if (t.shape.size() != 2) throw FormatError(t.file, "tensor '" + name + "' shape", "must have 2 dimensions");
    MatrixView m;
    m.type = weight_type_of(t);
    m.data = t.data.data();
    m.rows = t.shape[0];
    m.cols = t.shape[1];
    m.row_bytes = static_cast<std::size_t>(m.cols) * safe_dtype_bytes(t.dtype);
    return m;
  }

  // A norm's weights or a bias: one dimension of n values.
  const float* norm(const std::string& name, std::int64_t n) {
    const SafeTensor& t = weights_.tensor(name);
    if (t.shape.size() != 1 || t.n_elements() != n) {
      throw FormatError(t.file, "tensor '" + name + "' shape", "must be one dimension of " + std::to_string(n) + " values");
    }
    // Always copied: safetensors data need not be 4-byte aligned for float access.
    return owned_float_copy(weight_type_of(t), t.data.data(), n);
  }

  void release_matrix(WeightId id, const MatrixView& m) const override {
    const SafeTensor& t = weights_.tensor(hf_tensor_name(id));
    weights_.file_of(t).release(t.file_offset, t.data.size());
  }

  SafetensorsFiles weights_;
};

}  // namespace

std::string LlamaModel::architecture() const { return architecture_for(params_); }

void LlamaModel::release_layer(std::int64_t layer) const {
  if (layer < 0 || layer >= static_cast<std::int64_t>(layers_.size())) {
    throw Error("release_layer: layer " + std::to_string(layer) + " of " + std::to_string(layers_.size()));
  }
  const LayerWeights& w = layers_[static_cast<std::size_t>(layer)];
  const std::pair<WeightKind, const MatrixView*> matrices[] = {
      {WeightKind::AttnQ, &w.wq},        {WeightKind::AttnK, &w.wk},    {WeightKind::AttnV, &w.wv},
      {WeightKind::AttnOutput, &w.wo},   {WeightKind::FfnGate, &w.w_gate}, {WeightKind::FfnUp, &w.w_up},
      {WeightKind::FfnDown, &w.w_down}};
  for (const auto& [kind, m] : matrices) release_matrix({kind, layer}, *m);
}

const float* LlamaModel::owned_float_copy(GgmlType type, const std::uint8_t* data, std::int64_t n) {
  std::vector<float>& copy = owned_.emplace_back(static_cast<std::size_t>(n));
  dequantize_row(type, data, copy.data(), n);
  return copy.data();
}

void LlamaModel::bind_weights(const std::string& source, const std::function<MatrixView(WeightId)>& matrix,
                              const std::function<const float*(WeightId, std::int64_t)>& norm, bool has_output) {
  const LlamaParams& p = params_;
  const auto checked = [&](WeightKind kind, std::int64_t layer, std::int64_t rows, std::int64_t cols) {
    const MatrixView m = matrix({kind, layer});
    check_matrix(m, rows, cols, source, gguf_tensor_name({kind, layer}));
    return m;
  };
  token_embedding_ = checked(WeightKind::TokenEmbedding, -1, p.n_vocab, p.n_embd);
  layers_.clear();
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    const std::int64_t ff = p.n_ff[static_cast<std::size_t>(l)];
    LayerWeights w;
    w.attn_norm = norm({WeightKind::AttnNorm, l}, p.n_embd);
    w.ffn_norm = norm({WeightKind::FfnNorm, l}, p.n_embd);
    w.wq = checked(WeightKind::AttnQ, l, p.n_head * p.head_dim, p.n_embd);
    w.wk = checked(WeightKind::AttnK, l, p.n_head_kv * p.head_dim, p.n_embd);
    w.wv = checked(WeightKind::AttnV, l, p.n_head_kv * p.head_dim, p.n_embd);
    w.wo = checked(WeightKind::AttnOutput, l, p.n_embd, p.n_head * p.head_dim);
    w.w_gate = checked(WeightKind::FfnGate, l, ff, p.n_embd);
    w.w_up = checked(WeightKind::FfnUp, l, ff, p.n_embd);
    w.w_down = checked(WeightKind::FfnDown, l, p.n_embd, ff);
    if (p.has_ffn_down_bias(l)) w.ffn_down_bias = norm({WeightKind::FfnDownBias, l}, p.n_embd);
    layers_.push_back(w);
  }
  output_norm_ = norm({WeightKind::OutputNorm, -1}, p.n_embd);
  output_ = has_output ? checked(WeightKind::Output, -1, p.n_vocab, p.n_embd) : token_embedding_;
}

std::unique_ptr<LlamaModel> LlamaModel::load(const std::string& path, const ModelLoadOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return std::make_unique<HfLlamaModel>(path, options);
  if (!std::filesystem::exists(path, ec)) throw Error(path + ": no such file or folder");
  return std::make_unique<GgufLlamaModel>(path, options);
}

}  // namespace piquant
