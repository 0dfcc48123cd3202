#pragma once
// Size-budget mixed precision: every quantized tensor gets one of the candidate types
// so that the output stays within a size budget and the predicted loss, the sum of the
// chosen types' measured sensitivities (sensitivity.h), is least (a multiple-choice
// knapsack, knapsack.h).
//
// Sizes are exact. The file's size is data_offset (the GGUF header with the metadata and
// tokenizer, padded: gguf_export_layout) plus every tensor's bytes padded to the
// alignment, so a file budget is checked against precisely the bytes export_gguf will
// write. A bits-per-weight budget counts 8 × Σ tensor bytes / Σ elements over every
// tensor, F32 norms included, as plan_summary does.
//
// Which tensors are chosen for: those plan_quantization quantizes (plan_quantizes); the
// others stay F32. A tensor's choices are the candidates after the row-length fallback
// (recipe.h), without repeats. A tensor that a --tensor-type override matches is fixed at
// that type (after the fallback) and counts no predicted loss.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "quantize/recipe.h"
#include "quantize/sensitivity.h"

namespace piquant {

// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_0.
std::vector<GgmlType> default_budget_candidates();
// "q2_K,q4_K,q8_0" (case-insensitive, comma-separated); throws Error on an unknown type,
// a type piquant cannot both encode and decode, a repeat or an empty list.
std::vector<GgmlType> parse_budget_candidates(std::string_view list);
// A tensor's choices: each candidate after row_length_fallback, without repeats, in
// candidate order.
std::vector<GgmlType> tensor_candidate_types(const std::vector<GgmlType>& candidates, std::int64_t row_length);

struct BudgetProblem {
  std::vector<CheckpointTensor> tensors;  // every tensor of the model, in file order
  std::vector<GgmlType> candidates;
  std::vector<TensorTypeOverride> overrides;
  std::uint64_t data_offset = 0;  // gguf_export_layout(...).data_offset
  std::uint64_t alignment = 32;
};

// One tensor the planner chooses a type for, and its choices (one when fixed).
struct BudgetChoices {
  std::string tensor;
  std::vector<GgmlType> types;
  bool fixed = false;  // an override chose the type
};
// In tensor order; these (the unfixed ones) are what needs measuring. Throws Error on a
// bad override regex.
std::vector<BudgetChoices> budget_choices(const BudgetProblem& problem);

struct SizeBudget {
  enum class Unit { FileBytes, BitsPerWeight };
  Unit unit = Unit::FileBytes;
  std::uint64_t file_bytes = 0;  // Unit::FileBytes: the whole output file, at most
  double bits_per_weight = 0.0;  // Unit::BitsPerWeight: at most
};

struct BudgetPlan {
  QuantPlan plan;                     // recipe: the one given, else "mixed" (mixed_plan_file_type)
  std::vector<double> predicted_kld;  // per plan tensor: the sensitivity of its type; 0 for F32 and fixed tensors
  double predicted_kld_total = 0.0;   // Σ predicted_kld in tensor order
  std::uint64_t file_bytes = 0;       // the file export_gguf will write, exactly
  std::uint64_t tensor_bytes = 0;     // Σ tensor bytes without padding
  std::uint64_t n_elements = 0;
  double bits_per_weight = 0.0;       // 8 × tensor_bytes / n_elements
  std::uint64_t smallest_file_bytes = 0;  // every choice at its narrowest
  std::uint64_t largest_file_bytes = 0;   // every choice at its widest
  bool exact = false;                 // the knapsack's solution is optimal (knapsack.h)
};

// Chooses the types. `sensitivities` must hold every unfixed choice. recipe: gives the
// plan its name and general.file_type. Throws Error when the budget is below the
// smallest plan the candidates make, naming that smallest size.
BudgetPlan plan_for_budget(const BudgetProblem& problem, const SensitivityTable& sensitivities, const SizeBudget& budget,
                           const std::optional<QuantRecipe>& recipe = std::nullopt);

// The --dry-run text: one line per tensor (type, bytes, predicted KLD), then the totals.
std::string format_budget_plan(const BudgetPlan& plan, const SizeBudget& budget);

}  // namespace piquant
