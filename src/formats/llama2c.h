#pragma once
// llama2.c's v0 checkpoint: a header of 7 int32 (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier is NOT
// shared with the embedding) followed by float32 arrays: token_embedding [vocab][dim],
// rms_att [L][dim], wq [L][dim][dim], wk [L][kv_dim][dim], wv [L][kv_dim][dim],
// wo [L][dim][dim], rms_ffn [L][dim], w1 [L][hidden][dim], w2 [L][dim][hidden],
// w3 [L][hidden][dim], rms_final [dim], freq_cis_real [seq_len][head_size/2],
// freq_cis_imag [same], then wcls [vocab][dim] when not shared.
// Its Q/K rows are already in the interleaved-pair order GGUF uses.
// The tokenizer.bin: int32 max_token_length, then per token: float32 score, int32
// length, bytes.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "formats/llama_params.h"

namespace piquant {

class Llama2cFile {
 public:
  struct Array {
    std::string name;  // token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls
    std::vector<std::int64_t> shape;  // row-major, incl. the leading layer dimension where there is one
    std::uint64_t offset = 0;         // absolute byte offset in the file
  };

  // Validates the header (all positive, heads divide dim, kv heads divide heads)
  // and that the file holds exactly the arrays the header implies.
  explicit Llama2cFile(const std::string& path);

  const LlamaParams& params() const { return params_; }
  bool shared_classifier() const { return shared_classifier_; }
  const std::vector<Array>& arrays() const { return arrays_; }
  const Array& array(const std::string& name) const;
  // The float32 data of an array, or of one layer's slice of a per-layer array.
  std::span<const float> data(const Array& array) const;
  std::span<const float> layer_data(const Array& array, std::int64_t layer) const;
  const MappedFile& file() const { return file_; }

 private:
  MappedFile file_;
  LlamaParams params_;
  bool shared_classifier_ = true;
  std::vector<Array> arrays_;
};

}  // namespace piquant
