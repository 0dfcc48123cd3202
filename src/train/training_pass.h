#pragma once
// One training step's forward and backward over a sequence, through the engine's own
// blocks (forward_blocks.h / backward_blocks.h): embed → layers → chunked loss head,
// then the layers in reverse.
//
// Activation checkpointing (the default): the forward keeps only each layer's input
// residual (n_layer + 1 rows of T × E); the backward recomputes a layer's attention
// (keeping what its backward needs) and its MLP's gate and up products in steps. With
// keep_activations the forward keeps all of that for every layer instead (about
// n_layer × T × (5E + 2·n_ff) more floats) and nothing is recomputed: a third fewer
// products, bit-identical results. The loss head runs in chunks of loss_chunk tokens, so
// T × n_vocab logits never exist at once. Every buffer size comes from TrainingPlan.
//
// Products take the activations as float for every weight type (matmul_float.h): the
// forward is then exactly the function the backward differentiates, over a quantized
// base too (inference rounds activations to 8 bits, as llama.cpp does).
//
// Deterministic: the same inputs, weights and thread count give bit-identical losses and
// gradients (every sum's order is fixed by the shapes; see backward_blocks.h).
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "engine/backward_blocks.h"
#include "engine/llama_model.h"
#include "engine/lora.h"
#include "train/token_loss.h"

namespace piquant {

// Where gradients accumulate (+=). nullptr / empty: that weight is frozen.
struct TrainingGradients {
  float* token_embedding = nullptr;  // n_vocab × n_embd
  std::vector<LayerGrads> layers;    // n_layer entries, or empty (all frozen)
  float* output_norm = nullptr;      // n_embd
  float* output = nullptr;           // n_vocab × n_embd (tied: the embedding's gradient)
  LoraAdapter* lora = nullptr;       // the adapter's gradient (same matrices)
  // Shown every MLP step's values and gradients during the backward (backward_blocks.h);
  // nullptr: none.
  MlpBackwardObserver* mlp_observer = nullptr;
};

// One sequence: position t reads inputs[t] and predicts targets[t].
struct TrainingTokens {
  std::span<const std::int32_t> inputs;   // T
  std::span<const std::int32_t> targets;  // T; −1: no cross-entropy at this position
  std::span<const float> weights;         // T: each position's loss weight (0: no loss), e.g. 1 / tokens in the batch
  std::span<const TeacherTopK> teacher;   // T entries when distilling, else empty
  std::uint64_t dropout_seed = 0;         // the adapter dropout's mask (a new one per sequence and step)
};

// Every buffer of a pass, in floats.
struct TrainingPlan {
  std::int64_t max_tokens = 0, loss_chunk = 0, threads = 0;
  std::uint64_t residuals = 0;  // (n_layer + 1) × T × E
  std::uint64_t x = 0, dx = 0;
  std::uint64_t attention = 0;  // xn, q, k, v, attn, proj, rstd, lse, K/V rows, attend scratch
  std::uint64_t attention_grads = 0;
  std::uint64_t mlp = 0;        // forward: xn, proj, gate, up
  std::uint64_t mlp_grads = 0;  // backward: xn, rstd, gate, up, h, dh, dgate, dup, dxn
  std::uint64_t loss_head = 0;  // xn, logits, dxn of one chunk
  std::uint64_t kept = 0;       // keep_activations: every layer's attention values, MLP input, gate and up
  std::uint64_t total_floats() const {
    return residuals + x + dx + attention + attention_grads + mlp + mlp_grads + loss_head + kept;
  }
  std::uint64_t bytes() const { return 4 * total_floats(); }
};
TrainingPlan plan_training(const LlamaParams& params, std::int64_t max_tokens, std::int64_t loss_chunk, unsigned threads,
                           bool keep_activations = false);

class TrainingPass {
 public:
  // The model (and adapter, may be nullptr) must outlive the pass; their values may
  // change between calls (the optimizer updates them in place).
  TrainingPass(const LlamaModel& model, const LoraAdapter* lora, ThreadPool& pool, std::int64_t max_tokens,
               std::int64_t loss_chunk = 32, bool keep_activations = false);
  ~TrainingPass();

  // Σ_t weights[t] · token_loss(t), and its gradient added to `grads`.
  double forward_backward(const TrainingTokens& tokens, const TokenLossWeights& loss, const TrainingGradients& grads);
  // The same loss, forward only.
  double forward_loss(const TrainingTokens& tokens, const TokenLossWeights& loss);

  const TrainingPlan& plan() const { return plan_; }
  // Dropout on the adapter's inputs in forward_backward (forward_loss never drops).
  void set_lora_dropout(float p);

 private:
  struct Buffers;
  double run(const TrainingTokens& tokens, const TokenLossWeights& loss, const TrainingGradients* grads);
  const LlamaModel& model_;
  const LoraAdapter* lora_;
  ThreadPool& pool_;
  RopeTable rope_;
  TrainingPlan plan_;
  float lora_dropout_ = 0.0f;
  bool keep_activations_ = false;
  std::unique_ptr<Buffers> b_;
};

}  // namespace piquant
