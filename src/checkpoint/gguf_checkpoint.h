#pragma once
// A llama / deci GGUF file with float tensors (F32, F16, BF16), seen as a Checkpoint.
#include "formats/gguf.h"
#include "checkpoint/checkpoint.h"

namespace piquant {

class GgufCheckpoint : public Checkpoint {
 public:
  GgufCheckpoint(const std::string& path, const CheckpointOptions& options);

  const std::string& path() const override { return file_.path(); }
  std::string format() const override { return "gguf"; }
  const LlamaParams& params() const override { return params_; }
  const Vocab& vocab() const override { return vocab_; }
  std::string model_name() const override { return name_; }
  const std::vector<CheckpointTensor>& tensors() const override { return tensors_; }
  void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const override;
  void release(const CheckpointTensor& tensor) const override;
  const GgufFile& file() const { return file_; }

 private:
  GgufFile file_;
  LlamaParams params_;
  Vocab vocab_;
  std::string name_;
  std::vector<CheckpointTensor> tensors_;
};

}  // namespace piquant
