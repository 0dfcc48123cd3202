#pragma once
// A model's weights, whatever file holds them (Hugging Face folder, llama2.c
// checkpoint, GGUF), seen under GGUF tensor names and GGUF layouts (Q/K rows in
// GGUF's interleaved order), read row range by row range as float so that tools
// stream a model instead of loading it.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/ggml_type.h"
#include "formats/llama_params.h"
#include "formats/tensor_names.h"
#include "tokenizer/vocab.h"

namespace piquant {

struct CheckpointTensor {
  std::string name;                 // GGUF name
  WeightId id;
  std::vector<std::int64_t> shape;  // ggml order: shape[0] is the row length
  GgmlType stored_type = GgmlType::F32;  // element type in the source file

  std::int64_t row_length() const { return shape.at(0); }
  std::int64_t n_rows() const;
  std::int64_t n_elements() const;
};

class Checkpoint {
 public:
  virtual ~Checkpoint() = default;

  virtual const std::string& path() const = 0;
  virtual std::string format() const = 0;  // "hf", "llama2c", "gguf"
  virtual const LlamaParams& params() const = 0;
  virtual const Vocab& vocab() const = 0;
  virtual std::string model_name() const = 0;
  // Every tensor, blocks in layer order; rope_freqs included when the model has llama3 scaling.
  virtual const std::vector<CheckpointTensor>& tensors() const = 0;

  // Rows [first_row, first_row + n_rows) of `tensor` as float32 into out (n_rows × row_length).
  virtual void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows,
                         float* out) const = 0;
  // Done with this tensor: let its pages go so the resident set stays small.
  virtual void release(const CheckpointTensor& tensor) const {}

  const CheckpointTensor* find(const std::string& name) const;
};

// A Checkpoint that reads through another one (`base`, which must outlive it): every
// call forwards to it; decorators override what they change (merged, scaled, pruned rows).
class ForwardingCheckpoint : public Checkpoint {
 public:
  explicit ForwardingCheckpoint(const Checkpoint& base) : base_(base) {}

  const std::string& path() const override { return base_.path(); }
  std::string format() const override { return base_.format(); }
  const LlamaParams& params() const override { return base_.params(); }
  const Vocab& vocab() const override { return base_.vocab(); }
  std::string model_name() const override { return base_.model_name(); }
  const std::vector<CheckpointTensor>& tensors() const override { return base_.tensors(); }
  void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const override {
    base_.read_rows(tensor, first_row, n_rows, out);
  }
  void release(const CheckpointTensor& tensor) const override { base_.release(tensor); }

 protected:
  const Checkpoint& base_;
};

struct CheckpointOptions {
  std::string tokenizer_path;  // llama2.c: its tokenizer.bin (required); others: an override
};

// Opens a Hugging Face checkpoint folder (config.json + safetensors + tokenizer.json),
// a GGUF file (llama / deci, float tensors) or a llama2.c checkpoint (by content).
std::unique_ptr<Checkpoint> open_checkpoint(const std::string& path, const CheckpointOptions& options = {});

// The tensors a Llama model of this shape has, in GGUF naming and order
// (rope_freqs first when present, token_embd, blocks, output_norm, output).
std::vector<CheckpointTensor> llama_tensor_layout(const LlamaParams& params);

// GGUF's Q/K rows interleave each head's rotation pairs; Hugging Face stores the
// first halves then the second halves. The HF row that GGUF row `row` comes from.
std::int64_t hf_row_for_gguf_row(std::int64_t row, std::int64_t head_dim);

}  // namespace piquant
