#include "train/trainable.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "train/model_checkpoint.h"
#include "core/split_mix64.h"

namespace piquant {

void Trainable::zero_gradients() {
  for (const TrainableTensor& t : tensors_) std::fill(t.grad.begin(), t.grad.end(), 0.0f);
}

std::int64_t Trainable::parameter_count() const {
  std::int64_t n = 0;
  for (const TrainableTensor& t : tensors_) n += static_cast<std::int64_t>(t.value.size());
  return n;
}

std::unique_ptr<Trainable> Trainable::lora(LoraAdapter& adapter) {
  std::unique_ptr<Trainable> t(new Trainable());
  t->lora_grads_ = std::make_unique<LoraAdapter>(adapter.rank(), adapter.alpha(), adapter.layout());
  for (WeightId id : adapter.ids()) {
    LoraMatrix& m = *adapter.find(id);
    LoraMatrix& g = t->lora_grads_->add(id, m.rows, m.cols);
    const std::string name = gguf_tensor_name(id);
    t->tensors_.push_back({name + ".lora_a", {m.rank, m.cols}, m.a, g.a, true});
    t->tensors_.push_back({name + ".lora_b", {m.rows, m.rank}, m.b, g.b, true});
  }
  t->gradients_.lora = t->lora_grads_.get();
  return t;
}

std::unique_ptr<Trainable> Trainable::full(OwnedLlamaModel& model) {
  std::unique_ptr<Trainable> t(new Trainable());
  const LlamaParams& p = model.params();
  TrainingGradients& g = t->gradients_;
  g.layers.resize(static_cast<std::size_t>(p.n_layer));
  const std::vector<WeightId> ids = model.weight_ids();
  t->storage_.reserve(ids.size());
  for (WeightId id : ids) {
    if (id.kind == WeightKind::FfnDownBias) continue;  // frozen: a pruned model's compensation stays as computed
    std::span<float> value = model.weight(id);
    std::vector<float>& grad = t->storage_.emplace_back(value.size(), 0.0f);
    const auto [rows, cols] = weight_shape(p, id);
    const bool norm = rows == 1;
    t->tensors_.push_back({gguf_tensor_name(id), norm ? std::vector<std::int64_t>{cols} : std::vector<std::int64_t>{rows, cols},
                           value, grad, !norm});
    float* d = grad.data();
    LayerGrads* lg = id.layer >= 0 ? &g.layers[static_cast<std::size_t>(id.layer)] : nullptr;
    switch (id.kind) {
      case WeightKind::TokenEmbedding: g.token_embedding = d; break;
      case WeightKind::OutputNorm: g.output_norm = d; break;
      case WeightKind::Output: g.output = d; break;
      case WeightKind::AttnNorm: lg->attn_norm = d; break;
      case WeightKind::AttnQ: lg->wq = d; break;
      case WeightKind::AttnK: lg->wk = d; break;
      case WeightKind::AttnV: lg->wv = d; break;
      case WeightKind::AttnOutput: lg->wo = d; break;
      case WeightKind::FfnNorm: lg->ffn_norm = d; break;
      case WeightKind::FfnGate: lg->w_gate = d; break;
      case WeightKind::FfnUp: lg->w_up = d; break;
      case WeightKind::FfnDown: lg->w_down = d; break;
      default: throw Error("full training: unexpected weight " + gguf_tensor_name(id));
    }
  }
  if (model.tied_output()) g.output = g.token_embedding;
  return t;
}

void init_lora(LoraAdapter& adapter, std::uint64_t seed) {
  std::uint64_t index = 0;
  for (WeightId id : adapter.ids()) {
    LoraMatrix& m = *adapter.find(id);
    SplitMix64 rng(stream_seed(seed, 0x6c6f7261 /* "lora" */, index++));
    const double bound = 1.0 / std::sqrt(static_cast<double>(m.cols));
    for (float& v : m.a) v = static_cast<float>((static_cast<double>(rng.next() >> 11) * 0x1.0p-53 * 2.0 - 1.0) * bound);
    std::fill(m.b.begin(), m.b.end(), 0.0f);
  }
}

void add_lora_targets(LoraAdapter& adapter, const LlamaModel& model, const std::vector<WeightKind>& kinds) {
  for (std::int64_t l = 0; l < model.params().n_layer; ++l) {
    for (WeightKind k : kinds) {
      const MatrixView& w = model_matrix(model, {k, l});
      adapter.add({k, l}, w.rows, w.cols);
    }
  }
}

std::vector<WeightKind> parse_lora_targets(const std::string& list) {
  std::vector<WeightKind> kinds;
  std::stringstream in(list);
  std::string name;
  while (std::getline(in, name, ',')) {
    if (name.empty()) continue;
    WeightKind k;
    if (name == "q") k = WeightKind::AttnQ;
    else if (name == "k") k = WeightKind::AttnK;
    else if (name == "v") k = WeightKind::AttnV;
    else if (name == "o") k = WeightKind::AttnOutput;
    else if (name == "gate") k = WeightKind::FfnGate;
    else if (name == "up") k = WeightKind::FfnUp;
    else if (name == "down") k = WeightKind::FfnDown;
    else throw Error("LoRA targets: unknown '" + name + "' (choose from q, k, v, o, gate, up, down)");
    if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) kinds.push_back(k);
  }
  if (kinds.empty()) throw Error("LoRA targets: none given");
  return kinds;
}

}  // namespace piquant
