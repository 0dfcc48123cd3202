// piquant quantize: a float model (GGUF or HF folder) to a llama.cpp quantization recipe,
// to a replayed list of per-tensor types, or to the per-tensor types that fit a size
// budget best (measured sensitivities, quantize/budget_plan.h).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logger.h"
#include "core/thread_pool.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "quantize/budget_plan.h"
#include "quantize/budget_sensitivities.h"
#include "quantize/byte_size.h"
#include "quantize/imatrix_file.h"
#include "quantize/recipe.h"
#include "quantize/sensitivity_file.h"
#include "quantize/tensor_type_file.h"

namespace piquant::cli {
namespace {

struct QuantizeArgs {
  std::string input;
  std::string output;
  std::string recipe;
  std::string imatrix;
  std::vector<std::string> overrides;
  std::string tensor_type_file;
  std::string tokenizer;
  bool pure = false;
  bool dry_run = false;
  bool json = false;
  unsigned threads = 0;
  // Size budget.
  std::string target_size;
  double target_bpw = 0.0;
  std::string candidates;
  std::string calib;
  std::int64_t calib_ctx = 256;
  std::int64_t calib_chunks = 8;
  std::string sensitivity;
  std::string plan_out;

  bool budget() const { return !target_size.empty() || target_bpw != 0.0; }
  unsigned n_threads() const { return threads ? threads : ThreadPool::physical_cores(); }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<TensorTypeOverride> all_overrides(const QuantizeArgs& args) {
  // Command-line overrides first: the first matching one wins.
  std::vector<TensorTypeOverride> overrides;
  for (const auto& spec : args.overrides) overrides.push_back(parse_tensor_type_override(spec));
  if (!args.tensor_type_file.empty()) {
    for (auto& o : read_tensor_type_file(args.tensor_type_file)) overrides.push_back(std::move(o));
  }
  return overrides;
}

// The export options of a plan (types, file type, imatrix importance, progress).
GgufExportOptions export_options(const QuantPlan& plan, const ImportanceMatrix* imatrix, const QuantizeArgs& args) {
  GgufExportOptions options;
  options.type_for = [&plan](const CheckpointTensor& t) { return plan.find(t.name)->type; };
  options.file_type = plan.recipe.file_type;
  options.n_threads = args.n_threads();
  if (imatrix != nullptr) {
    options.importance = [imatrix, &args](const CheckpointTensor& t) {
      std::vector<float> columns = imatrix->mean_squares(t.name);
      // llama-imatrix never records the embedding (a row lookup, not a product) and
      // records the output only when asked: those fall back to the default weights quietly.
      const bool expected_missing = t.name == "token_embd.weight" || t.name == "output.weight";
      if (columns.empty() && t.shape.size() == 2) {
        if (expected_missing) {
          log::debug("quantize: ", args.imatrix, " has no entry for ", t.name);
        } else {
          log::warn("quantize: ", args.imatrix, " has no entry for ", t.name);
        }
      }
      return columns;
    };
  }
  options.progress = [](std::size_t done, std::size_t total, std::uint64_t bytes) {
    if (log::level() <= log::Level::Info && ::isatty(2)) {
      std::fprintf(stderr, "\rquantize: %zu/%zu tensors, %.2f GB written", done, total, static_cast<double>(bytes) / 1e9);
      if (done == total) std::fprintf(stderr, "\n");
    }
  };
  return options;
}

nlohmann::json plan_json(const QuantizeArgs& args, const QuantPlan& plan, std::uint64_t file_bytes,
                         const std::vector<double>* predicted) {
  const PlanSummary summary = plan_summary(plan);
  nlohmann::json tensors = nlohmann::json::array();
  for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
    const PlannedTensor& t = plan.tensors[i];
    nlohmann::json row = {{"name", t.name}, {"type", ggml_type_name(t.type)}, {"bytes", t.n_bytes()}};
    if (predicted != nullptr) row["predicted_kld"] = (*predicted)[i];
    tensors.push_back(row);
  }
  return {
      {"input", args.input},
      {"output", args.dry_run ? "" : args.output},
      {"recipe", plan.recipe.name},
      {"file_type", llama_file_type_name(static_cast<std::uint32_t>(plan.recipe.file_type))},
      {"file_bytes", file_bytes},
      {"tensor_bytes", summary.total_bytes},
      {"n_elements", summary.n_elements},
      {"bits_per_weight", summary.bits_per_weight},
      {"tensors", tensors},
  };
}

void write_plan_out(const QuantizeArgs& args, const QuantPlan& plan, const std::string& header) {
  if (args.plan_out.empty()) return;
  write_file_atomic(args.plan_out, format_tensor_type_file(plan, header));
  log::info("quantize: wrote the plan to ", args.plan_out, " (replay: --tensor-type-file ", args.plan_out, ")");
}

// ---- recipe (or replayed) plans ----

QuantPlan recipe_plan(const QuantizeArgs& args, const Checkpoint& checkpoint) {
  PlanOptions plan_options;
  plan_options.pure = args.pure;
  plan_options.has_imatrix = !args.imatrix.empty();
  plan_options.overrides = all_overrides(args);
  if (!args.recipe.empty()) {
    return plan_quantization(quant_recipe(args.recipe), checkpoint.params(), checkpoint.tensors(), plan_options);
  }
  // A --tensor-type-file alone must give every quantized tensor its type.
  plan_options.pure = true;
  QuantPlan plan = plan_quantization(QuantRecipe{"mixed", LlamaFileType::AllF32, GgmlType::Q8_0}, checkpoint.params(),
                                     checkpoint.tensors(), plan_options);
  for (const PlannedTensor& t : plan.tensors) {
    if (plan_quantizes(t.name, t.shape) && !t.overridden) {
      throw Error(args.tensor_type_file + ": no line gives " + t.name + " a type (or give a recipe for the tensors it leaves out)");
    }
  }
  plan.recipe.file_type = mixed_plan_file_type(plan.tensors);
  return plan;
}

void run_recipe(const QuantizeArgs& args, const Checkpoint& checkpoint) {
  const auto start = std::chrono::steady_clock::now();
  const QuantPlan plan = recipe_plan(args, checkpoint);
  const PlanSummary summary = plan_summary(plan);
  ImportanceMatrix imatrix;
  if (!args.imatrix.empty()) imatrix = read_imatrix_file(args.imatrix);
  const GgufExportOptions options = export_options(plan, args.imatrix.empty() ? nullptr : &imatrix, args);
  const std::uint64_t file_bytes = gguf_export_layout(checkpoint, options).file_bytes;
  write_plan_out(args, plan, "piquant quantize " + args.input + " (" + plan.recipe.name + ")");

  if (args.dry_run) {
    if (args.json) {
      std::cout << plan_json(args, plan, file_bytes, nullptr).dump(2) << "\n";
      return;
    }
    for (const PlannedTensor& t : plan.tensors) {
      std::printf("%-44s %-6s%s\n", t.name.c_str(), ggml_type_name(t.type).c_str(),
                  t.fallback ? "  (row-length fallback)" : t.overridden ? "  (--tensor-type)" : "");
    }
    std::cout << format_plan_summary(plan, summary);
    std::cout << "file: " << format_byte_size(file_bytes) << "\n";
    return;
  }
  if (args.output.empty()) throw Error("quantize: give an output file (or --dry-run)");
  export_gguf(checkpoint, args.output, options);
  log::info("quantize: wrote ", args.output, " (", plan.recipe.name, ", ", file_bytes, " bytes, ", summary.bits_per_weight,
            " bits per weight) in ", seconds_since(start), " s");
  if (args.json) std::cout << plan_json(args, plan, file_bytes, nullptr).dump(2) << "\n";
}

// ---- size budget ----

SizeBudget parse_budget(const QuantizeArgs& args) {
  if (!args.target_size.empty() && args.target_bpw != 0.0) throw Error("quantize: give --target-size or --target-bpw, not both");
  SizeBudget budget;
  if (!args.target_size.empty()) {
    budget.unit = SizeBudget::Unit::FileBytes;
    budget.file_bytes = parse_byte_size(args.target_size);
  } else {
    if (!(args.target_bpw > 0) || !std::isfinite(args.target_bpw)) {
      throw Error("--target-bpw " + std::to_string(args.target_bpw) + ": expected a positive number of bits per weight");
    }
    budget.unit = SizeBudget::Unit::BitsPerWeight;
    budget.bits_per_weight = args.target_bpw;
  }
  return budget;
}

void run_budget(const QuantizeArgs& args, const Checkpoint& checkpoint) {
  const auto start = std::chrono::steady_clock::now();
  if (args.pure) throw Error("quantize: --pure does not go with a size budget (the budget chooses every type)");
  const SizeBudget budget = parse_budget(args);
  if (args.calib_ctx < 4) throw Error("--calib-ctx " + std::to_string(args.calib_ctx) + ": at least 4 tokens");
  if (args.calib_chunks < 1) throw Error("--calib-chunks " + std::to_string(args.calib_chunks) + ": at least 1");
  if (!args.dry_run && args.output.empty()) throw Error("quantize: give an output file (or --dry-run)");
  std::optional<QuantRecipe> recipe;
  if (!args.recipe.empty()) recipe = quant_recipe(args.recipe);

  BudgetProblem problem;
  problem.tensors = checkpoint.tensors();
  problem.candidates = args.candidates.empty() ? default_budget_candidates() : parse_budget_candidates(args.candidates);
  problem.overrides = all_overrides(args);
  // The header does not depend on the types (gguf_export.h): lay it out with any plan.
  GgufExportOptions any_types;
  any_types.type_for = [](const CheckpointTensor&) { return GgmlType::F32; };
  const GgufExportLayout layout = gguf_export_layout(checkpoint, any_types);
  problem.data_offset = layout.data_offset;
  problem.alignment = layout.alignment;
  const std::vector<BudgetChoices> choices = budget_choices(problem);

  ImportanceMatrix imatrix;
  if (!args.imatrix.empty()) imatrix = read_imatrix_file(args.imatrix);
  BudgetSensitivityRequest request;
  request.model_path = args.input;
  request.imatrix_path = args.imatrix;
  request.calibration_path = args.calib;
  request.calibration_ctx = args.calib_ctx;
  request.calibration_chunks = args.calib_chunks;
  request.cache_path = args.sensitivity;
  request.n_threads = args.threads;
  const SensitivityRecord sensitivities = budget_sensitivities(request, checkpoint, choices, imatrix);
  const BudgetPlan plan = plan_for_budget(problem, sensitivities.table, budget, recipe);

  const GgufExportOptions options = export_options(plan.plan, args.imatrix.empty() ? nullptr : &imatrix, args);
  if (gguf_export_layout(checkpoint, options).file_bytes != plan.file_bytes) {
    throw Error("quantize: the planned file size differs from the layout's (a bug)");
  }
  const std::string target = budget.unit == SizeBudget::Unit::FileBytes ? "--target-size " + std::to_string(budget.file_bytes)
                                                                        : "--target-bpw " + std::to_string(budget.bits_per_weight);
  write_plan_out(args, plan.plan,
                 "piquant quantize " + args.input + " " + target + ": " + std::to_string(plan.file_bytes) +
                     " bytes, predicted KLD " + std::to_string(plan.predicted_kld_total) +
                     (args.imatrix.empty() ? "" : "\nquantized with --imatrix " + args.imatrix) +
                     (recipe ? "\nreplay with the recipe " + recipe->name : ""));

  const auto print = [&] {
    if (!args.json) {
      std::cout << format_budget_plan(plan, budget);
      return;
    }
    nlohmann::json out = plan_json(args, plan.plan, plan.file_bytes, &plan.predicted_kld);
    out["budget"] = budget.unit == SizeBudget::Unit::FileBytes ? nlohmann::json{{"file_bytes", budget.file_bytes}}
                                                              : nlohmann::json{{"bits_per_weight", budget.bits_per_weight}};
    out["predicted_kld"] = plan.predicted_kld_total;
    out["exact"] = plan.exact;
    out["smallest_file_bytes"] = plan.smallest_file_bytes;
    out["largest_file_bytes"] = plan.largest_file_bytes;
    out["sensitivity_seconds"] = sensitivities.measure_seconds;
    std::cout << out.dump(2) << "\n";
  };
  if (args.dry_run) {
    print();
    return;
  }
  export_gguf(checkpoint, args.output, options);
  log::info("quantize: wrote ", args.output, " (", plan.file_bytes, " bytes, ", plan.bits_per_weight,
            " bits per weight, predicted KLD ", plan.predicted_kld_total, ") in ", seconds_since(start), " s");
  print();
}

void run_quantize(const QuantizeArgs& args) {
  CheckpointOptions checkpoint_options;
  checkpoint_options.tokenizer_path = args.tokenizer;
  const auto checkpoint = open_checkpoint(args.input, checkpoint_options);
  if (args.budget()) {
    run_budget(args, *checkpoint);
  } else {
    if (!args.calib.empty() || !args.sensitivity.empty() || !args.candidates.empty()) {
      throw Error("quantize: --calib, --sensitivity and --candidates go with a size budget (--target-size or --target-bpw)");
    }
    if (args.recipe.empty() && args.tensor_type_file.empty()) {
      throw Error("quantize: give a recipe (e.g. Q4_K_M), a --tensor-type-file, or a size budget (--target-size)");
    }
    run_recipe(args, *checkpoint);
  }
}

bool is_recipe_name(const std::string& name) {
  for (const auto& r : quant_recipe_names()) {
    if (r.size() == name.size() && std::equal(r.begin(), r.end(), name.begin(), [](char a, char b) {
          return std::toupper(static_cast<unsigned char>(a)) == std::toupper(static_cast<unsigned char>(b));
        })) {
      return true;
    }
  }
  return false;
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Quantize a float GGUF or HF folder with a llama.cpp recipe (Q4_K_M, ...) or to a size budget");
  cmd->add_option("input", args->input, "Float model: .gguf (f32/f16/bf16) or Hugging Face folder")->required();
  cmd->add_option("output", args->output, "Output .gguf");
  cmd->add_option("recipe", args->recipe, "Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q4_K_M, Q4_K_S, Q3_K_M, Q3_K_S, Q2_K or Q4_0");
  cmd->add_option("--recipe", args->recipe, "The recipe (instead of the third positional argument)");
  cmd->add_option("--imatrix", args->imatrix, "Importance matrix (llama.cpp's imatrix file format)");
  cmd->add_option("--tensor-type", args->overrides, "REGEX=TYPE: type for tensors whose name matches (repeatable)");
  cmd->add_option("--tensor-type-file", args->tensor_type_file,
                  "File of REGEX=TYPE lines (as --plan-out writes); with no recipe it must give every quantized tensor")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--pure", args->pure, "Every 2-D tensor gets the recipe's base type (row-length fallbacks apply)");
  cmd->add_flag("--dry-run", args->dry_run, "Print the per-tensor plan, size and bits per weight; write no model");
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer override (as for convert)");
  cmd->add_option("-t,--threads", args->threads, "Threads (default: one per physical core)");
  cmd->add_flag("--json", args->json, "Print the plan and its totals as JSON");

  const char* budget = "Size budget";
  cmd->add_option("--target-size", args->target_size,
                  "Choose per-tensor types for a file of at most this size: bytes or a number with B, KB, MB, GB, KiB, MiB, GiB")
      ->group(budget);
  cmd->add_option("--target-bpw", args->target_bpw, "Choose per-tensor types for at most this many bits per weight (all tensors)")
      ->group(budget);
  cmd->add_option("--candidates", args->candidates, "Types to choose from (default q2_K,q3_K,q4_K,q5_K,q6_K,q8_0)")->group(budget);
  cmd->add_option("--calib", args->calib, "Calibration text for measuring each tensor's sensitivity (KL divergence)")
      ->check(CLI::ExistingFile)
      ->group(budget);
  cmd->add_option("--calib-ctx", args->calib_ctx, "Tokens per calibration chunk (the second half is scored)")
      ->capture_default_str()
      ->group(budget);
  cmd->add_option("--calib-chunks", args->calib_chunks, "Calibration chunks")->capture_default_str()->group(budget);
  cmd->add_option("--sensitivity", args->sensitivity,
                  "JSON cache of the sensitivities: read when it matches the model and imatrix, else measured and written")
      ->group(budget);
  cmd->add_option("--plan-out", args->plan_out, "Also write the plan as --tensor-type lines (replay: --tensor-type-file)");
  cmd->callback([args] {
    // `quantize IN --dry-run Q4_K_M`: the recipe lands in the output's place.
    if (args->recipe.empty() && args->dry_run && !args->output.empty() &&
        (is_recipe_name(args->output) || (!args->budget() && args->tensor_type_file.empty()))) {
      std::swap(args->recipe, args->output);
    }
    run_quantize(*args);
  });
}

}  // namespace piquant::cli
