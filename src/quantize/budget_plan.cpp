#include "quantize/budget_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <regex>

#include "core/error.h"
#include "checkpoint/row_encoder.h"
#include "quant/dequantize.h"
#include "quantize/byte_size.h"
#include "quantize/knapsack.h"

namespace piquant {
namespace {

std::uint64_t align_up(std::uint64_t v, std::uint64_t alignment) { return (v + alignment - 1) / alignment * alignment; }

std::uint64_t tensor_nbytes(const CheckpointTensor& t, GgmlType type) {
  return ggml_nbytes(type, static_cast<std::uint64_t>(t.n_elements()));
}

// The type an override fixes for this tensor, if one matches (the first that does).
std::optional<GgmlType> overridden_type(const std::string& name, const std::vector<TensorTypeOverride>& overrides,
                                        const std::vector<std::regex>& patterns) {
  for (std::size_t k = 0; k < patterns.size(); ++k) {
    if (std::regex_search(name, patterns[k])) return overrides[k].type;
  }
  return std::nullopt;
}

std::string bpw_text(double bpw) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4f", bpw);
  return text;
}

}  // namespace

std::vector<GgmlType> default_budget_candidates() {
  return {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_0};
}

std::vector<GgmlType> parse_budget_candidates(std::string_view list) {
  std::vector<GgmlType> types;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    const std::string_view name = list.substr(start, comma - start);
    const auto type = ggml_type_from_name(name);
    if (!type) throw Error("--candidates '" + std::string(list) + "': unknown type '" + std::string(name) + "'");
    if (!row_encoder_supports(*type) || !dequantize_supports(*type) || *type == GgmlType::F32) {
      throw Error("--candidates '" + std::string(list) + "': " + ggml_type_name(*type) + " is not a type to quantize to");
    }
    if (std::find(types.begin(), types.end(), *type) != types.end()) {
      throw Error("--candidates '" + std::string(list) + "': " + ggml_type_name(*type) + " is listed twice");
    }
    types.push_back(*type);
    start = comma + 1;
  }
  return types;
}

std::vector<GgmlType> tensor_candidate_types(const std::vector<GgmlType>& candidates, std::int64_t row_length) {
  std::vector<GgmlType> types;
  for (const GgmlType c : candidates) {
    const GgmlType t = row_length_fallback(c, row_length);
    if (std::find(types.begin(), types.end(), t) == types.end()) types.push_back(t);
  }
  return types;
}

std::vector<BudgetChoices> budget_choices(const BudgetProblem& problem) {
  if (problem.candidates.empty()) throw Error("size budget: no candidate types");
  std::vector<std::regex> patterns;
  for (const TensorTypeOverride& o : problem.overrides) {
    try {
      patterns.emplace_back(o.pattern);
    } catch (const std::regex_error& e) {
      throw Error("--tensor-type: bad regex '" + o.pattern + "': " + e.what());
    }
  }
  std::vector<BudgetChoices> choices;
  for (const CheckpointTensor& t : problem.tensors) {
    if (!plan_quantizes(t.name, t.shape)) continue;
    BudgetChoices c;
    c.tensor = t.name;
    if (const auto fixed = overridden_type(t.name, problem.overrides, patterns)) {
      c.types = {row_length_fallback(*fixed, t.row_length())};
      c.fixed = true;
    } else {
      c.types = tensor_candidate_types(problem.candidates, t.row_length());
    }
    choices.push_back(std::move(c));
  }
  return choices;
}

BudgetPlan plan_for_budget(const BudgetProblem& problem, const SensitivityTable& sensitivities, const SizeBudget& budget,
                           const std::optional<QuantRecipe>& recipe) {
  if (problem.alignment == 0) throw Error("size budget: alignment 0");
  const bool file_unit = budget.unit == SizeBudget::Unit::FileBytes;
  const auto cost_of = [&](const CheckpointTensor& t, GgmlType type) {
    return file_unit ? align_up(tensor_nbytes(t, type), problem.alignment) : tensor_nbytes(t, type);
  };
  const std::vector<BudgetChoices> choices = budget_choices(problem);
  std::map<std::string, const BudgetChoices*> choice_of;
  for (const BudgetChoices& c : choices) choice_of[c.tensor] = &c;

  // The knapsack's groups: one per unfixed quantized tensor; everything else is a constant.
  std::vector<std::vector<KnapsackOption>> groups;
  std::vector<const CheckpointTensor*> group_tensor;
  std::uint64_t constant = 0;          // in the budget's unit (aligned bytes for a file budget)
  std::uint64_t constant_aligned = 0;  // for the smallest and largest file sizes
  std::uint64_t smallest_aligned = 0, largest_aligned = 0;
  std::uint64_t n_elements = 0;
  for (const CheckpointTensor& t : problem.tensors) {
    n_elements += static_cast<std::uint64_t>(t.n_elements());
    const auto it = choice_of.find(t.name);
    if (it == choice_of.end() || it->second->fixed) {
      const GgmlType type = it == choice_of.end() ? GgmlType::F32 : it->second->types.front();
      constant += cost_of(t, type);
      constant_aligned += align_up(tensor_nbytes(t, type), problem.alignment);
      continue;
    }
    std::vector<KnapsackOption> options;
    std::uint64_t lo = UINT64_MAX, hi = 0;
    for (const GgmlType type : it->second->types) {
      options.push_back({cost_of(t, type), sensitivities.at(t.name, type)});
      const std::uint64_t aligned = align_up(tensor_nbytes(t, type), problem.alignment);
      lo = std::min(lo, aligned);
      hi = std::max(hi, aligned);
    }
    smallest_aligned += lo;
    largest_aligned += hi;
    groups.push_back(std::move(options));
    group_tensor.push_back(&t);
  }
  if (n_elements == 0) throw Error("size budget: the model has no weights");
  const std::uint64_t smallest_file = problem.data_offset + constant_aligned + smallest_aligned;
  const std::uint64_t minimum = constant + knapsack_min_cost(groups);  // in the budget's unit

  std::uint64_t capacity = 0;  // for the whole of the budget's unit, then less the constant
  if (file_unit) {
    if (budget.file_bytes < problem.data_offset + minimum) {
      throw Error("target size " + format_byte_size(budget.file_bytes) + " is below the smallest file these candidates make, " +
                  format_byte_size(smallest_file) + " (every tensor at its narrowest candidate)");
    }
    capacity = budget.file_bytes - problem.data_offset;
  } else {
    if (!(budget.bits_per_weight > 0) || !std::isfinite(budget.bits_per_weight)) {
      throw Error("target bits per weight " + bpw_text(budget.bits_per_weight) + " is not a positive number");
    }
    // The most tensor bytes with 8 × bytes <= bpw × elements, exactly.
    const long double limit = static_cast<long double>(budget.bits_per_weight) * n_elements / 8;
    capacity = limit >= 1.8e19L ? UINT64_MAX : static_cast<std::uint64_t>(std::floor(limit));
    while (capacity > 0 && 8.0L * capacity > static_cast<long double>(budget.bits_per_weight) * n_elements) --capacity;
    if (capacity < minimum) {
      throw Error("target bits per weight " + bpw_text(budget.bits_per_weight) +
                  " is below the smallest these candidates make, " + bpw_text(8.0 * minimum / n_elements) +
                  " (every tensor at its narrowest candidate; a file of " + format_byte_size(smallest_file) + ")");
    }
  }
  const KnapsackSolution solution = solve_knapsack(groups, capacity - constant);

  std::map<std::string, GgmlType> chosen;
  std::map<std::string, double> loss;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const std::string& name = group_tensor[g]->name;
    chosen[name] = choice_of.at(name)->types[solution.choice[g]];
    loss[name] = groups[g][solution.choice[g]].loss;
  }

  BudgetPlan out;
  out.exact = solution.exact;
  out.smallest_file_bytes = smallest_file;
  out.largest_file_bytes = problem.data_offset + constant_aligned + largest_aligned;
  out.n_elements = n_elements;
  out.file_bytes = problem.data_offset;
  for (const CheckpointTensor& t : problem.tensors) {
    PlannedTensor p{t.name, t.shape, GgmlType::F32};
    double kld = 0.0;
    const auto it = choice_of.find(t.name);
    if (it != choice_of.end() && it->second->fixed) {
      p.type = it->second->types.front();
      p.overridden = true;
    } else if (it != choice_of.end()) {
      p.type = chosen.at(t.name);
      kld = loss.at(t.name);
    }
    out.file_bytes += align_up(tensor_nbytes(t, p.type), problem.alignment);
    out.tensor_bytes += tensor_nbytes(t, p.type);
    out.predicted_kld.push_back(kld);
    out.predicted_kld_total += kld;
    out.plan.tensors.push_back(std::move(p));
  }
  out.bits_per_weight = 8.0 * static_cast<double>(out.tensor_bytes) / static_cast<double>(n_elements);
  if (recipe) {
    out.plan.recipe = *recipe;
  } else {
    out.plan.recipe = QuantRecipe{"mixed", mixed_plan_file_type(out.plan.tensors), GgmlType::F32};
  }
  // The knapsack promises this; a broken promise must not become an oversized file.
  const bool within = file_unit ? out.file_bytes <= budget.file_bytes
                                : 8.0L * out.tensor_bytes <= static_cast<long double>(budget.bits_per_weight) * n_elements;
  if (!within) throw Error("size budget: the plan came out over the budget (a bug)");
  return out;
}

std::string format_budget_plan(const BudgetPlan& plan, const SizeBudget& budget) {
  std::string out;
  char line[200];
  std::snprintf(line, sizeof line, "%-44s %-6s %12s  %s\n", "tensor", "type", "bytes", "predicted KLD");
  out += line;
  for (std::size_t i = 0; i < plan.plan.tensors.size(); ++i) {
    const PlannedTensor& t = plan.plan.tensors[i];
    std::snprintf(line, sizeof line, "%-44s %-6s %12llu  %.6g%s\n", t.name.c_str(), ggml_type_name(t.type).c_str(),
                  static_cast<unsigned long long>(t.n_bytes()), plan.predicted_kld[i],
                  t.overridden ? "  (--tensor-type)" : "");
    out += line;
  }
  if (budget.unit == SizeBudget::Unit::FileBytes) {
    out += "budget:        file of at most " + format_byte_size(budget.file_bytes) + "\n";
  } else {
    std::snprintf(line, sizeof line, "budget:        at most %.4f bits per weight\n", budget.bits_per_weight);
    out += line;
  }
  out += "file:          " + format_byte_size(plan.file_bytes) + " (candidates span " +
         format_byte_size(plan.smallest_file_bytes) + " .. " + format_byte_size(plan.largest_file_bytes) + ")\n";
  std::snprintf(line, sizeof line, "tensor data:   %llu bytes, %.4f bits per weight over %llu weights\n",
                static_cast<unsigned long long>(plan.tensor_bytes), plan.bits_per_weight,
                static_cast<unsigned long long>(plan.n_elements));
  out += line;
  std::snprintf(line, sizeof line, "predicted KLD: %.6g (sum of the chosen types' sensitivities)%s\n",
                plan.predicted_kld_total, plan.exact ? "" : " [near-optimal: sizes rounded in the search]");
  out += line;
  out += "file type:     " + llama_file_type_name(static_cast<std::uint32_t>(plan.plan.recipe.file_type)) + " (" +
         plan.plan.recipe.name + ")\n";
  const PlanSummary summary = plan_summary(plan.plan);
  for (const auto& [type, count] : summary.tensor_counts) {
    std::snprintf(line, sizeof line, "  %-5s %4lld tensors %12llu bytes\n", ggml_type_name(type).c_str(),
                  static_cast<long long>(count), static_cast<unsigned long long>(summary.bytes_by_type.at(type)));
    out += line;
  }
  return out;
}

}  // namespace piquant
