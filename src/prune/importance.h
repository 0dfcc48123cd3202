#pragma once
// How much each MLP neuron of a layer matters, by one of five criteria. Neuron i of
// layer l is row i of ffn_gate and ffn_up and column i of ffn_down; removing it removes
// h_i = silu(gate_i · x) · (up_i · x) from the sum ffn_down · h (x: the MLP's input after
// ffn_norm). Higher scores mean more important; a pruner keeps the highest. Scores are
// comparable between the layers of one model under one criterion; N below is the
// number of calibration tokens, norms over tokens are over all N of them.
//
//   magnitude   ‖gate_i‖² + ‖up_i‖² + ‖down_:,i‖² (the neuron's weights alone, no
//               calibration): the squared L2 norm of everything the neuron owns
//   wanda       Σ_j |gate_ij|·‖x_j‖ + Σ_j |up_ij|·‖x_j‖ + Σ_k |down_ki|·‖h_i‖: |W| times
//               the L2 norm over tokens of the input each weight multiplies
//   activation  Minitron: per sequence the mean over its tokens of |h_i|, then the L2
//               norm of those means over the calibration sequences (Minitron's best
//               aggregation: mean over the sequence, L2 over the batch)
//   flap        FLAP's fluctuation: Var_t(h_i) (population variance over the N tokens)
//               times ‖down_:,i‖²; its removal is compensated by a bias
//               (mlp_bias_compensation) that adds back the removed neurons' mean output
//   taylor      first order: per calibration sequence, c_s = Σ w · ∂L_s/∂w over all the
//               neuron's weights (gate row, up row, down column together), L_s the
//               next-token cross-entropy summed over the sequence's positions; the
//               score is the L2 norm of c_s over the sequences (Molchanov et al.'s
//               squared Taylor term, averaged over batches, under a square root so
//               scores stay on the scale of one c_s). c_s equals dL_s/dα for α scaling
//               the neuron's weights, and is computed from activations and their
//               gradients, never weight gradients: Σ_t gate_i·∂L/∂gate_i +
//               up_i·∂L/∂up_i + h_i·∂L/∂h_i. (The absolute value of the sum over the
//               whole set, LLM-Pruner's form, is mostly noise at a trained model's
//               minimum, where the mean gradient vanishes: on stories260K it removed
//               neurons nearly as badly as magnitude.)
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

// What the calibration pass measures at one layer's MLP: plain double sums over every
// calibration token, in token order (sequences in order, each from its first token), so
// they are exact enough for any calibration size and two sets of sums over different
// sequences add up to the sums over both.
struct MlpLayerStatistics {
  std::int64_t n_tokens = 0;     // N: every token of every sequence
  std::int64_t n_sequences = 0;
  std::vector<double> input_sq_sum;    // n_embd: Σ_t x_j², x = the MLP input (after ffn_norm)
  std::vector<double> act_sum;         // n_ff: Σ_t h_i
  std::vector<double> act_sq_sum;      // n_ff: Σ_t h_i²
  std::vector<double> act_abs_seq;     // n_ff: Σ over sequences s of (mean over s's tokens of |h_i|)²
  // n_ff, empty unless asked for: Σ over the calibration positions of
  // gate_i·∂L/∂gate_i + up_i·∂L/∂up_i + h_i·∂L/∂h_i (signed), L = the cross-entropy
  // summed over the positions (so these sums, like the others, add up over calibration sets).
  std::vector<double> taylor;
  std::vector<double> taylor_sq_seq;  // n_ff: Σ over sequences s of (s's own taylor sum)²; the score is its root
};

struct CalibrationOptions {
  std::int64_t first_layer = 0;  // layers measured: [first_layer, last_layer]; others skipped
  std::int64_t last_layer = -1;  // -1: the last layer
  bool taylor = false;           // also the backward pass and taylor sums
  // (done, total) for a progress bar: after each layer of the forward pass (layers 0 ..
  // last_layer), then with taylor after each sequence's backward; total = last_layer + 1
  // (+ the number of sequences with taylor).
  std::function<void(std::int64_t, std::int64_t)> progress;
};

// Runs the calibration sequences (token ids, each at least one token, all from position
// 0) through the model with all the pool's threads and measures the MLPs of the chosen
// layers; entries outside the range are empty (all zero / empty vectors). Throws Error
// for no sequences, an empty sequence, a token outside the vocabulary or a bad range.
//
// The statistics come from the inference forward (the products of forward_blocks.h as
// LlamaContext runs them, keys and values kept in F32): bit for bit, the sums in token
// order of what a MatmulObserver on a LlamaContext with kv_type F32 sees (ffn_gate's
// input is x, ffn_down's is h; a sequence's mean |h_i| is its sum divided by T). It runs layer by layer over all
// sequences, keeping every sequence's residual stream (N × n_embd floats), and lets each
// layer's weight pages go after it (LlamaModel::release_layer), so that a mapped 16 GB
// checkpoint needs only the residual streams and about one layer in memory. Layers
// before first_layer run without being measured; none after last_layer runs. The
// pool's size changes no bit of the result (per-feature sums run in token order).
//
// taylor: then every sequence of at least two tokens goes through the training pass
// (train/training_pass.h: float activations, every weight frozen) forward and backward,
// positions 0 .. T-2 predicting the next token; sequences of one token have no position.
// That pass reads the whole model once per sequence, so it wants the model in memory;
// its backward shows each MLP step's activations and their gradients to an observer
// (MlpBackwardObserver), and no weight gradient is ever formed. Throws Error if no
// sequence has two tokens.
std::vector<MlpLayerStatistics> collect_mlp_statistics(const LlamaModel& model,
                                                       const std::vector<std::vector<std::int32_t>>& sequences,
                                                       const CalibrationOptions& options, ThreadPool& pool);

// The score of every neuron of every layer in [first_layer, last_layer] (last_layer -1:
// the last layer; other layers: empty), as defined at the top. `statistics` may be empty
// for magnitude; otherwise it has an entry per layer, measured over the range (taylor
// sums for taylor), else Error. Weight sums run in double over the dequantized weights,
// in an order that does not depend on the pool (nullptr: this thread alone); each
// layer's pages are let go after its weights are read (LlamaModel::release_layer).
std::vector<std::vector<double>> neuron_importance(PruneCriterion criterion, const LlamaModel& model,
                                                   const std::vector<MlpLayerStatistics>& statistics,
                                                   std::int64_t first_layer, std::int64_t last_layer,
                                                   ThreadPool* pool = nullptr);

// FLAP's bias compensation for one layer: Σ over removed neurons i of mean(h_i) · ffn_down[:, i]
// (n_embd values, summed in double in ascending neuron order, mean = act_sum / n_tokens),
// so that removing a neuron whose output is constant changes nothing: the bias to add
// after the pruned layer's ffn_down (to any bias it already has). Throws Error for a
// neuron outside the layer or named twice, or statistics not measured at this layer.
std::vector<float> mlp_bias_compensation(const LlamaModel& model, std::int64_t layer,
                                         const MlpLayerStatistics& statistics,
                                         const std::vector<std::int64_t>& removed_neurons);

}  // namespace piquant
