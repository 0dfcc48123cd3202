#include "train/model_checkpoint.h"

#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/matmul.h"

namespace piquant {

const MatrixView& model_matrix(const LlamaModel& model, WeightId id) {
  switch (id.kind) {
    case WeightKind::TokenEmbedding: return model.token_embedding();
    case WeightKind::Output: return model.output();
    case WeightKind::AttnQ: return model.layer(id.layer).wq;
    case WeightKind::AttnK: return model.layer(id.layer).wk;
    case WeightKind::AttnV: return model.layer(id.layer).wv;
    case WeightKind::AttnOutput: return model.layer(id.layer).wo;
    case WeightKind::FfnGate: return model.layer(id.layer).w_gate;
    case WeightKind::FfnUp: return model.layer(id.layer).w_up;
    case WeightKind::FfnDown: return model.layer(id.layer).w_down;
    default: break;
  }
  throw Error("model_matrix: " + gguf_tensor_name(id) + " is not a matrix");
}

namespace {

class ModelCheckpoint : public Checkpoint {
 public:
  ModelCheckpoint(const LlamaModel& model, std::string name)
      : model_(model), name_(std::move(name)), tensors_(llama_tensor_layout(model.params())) {
    if (model.output().data == model.token_embedding().data) {
      // Tied: the file has no output matrix (llama.cpp reads the embedding).
      std::erase_if(tensors_, [](const CheckpointTensor& t) { return t.id.kind == WeightKind::Output; });
    }
  }
  const std::string& path() const override { return model_.path(); }
  std::string format() const override { return "model"; }
  const LlamaParams& params() const override { return model_.params(); }
  const Vocab& vocab() const override { return model_.vocab(); }
  std::string model_name() const override { return name_; }
  const std::vector<CheckpointTensor>& tensors() const override { return tensors_; }

  void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const override {
    const WeightId id = tensor.id;
    const std::int64_t n = tensor.row_length();
    if (id.kind == WeightKind::RopeFreqs) {
      const std::vector<float>& f = model_.rope_factors();
      std::copy(f.begin(), f.end(), out);
      return;
    }
    const float* norm = id.kind == WeightKind::AttnNorm      ? model_.layer(id.layer).attn_norm
                        : id.kind == WeightKind::FfnNorm     ? model_.layer(id.layer).ffn_norm
                        : id.kind == WeightKind::FfnDownBias ? model_.layer(id.layer).ffn_down_bias
                        : id.kind == WeightKind::OutputNorm  ? model_.output_norm()
                                                             : nullptr;
    if (norm != nullptr) {
      std::copy(norm, norm + n, out);
      return;
    }
    const MatrixView& w = model_matrix(model_, id);
    const bool permute = model_.rope_pairing() == RopePairing::HalfSplit &&
                         (id.kind == WeightKind::AttnQ || id.kind == WeightKind::AttnK);
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const std::int64_t row = first_row + r;
      matrix_row_to_floats(w, permute ? hf_row_for_gguf_row(row, model_.params().head_dim) : row, out + r * n);
    }
  }

 private:
  const LlamaModel& model_;
  std::string name_;
  std::vector<CheckpointTensor> tensors_;
};

}  // namespace

std::unique_ptr<Checkpoint> checkpoint_of(const LlamaModel& model, const std::string& name) {
  return std::make_unique<ModelCheckpoint>(model, name);
}

}  // namespace piquant
