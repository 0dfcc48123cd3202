#include "prune/prune_job.h"

#include <chrono>

#include "core/error.h"
#include "eval/eval_chunks.h"

namespace piquant {

PruneDecision decide_pruning(const LlamaModel& model, const PruneSettings& settings, ThreadPool& pool) {
  const LlamaParams& params = model.params();
  WidthPlanOptions widths = settings.widths;
  if (widths.last_layer < 0) widths.last_layer = params.n_layer - 1;
  const bool needs_statistics = prune_criterion_needs_calibration(settings.criterion) || widths.bias_compensation;
  PruneDecision decision;
  std::vector<MlpLayerStatistics> statistics;
  if (needs_statistics) {
    if (settings.calibration.empty()) {
      throw Error("pruning by " + prune_criterion_name(settings.criterion) +
                  (widths.bias_compensation ? " with bias compensation" : "") + " needs calibration text (--calib)");
    }
    CalibrationOptions calibration;
    calibration.first_layer = widths.first_layer;
    calibration.last_layer = widths.last_layer;
    calibration.taylor = settings.criterion == PruneCriterion::Taylor;
    calibration.progress = settings.calibration_progress;
    const auto start = std::chrono::steady_clock::now();
    statistics = collect_mlp_statistics(model, settings.calibration, calibration, pool);
    decision.calibration_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const auto& s : settings.calibration) decision.calibration_tokens += static_cast<std::int64_t>(s.size());
  }
  decision.scores = neuron_importance(settings.criterion, model, statistics, widths.first_layer, widths.last_layer, &pool);
  decision.plan = plan_widths(params, decision.scores, settings.target, widths);

  decision.biases.resize(static_cast<std::size_t>(params.n_layer));
  if (widths.bias_compensation) {
    for (std::int64_t l = widths.first_layer; l <= widths.last_layer; ++l) {
      const auto& kept = decision.plan.kept[static_cast<std::size_t>(l)];
      if (static_cast<std::int64_t>(kept.size()) == params.n_ff[static_cast<std::size_t>(l)]) continue;
      std::vector<std::int64_t> removed;
      std::size_t k = 0;
      for (std::int64_t i = 0; i < params.n_ff[static_cast<std::size_t>(l)]; ++i) {
        if (k < kept.size() && kept[k] == i) {
          ++k;
        } else {
          removed.push_back(i);
        }
      }
      decision.biases[static_cast<std::size_t>(l)] =
          mlp_bias_compensation(model, l, statistics[static_cast<std::size_t>(l)], removed);
    }
  }
  return decision;
}

std::vector<std::vector<std::int32_t>> calibration_sequences(const Tokenizer& tokenizer, std::string_view text,
                                                             const std::string& source, std::int64_t seq_len,
                                                             std::int64_t max_tokens) {
  if (seq_len < 4) throw Error("--calib-seq must be at least 4");
  std::vector<std::int32_t> tokens = tokenize_eval_text(tokenizer, text);
  if (static_cast<std::int64_t>(tokens.size()) < seq_len) {
    throw Error(source + ": " + std::to_string(tokens.size()) + " tokens, fewer than one calibration sequence of " +
                std::to_string(seq_len));
  }
  const std::int64_t max_chunks = std::max<std::int64_t>(1, (max_tokens + seq_len - 1) / seq_len);
  const EvalChunks chunks(std::move(tokens), seq_len, max_chunks, eval_bos_id(tokenizer.vocab()));
  std::vector<std::vector<std::int32_t>> out;
  for (std::int64_t c = 0; c < chunks.n_chunks(); ++c) out.push_back(chunks.input(c));
  return out;
}

nlohmann::json pruning_report(const LlamaParams& before, const PruneSettings& settings, const PruneDecision& decision) {
  const LlamaParams& after = decision.plan.params;
  nlohmann::json layers = nlohmann::json::array();
  for (std::int64_t l = 0; l < before.n_layer; ++l) {
    const auto i = static_cast<std::size_t>(l);
    layers.push_back({{"layer", l},
                      {"width_before", before.n_ff[i]},
                      {"width_after", after.n_ff[i]},
                      {"removed_importance_share", decision.plan.removed_importance_share[i]},
                      {"ffn_down_bias", after.has_ffn_down_bias(l)}});
  }
  nlohmann::json target;
  if (settings.target.ratio) target["ratio"] = *settings.target.ratio;
  if (settings.target.params) target["params"] = *settings.target.params;
  if (settings.target.bytes) target["bytes"] = *settings.target.bytes;
  nlohmann::json sizes;
  if (settings.target.bytes_of) {  // the size the target was counted in, before and after
    sizes = {{"bytes_before", settings.target.bytes_of(before)}, {"bytes_after", settings.target.bytes_of(after)}};
  }
  return {{"criterion", prune_criterion_name(settings.criterion)},
          {"allocation", width_allocation_name(settings.widths.allocation)},
          {"layers", {decision.plan.first_layer, decision.plan.last_layer}},
          {"align", settings.widths.align},
          {"bias_compensation", settings.widths.bias_compensation},
          {"target", target},
          {"target_sizes", sizes},
          {"params_before", before.n_params()},
          {"params_after", after.n_params()},
          {"calibration_tokens", decision.calibration_tokens},
          {"calibration_seconds", decision.calibration_seconds},
          {"per_layer", layers}};
}

}  // namespace piquant
