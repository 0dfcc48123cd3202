#pragma once
// A llama2.c checkpoint with its tokenizer.bin, seen as a Checkpoint.
#include "formats/llama2c.h"
#include "checkpoint/checkpoint.h"

namespace piquant {

class Llama2cCheckpoint : public Checkpoint {
 public:
  Llama2cCheckpoint(const std::string& path, const CheckpointOptions& options);

  const std::string& path() const override { return path_; }
  std::string format() const override { return "llama2c"; }
  const LlamaParams& params() const override { return file_.params(); }
  const Vocab& vocab() const override { return vocab_; }
  std::string model_name() const override { return name_; }
  const std::vector<CheckpointTensor>& tensors() const override { return tensors_; }
  void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const override;
  void release(const CheckpointTensor& tensor) const override;

 private:
  std::span<const float> source_of(const CheckpointTensor& tensor) const;

  std::string path_;
  std::string name_;
  Llama2cFile file_;
  Vocab vocab_;
  std::vector<CheckpointTensor> tensors_;
};

}  // namespace piquant
