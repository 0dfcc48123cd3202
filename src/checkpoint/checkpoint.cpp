#include "checkpoint/checkpoint.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "checkpoint/gguf_checkpoint.h"
#include "checkpoint/hf_checkpoint.h"
#include "checkpoint/llama2c_checkpoint.h"

namespace piquant {

std::int64_t CheckpointTensor::n_rows() const {
  std::int64_t rows = 1;
  for (std::size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
  return rows;
}

std::int64_t CheckpointTensor::n_elements() const { return n_rows() * row_length(); }

const CheckpointTensor* Checkpoint::find(const std::string& name) const {
  for (const auto& t : tensors()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::vector<CheckpointTensor> llama_tensor_layout(const LlamaParams& p) {
  std::vector<CheckpointTensor> out;
  const auto add = [&](WeightKind kind, std::int64_t layer, std::vector<std::int64_t> shape) {
    const WeightId id{kind, layer};
    out.push_back(CheckpointTensor{gguf_tensor_name(id), id, std::move(shape), GgmlType::F32});
  };
  const std::int64_t q_dim = p.n_head * p.head_dim;
  const std::int64_t kv_dim = p.n_head_kv * p.head_dim;
  if (p.rope_scaling) add(WeightKind::RopeFreqs, -1, {p.head_dim / 2});
  add(WeightKind::TokenEmbedding, -1, {p.n_embd, p.n_vocab});
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    const std::int64_t ff = p.n_ff.at(static_cast<std::size_t>(l));
    add(WeightKind::AttnNorm, l, {p.n_embd});
    add(WeightKind::AttnQ, l, {p.n_embd, q_dim});
    add(WeightKind::AttnK, l, {p.n_embd, kv_dim});
    add(WeightKind::AttnV, l, {p.n_embd, kv_dim});
    add(WeightKind::AttnOutput, l, {q_dim, p.n_embd});
    add(WeightKind::FfnNorm, l, {p.n_embd});
    add(WeightKind::FfnGate, l, {p.n_embd, ff});
    add(WeightKind::FfnUp, l, {p.n_embd, ff});
    add(WeightKind::FfnDown, l, {ff, p.n_embd});
    if (p.has_ffn_down_bias(l)) add(WeightKind::FfnDownBias, l, {p.n_embd});
  }
  add(WeightKind::OutputNorm, -1, {p.n_embd});
  if (!p.tie_word_embeddings) add(WeightKind::Output, -1, {p.n_embd, p.n_vocab});
  return out;
}

std::int64_t hf_row_for_gguf_row(std::int64_t row, std::int64_t head_dim) {
  const std::int64_t head = row / head_dim;
  const std::int64_t within = row % head_dim;
  const std::int64_t pair = within / 2;
  const std::int64_t half = within % 2;
  return head * head_dim + half * (head_dim / 2) + pair;
}

namespace {

bool starts_with_bytes(const std::string& path, const char* magic, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string head(n, '\0');
  in.read(head.data(), static_cast<std::streamsize>(n));
  return in.gcount() == static_cast<std::streamsize>(n) && head.compare(0, n, magic, n) == 0;
}

}  // namespace

std::unique_ptr<Checkpoint> open_checkpoint(const std::string& path, const CheckpointOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return std::make_unique<HfCheckpoint>(path, options);
  if (!fs::exists(path, ec)) throw Error(path + ": no such file or folder");
  if (starts_with_bytes(path, "GGUF", 4)) return std::make_unique<GgufCheckpoint>(path, options);
  if (path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") {
    throw Error(path + ": give the checkpoint's folder (with config.json and tokenizer.json), not one .safetensors file");
  }
  return std::make_unique<Llama2cCheckpoint>(path, options);
}

}  // namespace piquant
