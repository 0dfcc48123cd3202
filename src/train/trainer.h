#pragma once
// The training loop: batches of sequences with gradient accumulation, AdamW with a
// warm-up + cosine schedule and clipping, held-out evaluation every N steps, and
// checkpoints (parameters + optimizer moments + data position) every N steps that a
// resumed run continues from exactly: the same seed, settings and thread count give
// bit-identical parameters whether or not the run was interrupted.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "engine/llama_model.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"
#include "train/token_loss.h"
#include "train/trainable.h"
#include "train/training_data.h"

namespace piquant {

struct TrainerOptions {
  std::int64_t steps = 0;      // optimizer steps; 0: epochs × ceil(training sequences / batch)
  double epochs = 1.0;
  std::int64_t batch = 4;      // sequences per optimizer step (their gradients accumulate)
  double lr = 2e-4;
  std::int64_t warmup = 0;     // steps
  double min_lr_ratio = 0.1;   // the cosine ends at lr · min_lr_ratio
  bool cosine = true;
  AdamWOptions adam;
  TokenLossWeights loss;
  std::int64_t eval_every = 0;        // steps; 0: only at the end (when there is held-out data)
  std::int64_t checkpoint_every = 0;  // steps; 0: none
  std::string checkpoint_path;        // a train-state file (.safetensors)
  bool resume = false;                // continue from checkpoint_path
  std::uint64_t seed = 1;
  bool shuffle = true;
  std::int64_t loss_chunk = 32;
  float lora_dropout = 0.0f;          // dropout on the adapter's inputs (LoRA runs only)
  bool keep_activations = false;      // keep every layer's activations instead of recomputing them (same results)
  std::string settings_json = "{}";   // what a resume must find unchanged
};

struct StepReport {
  std::int64_t step = 0, total_steps = 0;  // step counts from 1
  double loss = 0.0;                       // mean over the step's loss tokens
  double lr = 0.0, grad_norm = 0.0;
  std::int64_t tokens = 0;                 // positions processed in this step
  double tokens_per_s = 0.0, elapsed_s = 0.0, eta_s = 0.0;
  std::optional<double> eval_loss;         // mean cross-entropy over the held-out loss tokens
  bool checkpointed = false;
};

// The teacher's top-k for every position of training sequence `index` (of the
// training set), in `out` (one entry per position; the pointers stay valid until the next call).
using TeacherSource = std::function<void(std::int64_t index, const TrainingExample& example, std::vector<TeacherTopK>& out)>;

struct TrainerRun {
  std::int64_t steps_done = 0;
  std::int64_t resumed_from = 0;  // the step a resume started after (0: a fresh run)
  std::optional<double> first_eval_loss, final_eval_loss;
  double final_loss = 0.0;
};

// Trains `trainable` (the adapter applied through `lora`, or the model's own weights)
// on `train`, evaluating on `held_out` (may be empty). on_step runs after every step.
TrainerRun run_training(const LlamaModel& model, const LoraAdapter* lora, Trainable& trainable,
                        const std::vector<TrainingExample>& train, const std::vector<TrainingExample>& held_out,
                        const TeacherSource& teacher, const TrainerOptions& options, ThreadPool& pool,
                        const std::function<void(const StepReport&)>& on_step);

// The mean cross-entropy per loss token of `examples` (forward only).
double evaluate_loss(TrainingPass& pass, const std::vector<TrainingExample>& examples);

// Optimizer steps a run takes: options.steps, or epochs × ceil(n_train / batch).
std::int64_t planned_steps(const TrainerOptions& options, std::int64_t n_train);

}  // namespace piquant
