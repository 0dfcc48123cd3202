#pragma once
// How much each MLP neuron of a layer matters, by one of five criteria. Neuron i of
// layer l is row i of ffn_gate and ffn_up and column i of ffn_down; removing it removes
// h_i = silu(gate_i(x)) · up_i(x) from the sum ffn_down · h. Higher scores mean more
// important; a pruner keeps the highest.
//
//   magnitude   the neuron's weights alone (no calibration)
//   wanda       |W| times the norm of the input each weight multiplies, summed over the
//               neuron's weights (gate and up rows: the MLP input x; down column: h_i)
//   activation  Minitron: per sequence the mean |h_i| over its tokens, aggregated over
//               the calibration sequences
//   flap        the variance of h_i over the calibration tokens times the squared norm
//               of ffn_down's column i; its removal is compensated by a bias
//               (mlp_bias_compensation) that adds back the removed neurons' mean output
//   taylor      first order: |Σ w · ∂L/∂w| over the neuron's weights, the gradients of
//               next-token cross-entropy on the calibration sequences
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "engine/llama_model.h"

namespace piquant {

enum class PruneCriterion { Magnitude, Wanda, Activation, Flap, Taylor };

// "magnitude", "wanda", "activation", "flap", "taylor"; throws Error listing them.
PruneCriterion parse_prune_criterion(const std::string& name);
std::string prune_criterion_name(PruneCriterion criterion);
std::vector<std::string> prune_criterion_names();
bool prune_criterion_needs_calibration(PruneCriterion criterion);  // all but magnitude

// What the calibration pass measures at one layer's MLP, as double sums over every
// calibration token (so sums are exact enough for any calibration size).
struct MlpLayerStatistics {
  std::int64_t n_tokens = 0;
  std::int64_t n_sequences = 0;
  std::vector<double> input_sq_sum;    // n_embd: Σ_t x_j², x = the MLP input (after ffn_norm)
  std::vector<double> act_sum;         // n_ff: Σ_t h_i
  std::vector<double> act_sq_sum;      // n_ff: Σ_t h_i²
  std::vector<double> act_abs_seq;     // n_ff: Minitron's aggregate over sequences of mean_t |h_i|
  std::vector<double> taylor;          // n_ff: taylor scores; empty unless asked for
};

struct CalibrationOptions {
  std::int64_t first_layer = 0;  // layers measured: [first_layer, last_layer]; others skipped
  std::int64_t last_layer = -1;  // -1: the last layer
  bool taylor = false;           // also the backward pass and taylor scores
  // After each layer (or step): (done, total) for a progress bar.
  std::function<void(std::int64_t, std::int64_t)> progress;
};

// Runs the calibration sequences through the model (all threads) and measures the MLPs
// of the chosen layers; entries outside the range are empty. Layer by layer over all
// sequences, letting each layer's weight pages go after it, so that a mapped 16 GB
// checkpoint needs only the residual streams and one layer in memory.
std::vector<MlpLayerStatistics> collect_mlp_statistics(const LlamaModel& model,
                                                       const std::vector<std::vector<std::int32_t>>& sequences,
                                                       const CalibrationOptions& options, ThreadPool& pool);

// The score of every neuron of every layer in [first_layer, last_layer] (other layers:
// empty). `statistics` may be empty for magnitude.
std::vector<std::vector<double>> neuron_importance(PruneCriterion criterion, const LlamaModel& model,
                                                   const std::vector<MlpLayerStatistics>& statistics,
                                                   std::int64_t first_layer, std::int64_t last_layer);

// FLAP's bias compensation for one layer: Σ over removed neurons i of mean(h_i) · ffn_down[:, i]
// (n_embd values), so that removing a neuron whose output is constant changes nothing.
std::vector<float> mlp_bias_compensation(const LlamaModel& model, std::int64_t layer,
                                         const MlpLayerStatistics& statistics,
                                         const std::vector<std::int64_t>& removed_neurons);

}  // namespace piquant
