#pragma once
// A checkpoint with MLP neurons removed, as a view of the original: ffn_gate and ffn_up
// keep their kept rows, ffn_down its kept columns, and a layer may gain an ffn_down bias
// (added to one the source already has). Nothing is copied up front: rows are read from
// the source as the writer asks for them, so pruning streams like `convert` does and a
// 16 GB checkpoint needs a few row chunks in memory.
#include <cstdint>
#include <memory>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace piquant {

class PrunedCheckpoint : public Checkpoint {
 public:
  // kept[l]: the neurons layer l keeps, ascending, each below the source's n_ff[l].
  // biases[l]: n_embd values to add to layer l's ffn_down output, or empty for none.
  // `pruned` must describe the result (n_ff[l] == kept[l].size(), the bias flags);
  // throws Error when it does not.
  PrunedCheckpoint(const Checkpoint& source, LlamaParams pruned, std::vector<std::vector<std::int64_t>> kept,
                   std::vector<std::vector<float>> biases);

  const std::string& path() const override { return source_.path(); }
  std::string format() const override { return source_.format(); }
  const LlamaParams& params() const override { return params_; }
  const Vocab& vocab() const override { return source_.vocab(); }
  std::string model_name() const override { return source_.model_name(); }
  const std::vector<CheckpointTensor>& tensors() const override { return tensors_; }
  void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const override;
  void release(const CheckpointTensor& tensor) const override;

 private:
  const CheckpointTensor& source_tensor(const CheckpointTensor& tensor) const;

  const Checkpoint& source_;
  LlamaParams params_;
  std::vector<std::vector<std::int64_t>> kept_;
  std::vector<std::vector<float>> biases_;
  std::vector<CheckpointTensor> tensors_;
};

}  // namespace piquant
