#pragma once
// Deciding a pruning: calibration statistics (when the criterion or the bias
// compensation needs them), every neuron's importance, the widths and kept neurons,
// and each pruned layer's ffn_down bias. Writing the result is the caller's: a
// PrunedCheckpoint over the source checkpoint streams into export_gguf or export_hf.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "engine/llama_model.h"
#include "prune/importance.h"
#include "prune/width_plan.h"

namespace piquant {

struct PruneSettings {
  PruneCriterion criterion = PruneCriterion::Flap;
  WidthTarget target;
  WidthPlanOptions widths;  // widths.bias_compensation: add the removed neurons' mean output back as a bias
  std::vector<std::vector<std::int32_t>> calibration;  // token sequences (calibration_sequences)
  std::function<void(std::int64_t, std::int64_t)> calibration_progress;
};

struct PruneDecision {
  WidthPlan plan;
  std::vector<std::vector<double>> scores;   // per layer (empty outside the range)
  std::vector<std::vector<float>> biases;    // per layer: n_embd added to ffn_down's output, or empty
  std::int64_t calibration_tokens = 0;
  double calibration_seconds = 0;
};

// Throws Error when the criterion or the bias compensation needs calibration and
// `settings.calibration` is empty.
PruneDecision decide_pruning(const LlamaModel& model, const PruneSettings& settings, ThreadPool& pool);

// Calibration text cut as llama.cpp's perplexity cuts it (eval_chunks.h): sequences of
// seq_len tokens, BOS first, at most ceil(max_tokens / seq_len) of them. Throws Error
// naming `source` when the text holds fewer than seq_len tokens.
std::vector<std::vector<std::int32_t>> calibration_sequences(const Tokenizer& tokenizer, std::string_view text,
                                                             const std::string& source, std::int64_t seq_len,
                                                             std::int64_t max_tokens);

// The JSON report: settings, widths per layer before and after, parameters before and
// after, and the importance share removed per layer.
nlohmann::json pruning_report(const LlamaParams& before, const PruneSettings& settings, const PruneDecision& decision);

}  // namespace piquant
