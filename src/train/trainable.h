#pragma once
// What a training run changes: a LoRA adapter's matrices, or every weight of an
// in-memory model. Either way a list of named F32 tensors with their gradients (what
// the optimizer and the checkpoints see) and the TrainingGradients a pass adds to.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/lora.h"
#include "engine/owned_model.h"
#include "train/training_pass.h"

namespace piquant {

struct TrainableTensor {
  std::string name;  // e.g. "blk.0.attn_q.weight.lora_a", "blk.0.ffn_up.weight"
  std::vector<std::int64_t> shape;
  std::span<float> value;
  std::span<float> grad;
  bool decay = true;  // AdamW's weight decay applies (not to norm weights)
};

class Trainable {
 public:
  // The adapter's A and B matrices; its gradient lives in an adapter of the same shape.
  static std::unique_ptr<Trainable> lora(LoraAdapter& adapter);
  // Every weight of the model (a tied output shares the embedding's gradient) except the
  // ffn_down biases, which stay frozen (the forward adds them; no gradient flows to them).
  static std::unique_ptr<Trainable> full(OwnedLlamaModel& model);

  const std::vector<TrainableTensor>& tensors() const { return tensors_; }
  const TrainingGradients& gradients() const { return gradients_; }
  void zero_gradients();
  std::int64_t parameter_count() const;

 private:
  Trainable() = default;
  std::vector<TrainableTensor> tensors_;
  TrainingGradients gradients_;
  std::unique_ptr<LoraAdapter> lora_grads_;
  std::vector<std::vector<float>> storage_;
};

// PEFT's initialisation: A uniform in ±1/sqrt(cols) (Kaiming-uniform with a = √5), B = 0,
// so the adapted model starts equal to the base. Drawn per matrix in ids() order from
// SplitMix64 streams of `seed` (the same values on every machine).
void init_lora(LoraAdapter& adapter, std::uint64_t seed);

// Adds zero matrices for `kinds` in every layer of `model` (rank and alpha from adapter).
void add_lora_targets(LoraAdapter& adapter, const LlamaModel& model, const std::vector<WeightKind>& kinds);

// "q,k,v,o,gate,up,down" → kinds; throws Error naming an unknown target.
std::vector<WeightKind> parse_lora_targets(const std::string& list);

}  // namespace piquant
