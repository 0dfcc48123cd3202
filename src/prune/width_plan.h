#pragma once
// Which MLP neurons each layer keeps, given every neuron's importance and a target.
//
// The target is a number of neurons to keep across the pruned layer range, found from
// one of: a ratio of the range's neurons to remove, a parameter count for the whole
// model, or a file size (at a float type, or at a quantization recipe's per-tensor
// types). Widths are multiples of `align` (K-quant blocks are 256 wide), never below
// `min_width`, never above the layer's width; a layer whose width is not a multiple of
// `align` may also stay whole.
//
//   uniform  every layer in the range keeps the same share of its neurons (the widest
//            widths whose total meets the target), each layer its own best neurons;
//   global   one ranking across the range: scores are divided by their layer's mean
//            (criteria are not on one scale across depth), and chunks of `align`
//            neurons, best first within each layer, go to the layer whose next chunk has
//            the highest mean normalised score until the target is met.
//
// Kept neuron indices are returned in ascending order, so pruning keeps the neurons'
// order (and a model whose removed neurons contributed nothing computes the same).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "formats/llama_params.h"

namespace piquant {

enum class WidthAllocation { Uniform, Global };
WidthAllocation parse_width_allocation(const std::string& name);  // "uniform" | "global"
std::string width_allocation_name(WidthAllocation allocation);

struct WidthTarget {
  std::optional<double> ratio;             // share of the range's neurons to remove, in [0, 1)
  std::optional<std::int64_t> params;      // parameters of the whole pruned model (at most)
  // Bytes of the pruned model's tensor data (at most), as `bytes_of` counts them. The
  // search assumes bytes grow with the widths: at a recipe's types that holds while
  // ffn_down rows stay whole blocks (widths multiples of 256 for K-quants, 32 for Q8_0);
  // other widths fall back to bigger types, as llama.cpp does.
  std::optional<std::uint64_t> bytes;
  std::function<std::uint64_t(const LlamaParams&)> bytes_of;
};

struct WidthPlanOptions {
  std::int64_t first_layer = 0;
  std::int64_t last_layer = -1;  // -1: the last layer
  WidthAllocation allocation = WidthAllocation::Uniform;
  std::int64_t align = 256;
  std::int64_t min_width = 0;    // 0: `align`
  bool bias_compensation = false;  // pruned layers gain an ffn_down bias (n_embd parameters)
};

struct WidthPlan {
  LlamaParams params;                          // the pruned model's shape
  std::vector<std::vector<std::int64_t>> kept;  // per layer, ascending; every neuron outside the range
  std::vector<double> removed_importance_share;  // per layer: removed score / total score (0 outside)
  std::int64_t first_layer = 0, last_layer = 0;
};

// Parses "4-27" or "5" into [first, last]; "" means every layer. Throws Error naming the
// spec when it is malformed or outside [0, n_layer).
std::pair<std::int64_t, std::int64_t> parse_layer_range(const std::string& spec, std::int64_t n_layer);

// Parses a parameter count: "6973296640", "6.97B", "500M", "120k" (case-insensitive).
std::int64_t parse_param_count(const std::string& spec);

// scores[l]: one importance per neuron for every layer in the range (higher = keep).
// Throws Error with the numbers when the target cannot be met within the constraints
// (e.g. it asks for fewer neurons than the minimum widths keep).
WidthPlan plan_widths(const LlamaParams& params, const std::vector<std::vector<double>>& scores,
                      const WidthTarget& target, const WidthPlanOptions& options);

}  // namespace piquant
