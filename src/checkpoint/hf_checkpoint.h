#pragma once
// A Hugging Face Llama checkpoint folder: config.json (LlamaForCausalLM, or DeciLM /
// nemotron-nas with per-layer MLP widths), safetensors (sharded or not, F32/F16/BF16;
// an optional mlp.down_proj.bias per layer) and tokenizer.json (+ tokenizer_config.json).
#include <memory>

#include "formats/safetensors.h"
#include "checkpoint/checkpoint.h"

namespace piquant {

// The element type of a weight stored in safetensors; FormatError for non-float dtypes.
GgmlType weight_type_of(const SafeTensor& tensor);

// Sets params.ffn_down_bias for the layers whose model.layers.N.mlp.down_proj.bias the
// weights hold (piquant's extension, see checkpoint/hf_export.h); config.json cannot say.
void add_hf_ffn_down_bias(LlamaParams& params, const SafetensorsFiles& weights);

class HfCheckpoint : public Checkpoint {
 public:
  HfCheckpoint(const std::string& dir, const CheckpointOptions& options);

  const std::string& path() const override { return dir_; }
  std::string format() const override { return "hf"; }
  const LlamaParams& params() const override { return params_; }
  const Vocab& vocab() const override { return vocab_; }
  std::string model_name() const override { return name_; }
  const std::vector<CheckpointTensor>& tensors() const override { return tensors_; }
  void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const override;
  void release(const CheckpointTensor& tensor) const override;

 private:
  const SafeTensor& source_of(const CheckpointTensor& tensor) const;

  std::string dir_;
  std::string name_;
  LlamaParams params_;
  Vocab vocab_;
  std::unique_ptr<SafetensorsFiles> weights_;
  std::vector<CheckpointTensor> tensors_;
  std::vector<const SafeTensor*> sources_;  // parallel to tensors_; nullptr for rope_freqs
  std::vector<float> rope_factors_;
};

}  // namespace piquant
