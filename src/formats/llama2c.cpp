// llama2.c v0 checkpoints: the header, and the exact layout of the float arrays it implies.
#include "formats/llama2c.h"

#include <bit>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "core/error.h"

namespace piquant {
namespace {

constexpr std::uint64_t kHeaderBytes = 7 * sizeof(std::int32_t);

// Arrays with a leading layer dimension: layer_data() slices these.
bool is_per_layer(const std::string& name) {
  for (const char* n : {"rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3"}) {
    if (name == n) return true;
  }
  return false;
}

// Element count of a shape, or nullopt if it overflows 64 bits.
std::optional<std::uint64_t> count(const std::vector<std::int64_t>& shape) {
  std::uint64_t n = 1;
  for (const auto dim : shape) {
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(dim), &n)) return std::nullopt;
  }
  return n;
}

}  // namespace

Llama2cFile::Llama2cFile(const std::string& path) : file_(path) {
  static_assert(std::endian::native == std::endian::little, "llama2.c checkpoints are little-endian");
  if (file_.size() < kHeaderBytes) {
    throw FormatError(path, "header",
                      "file is " + std::to_string(file_.size()) + " bytes, shorter than the 28-byte header");
  }
  std::int32_t h[7];
  std::memcpy(h, file_.data(), sizeof h);
  const char* const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    // vocab_size's sign is a flag; every other field must be positive.
    const std::int64_t value = i == 5 ? std::abs(static_cast<std::int64_t>(h[i])) : h[i];
    if (value <= 0) throw FormatError(path, std::string("header ") + names[i], "must be positive, got " + std::to_string(h[i]));
  }
  const std::int64_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4], seq_len = h[6];
  const std::int64_t vocab = std::abs(static_cast<std::int64_t>(h[5]));
  shared_classifier_ = h[5] > 0;
  if (dim % heads != 0) {
    throw FormatError(path, "header n_heads", std::to_string(heads) + " does not divide dim " + std::to_string(dim));
  }
  if (heads % kv_heads != 0) {
    throw FormatError(path, "header n_kv_heads",
                      std::to_string(kv_heads) + " does not divide n_heads " + std::to_string(heads));
  }
  const std::int64_t head_size = dim / heads;
  if (head_size % 2 != 0) {
    throw FormatError(path, "header n_heads", "head size " + std::to_string(head_size) + " is odd; RoPE rotates pairs");
  }
  const std::int64_t kv_dim = head_size * kv_heads;

  const std::vector<std::pair<std::string, std::vector<std::int64_t>>> layout = {
      {"token_embedding", {vocab, dim}},
      {"rms_att", {layers, dim}},
      {"wq", {layers, dim, dim}},
      {"wk", {layers, kv_dim, dim}},
      {"wv", {layers, kv_dim, dim}},
      {"wo", {layers, dim, dim}},
      {"rms_ffn", {layers, dim}},
      {"w1", {layers, hidden, dim}},
      {"w2", {layers, dim, hidden}},
      {"w3", {layers, hidden, dim}},
      {"rms_final", {dim}},
      {"freq_cis_real", {seq_len, head_size / 2}},
      {"freq_cis_imag", {seq_len, head_size / 2}},
  };
  std::uint64_t offset = kHeaderBytes;
  bool overflow = false;
  auto place = [&](const std::string& name, std::vector<std::int64_t> shape) {
    const auto n = count(shape);
    std::uint64_t bytes = 0;
    if (!n || __builtin_mul_overflow(*n, std::uint64_t{4}, &bytes) || __builtin_add_overflow(offset, bytes, &offset)) {
      overflow = true;
      return;
    }
    arrays_.push_back(Array{name, std::move(shape), offset - bytes});
  };
  for (const auto& [name, shape] : layout) place(name, shape);
  if (!shared_classifier_) place("wcls", {vocab, dim});

  const std::string dims = "dim " + std::to_string(dim) + ", hidden_dim " + std::to_string(hidden) + ", " +
                           std::to_string(layers) + " layers, " + std::to_string(heads) + " heads, " +
                           std::to_string(kv_heads) + " kv heads, vocab " + std::to_string(vocab) + ", seq_len " +
                           std::to_string(seq_len) + (shared_classifier_ ? "" : ", own classifier");
  if (overflow) throw FormatError(path, "header", "implies more than 2^64 bytes (" + dims + ")");
  if (offset != file_.size()) {
    throw FormatError(path, "file size",
                      "the header (" + dims + ") implies " + std::to_string(offset) + " bytes, the file has " +
                          std::to_string(file_.size()));
  }

  params_.n_vocab = vocab;
  params_.n_embd = dim;
  params_.n_layer = layers;
  params_.n_head = heads;
  params_.n_head_kv = kv_heads;
  params_.head_dim = head_size;
  params_.n_ff.assign(static_cast<std::size_t>(layers), hidden);
  params_.n_ctx_train = seq_len;
  params_.rms_norm_eps = 1e-5;
  params_.rope_theta = 10000.0;
  params_.rope_scaling.reset();
  params_.tie_word_embeddings = shared_classifier_;
  // llama2.c's sentencepiece convention: <s> = 1, </s> = 2.
  params_.bos_token_id = 1;
  params_.eos_token_ids = {2};
  params_.validate(path);
}

const Llama2cFile::Array& Llama2cFile::array(const std::string& name) const {
  for (const auto& a : arrays_) {
    if (a.name == name) return a;
  }
  throw Error(file_.path() + ": llama2.c checkpoint has no array '" + name + "'" +
              (name == "wcls" ? " (its classifier is shared with token_embedding)" : ""));
}

std::span<const float> Llama2cFile::data(const Array& array) const {
  const auto n = count(array.shape).value_or(0);
  const auto bytes = file_.bytes(array.offset, n * sizeof(float), array.name);
  return {reinterpret_cast<const float*>(bytes.data()), static_cast<std::size_t>(n)};
}

std::span<const float> Llama2cFile::layer_data(const Array& array, std::int64_t layer) const {
  if (!is_per_layer(array.name)) throw Error(file_.path() + ": array '" + array.name + "' has no layer dimension");
  if (layer < 0 || layer >= array.shape.front()) {
    throw Error(file_.path() + ": layer " + std::to_string(layer) + " of '" + array.name + "' is out of range [0, " +
                std::to_string(array.shape.front()) + ")");
  }
  const std::size_t per_layer = data(array).size() / static_cast<std::size_t>(array.shape.front());
  return data(array).subspan(static_cast<std::size_t>(layer) * per_layer, per_layer);
}

}  // namespace piquant
