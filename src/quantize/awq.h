#pragma once
// Activation-aware weight scaling (AWQ), searched for the quantization that will really
// be written. A product y = W·x is unchanged in exact arithmetic when input channel j is
// divided by s_j where x is produced and column j of W multiplied by s_j; quantization
// then sees W·diag(s), whose columns of large activations keep more precision. Four places
// per layer can absorb the division (the scale groups):
//
//   attn_input   attn_norm's weight ÷ s   →  attn_q, attn_k, attn_v columns × s
//   mlp_input    ffn_norm's weight ÷ s    →  ffn_gate, ffn_up columns × s
//   mlp_down     ffn_up's rows ÷ s        →  ffn_down columns × s   (h = silu(gate)·up is linear in up)
//   attn_output  attn_v's rows ÷ s        →  attn_output columns × s, only when every query head has
//                its own value head: under GQA one value row feeds several output columns
//
// Per group, s_j = m_j^α / sqrt(max_j m_j^α · min_j m_j^α), m_j = the mean |x_j| over every
// calibration token (floored at 1e-6 so silent channels stay finite); α runs over the grid
// {0, 1/n, …, (n−1)/n}. Each α is scored by the group's output error on a sample of the
// calibration tokens: Σ over the group's weights, tokens and rows of (ŷ − y)², y = W·x in
// float (the F32 product of matmul_float.h) and ŷ what the engine computes from the quantized
// file: W·diag(s) encoded exactly as `quantize` encodes it (the recipe's type for that tensor,
// encode_rows, with the importance an imatrix of the scaled model would give, mean (x_j/s_j)²
// over every calibration token, unless asked not to), times the activations x/s through the
// engine's own matmul (activations rounded to 8 bits as at inference). α = 0 gives s = 1 and
// the plain quantization; a group keeps α = 0 unless another α has a strictly smaller error,
// so no group's measured error grows.
//
// Errors are summed in double in a fixed order (weights, tokens, rows ascending); the
// product kernels do not depend on the thread count, so the choice of α is the same for
// any pool size.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "engine/llama_context.h"
#include "eval/eval_chunks.h"

namespace piquant {

enum class AwqGroupKind { AttentionInput, MlpInput, MlpDown, AttentionOutput };

std::string awq_group_name(AwqGroupKind kind);  // "attn_input", "mlp_input", "mlp_down", "attn_output"

struct AwqGroup {
  AwqGroupKind kind = AwqGroupKind::AttentionInput;
  std::int64_t layer = 0;
  float alpha = 0.0f;          // chosen exponent; 0: nothing changes
  double error_plain = 0.0;    // the output error at α = 0
  double error_chosen = 0.0;   // at the chosen α (≤ error_plain)
  std::vector<float> scales;   // s per channel; empty when α = 0
};

struct AwqOptions {
  std::string recipe = "Q4_K_M";  // the recipe whose per-tensor types the errors are measured with
  bool importance = true;         // encode as `quantize --imatrix` will (imatrix collected on the scaled model)
  std::int64_t grid = 20;         // α ∈ {0, 1/grid, …, (grid−1)/grid}
  std::int64_t error_tokens = 512;  // sampled evenly from the calibration tokens (at most this many)
  std::optional<float> fixed_alpha;  // every group takes this α, no search (ablations, tests)
  // (groups done, groups total) after each group.
  std::function<void(std::int64_t, std::int64_t)> progress;
};

struct AwqResult {
  std::vector<AwqGroup> groups;  // layer by layer, in the order of AwqGroupKind
  std::int64_t calibration_tokens = 0;  // tokens the means came from
  std::int64_t error_tokens = 0;        // tokens the errors were measured on
};

// Runs the calibration chunks through `context` (its model must hold float weights: F32,
// F16 or BF16), then searches every group of every layer. The context's observer is
// restored to none afterwards. Throws Error for a quantized model, a recipe that does not
// exist, or a grid below 1.
AwqResult search_awq_scales(LlamaContext& context, const EvalChunks& chunks, const AwqOptions& options);

// The scale of channel j for mean absolute activations m at exponent α (the formula above).
std::vector<float> awq_channel_scales(const std::vector<double>& mean_abs, float alpha);

}  // namespace piquant
