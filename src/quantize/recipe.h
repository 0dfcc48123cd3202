#pragma once
// Quantization recipes ("Q4_K_M", ...) and the per-tensor type plan they give a
// Llama model, following the rules llama.cpp's quantizer applies to the llama
// architecture so that a piquant file of a recipe has the same tensor types
// (and size) as llama-quantize's.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "formats/ggml_type.h"
#include "checkpoint/checkpoint.h"
#include "formats/gguf_metadata.h"
#include "formats/llama_params.h"

namespace piquant {

struct QuantRecipe {
  std::string name;           // canonical spelling: "Q4_K_M"
  LlamaFileType file_type;    // general.file_type
  GgmlType base_type;         // what most 2-D tensors get
};

// Looks a recipe up by name, case-insensitively; throws Error listing the known names.
const QuantRecipe& quant_recipe(std::string_view name);
std::vector<std::string> quant_recipe_names();

// `--tensor-type REGEX=TYPE`: tensors whose GGUF name the regex finds (ECMAScript,
// search, not full match, as llama-quantize) get TYPE. The first matching override
// wins, and the row-length fallback still applies to the type it asks for.
struct TensorTypeOverride {
  std::string pattern;
  GgmlType type;
};
// Parses "REGEX=TYPE" (split at the last '='); throws Error on a bad regex or type.
TensorTypeOverride parse_tensor_type_override(std::string_view spec);

struct PlanOptions {
  // Every 2-D tensor gets the recipe's base type (row-length fallbacks still apply).
  // Unlike llama-quantize --pure, --tensor-type overrides still apply: they are explicit.
  bool pure = false;
  // llama.cpp guards Q4_0's first ffn_down layers (Q4_1) only when an imatrix is used.
  bool has_imatrix = false;
  std::vector<TensorTypeOverride> overrides;  // applied after the rules, before the fallback
};

struct PlannedTensor {
  std::string name;
  std::vector<std::int64_t> shape;  // ggml order: shape[0] is the row length
  GgmlType type = GgmlType::F32;
  bool overridden = false;  // a --tensor-type pattern chose the type
  bool fallback = false;    // the row length forced a different type than chosen

  std::int64_t n_elements() const;
  std::uint64_t n_bytes() const;  // ggml_nbytes of the planned type
};

struct QuantPlan {
  QuantRecipe recipe;
  std::vector<PlannedTensor> tensors;  // same order as the input

  const PlannedTensor* find(std::string_view name) const;
};

// Plans a type for every tensor. Tensors are identified by their GGUF names (names
// piquant does not know get the base type if 2-D, F32 if 1-D); norms and ffn_down
// biases stay F32, whatever a --tensor-type pattern says; throws Error naming
// the tensor when its layer is past params.n_layer or a dimension is not positive.
QuantPlan plan_quantization(const QuantRecipe& recipe, const LlamaParams& params,
                            const std::vector<CheckpointTensor>& tensors, const PlanOptions& options = {});

// Whether plan_quantization gives this tensor a quantized type: at least 2-D, and not a
// norm or an ffn_down bias (those stay F32 in every plan).
bool plan_quantizes(std::string_view name, const std::vector<std::int64_t>& shape);

// The row-length fallback llama.cpp applies when `row_length` is not a whole number
// of `type`'s blocks: Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
// then F16 if even 32 does not divide the row. Returns `type` when it fits.
GgmlType row_length_fallback(GgmlType type, std::int64_t row_length);

// general.file_type for a plan that no recipe made (a size-budget plan, or one replayed
// from a --tensor-type-file alone): that of the quantized type holding the most weights
// (ties: the wider type), the K types as their "_M" recipes (Q4_K: MostlyQ4_K_M); F32
// when nothing is quantized.
LlamaFileType mixed_plan_file_type(const std::vector<PlannedTensor>& tensors);

struct PlanSummary {
  std::uint64_t total_bytes = 0;  // tensor data only, no GGUF header or padding
  std::uint64_t n_elements = 0;
  double gib = 0;               // total_bytes / 2^30
  double bits_per_weight = 0;   // 8 * total_bytes / n_elements
  std::map<GgmlType, std::int64_t> tensor_counts;
  std::map<GgmlType, std::uint64_t> bytes_by_type;
};

PlanSummary plan_summary(const QuantPlan& plan);
// A few human-readable lines for --dry-run: totals and one line per type.
std::string format_plan_summary(const QuantPlan& plan, const PlanSummary& summary);

}  // namespace piquant
