#pragma once
// A Llama-family model ready to run: hyperparameters, tokenizer and zero-copy views
// of every weight, straight from an mmapped GGUF (architectures llama and deci) or a
// Hugging Face folder's safetensors. Loading touches almost nothing: pages come in
// as the forward pass reads them.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/matrix_view.h"
#include "kernels/rope.h"
#include "formats/llama_params.h"
#include "formats/tensor_names.h"
#include "tokenizer/tokenizer.h"

namespace piquant {

struct LayerWeights {
  const float* attn_norm = nullptr;  // n_embd
  MatrixView wq, wk, wv, wo;         // wq: (n_head·head_dim) × n_embd, wk/wv: (n_head_kv·head_dim) × n_embd, wo: n_embd × (n_head·head_dim)
  const float* ffn_norm = nullptr;   // n_embd
  MatrixView w_gate, w_up, w_down;   // gate/up: n_ff × n_embd, down: n_embd × n_ff
  // n_embd values added to w_down's product (blk.N.ffn_down.bias); nullptr: the layer has
  // none. Stored F16/BF16 biases are read through a float copy, like the norms.
  const float* ffn_down_bias = nullptr;
};

struct ModelLoadOptions {
  bool prefetch = false;  // read the whole file in now (MADV_WILLNEED) instead of on first touch
  // false: read the weights into anonymous memory with large sequential reads instead of
  // mapping the file (an SD card serves big reads much faster than mmap's page faults).
  bool use_mmap = true;
};

class LlamaModel {
 public:
  virtual ~LlamaModel() = default;

  // A GGUF file or a Hugging Face checkpoint folder.
  static std::unique_ptr<LlamaModel> load(const std::string& path, const ModelLoadOptions& options = {});

  const LlamaParams& params() const { return params_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const Vocab& vocab() const { return tokenizer_->vocab(); }
  const std::string& path() const { return path_; }
  std::string architecture() const;

  const MatrixView& token_embedding() const { return token_embedding_; }  // n_vocab × n_embd
  const LayerWeights& layer(std::int64_t i) const { return layers_.at(static_cast<std::size_t>(i)); }
  const float* output_norm() const { return output_norm_; }
  const MatrixView& output() const { return output_; }  // n_vocab × n_embd (the embedding when tied)
  const std::vector<float>& rope_factors() const { return rope_factors_; }  // empty: no llama3 scaling
  RopePairing rope_pairing() const { return rope_pairing_; }
  std::uint64_t weight_bytes() const { return weight_bytes_; }  // bytes of all weights (read once per token)

  // Lets the pages of layer `layer`'s matrices go, for a pass that walks the model layer
  // by layer and is done with this one: a mapped file's pages leave this process's
  // resident set (they stay in the page cache and come back on the next touch, so the
  // views stay valid); weights held in memory (a GGUF read in with use_mmap = false, an
  // OwnedLlamaModel) are left alone. Throws Error for a layer outside the model.
  void release_layer(std::int64_t layer) const;

 protected:
  LlamaModel() = default;
  // Looks every weight up by id and checks its shape and type against params_. `norm`
  // also gives the 1-D ffn_down biases of the layers params_.ffn_down_bias flags.
  void bind_weights(const std::string& source, const std::function<MatrixView(WeightId)>& matrix,
                    const std::function<const float*(WeightId, std::int64_t)>& norm, bool has_output);

  std::string path_;
  LlamaParams params_;
  std::unique_ptr<Tokenizer> tokenizer_;
  MatrixView token_embedding_;
  std::vector<LayerWeights> layers_;
  const float* output_norm_ = nullptr;
  MatrixView output_;
  std::vector<float> rope_factors_;
  RopePairing rope_pairing_ = RopePairing::Interleaved;
  std::uint64_t weight_bytes_ = 0;
  // What release_layer does to one of a layer's matrices (its view's bytes); the base
  // class keeps everything.
  virtual void release_matrix(WeightId id, const MatrixView& m) const {}
  // A float copy of n values stored as `type`, kept as long as the model.
  const float* owned_float_copy(GgmlType type, const std::uint8_t* data, std::int64_t n);
  std::vector<std::vector<float>> owned_;  // float copies of norms and biases stored as F16/BF16
};

}  // namespace piquant
