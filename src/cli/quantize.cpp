// piquant quantize: a float model (GGUF or HF folder) to a llama.cpp quantization recipe.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/logger.h"
#include "core/thread_pool.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "quantize/imatrix_file.h"
#include "quantize/recipe.h"

namespace piquant::cli {
namespace {

struct QuantizeArgs {
  std::string input;
  std::string output;
  std::string recipe;
  std::string imatrix;
  std::vector<std::string> overrides;
  std::string tokenizer;
  bool pure = false;
  bool dry_run = false;
  unsigned threads = 0;
};

void run_quantize(const QuantizeArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  CheckpointOptions checkpoint_options;
  checkpoint_options.tokenizer_path = args.tokenizer;
  const auto checkpoint = open_checkpoint(args.input, checkpoint_options);
  const QuantRecipe& recipe = quant_recipe(args.recipe);
  PlanOptions plan_options;
  plan_options.pure = args.pure;
  plan_options.has_imatrix = !args.imatrix.empty();
  for (const auto& spec : args.overrides) plan_options.overrides.push_back(parse_tensor_type_override(spec));
  const QuantPlan plan = plan_quantization(recipe, checkpoint->params(), checkpoint->tensors(), plan_options);
  const PlanSummary summary = plan_summary(plan);

  if (args.dry_run) {
    for (const PlannedTensor& t : plan.tensors) {
      std::printf("%-44s %-6s%s\n", t.name.c_str(), ggml_type_name(t.type).c_str(),
                  t.fallback ? "  (row-length fallback)" : t.overridden ? "  (--tensor-type)" : "");
    }
    std::cout << format_plan_summary(plan, summary);
    return;
  }
  if (args.output.empty()) throw Error("quantize: give an output file (or --dry-run)");

  ImportanceMatrix imatrix;
  if (!args.imatrix.empty()) imatrix = read_imatrix_file(args.imatrix);

  GgufExportOptions options;
  options.type_for = [&plan](const CheckpointTensor& t) { return plan.find(t.name)->type; };
  options.file_type = recipe.file_type;
  options.n_threads = args.threads ? args.threads : ThreadPool::physical_cores();
  if (!args.imatrix.empty()) {
    options.importance = [&imatrix, &args](const CheckpointTensor& t) {
      std::vector<float> columns = imatrix.mean_squares(t.name);
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
  export_gguf(*checkpoint, args.output, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("quantize: wrote ", args.output, " (", recipe.name, ", ", summary.gib, " GiB, ", summary.bits_per_weight,
            " bits per weight) in ", seconds, " s");
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize a float GGUF or HF folder with a llama.cpp recipe (Q4_K_M, ...)");
  cmd->add_option("input", args->input, "Float model: .gguf (f32/f16/bf16) or Hugging Face folder")->required();
  cmd->add_option("output", args->output, "Output .gguf");
  cmd->add_option("recipe", args->recipe, "Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q4_K_M, Q4_K_S, Q3_K_M, Q3_K_S, Q2_K or Q4_0");
  cmd->add_option("--recipe", args->recipe, "The recipe (instead of the third positional argument)");
  cmd->add_option("--imatrix", args->imatrix, "Importance matrix (llama.cpp's imatrix file format)");
  cmd->add_option("--tensor-type", args->overrides, "REGEX=TYPE: type for tensors whose name matches (repeatable)");
  cmd->add_flag("--pure", args->pure, "Every 2-D tensor gets the recipe's base type (row-length fallbacks apply)");
  cmd->add_flag("--dry-run", args->dry_run, "Print the per-tensor plan, size and bits per weight; write nothing");
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer override (as for convert)");
  cmd->add_option("-t,--threads", args->threads, "Threads (default: one per physical core)");
  cmd->callback([args] {
    if (args->recipe.empty() && !args->output.empty() && args->dry_run) std::swap(args->recipe, args->output);
    if (args->recipe.empty()) throw Error("quantize: give a recipe (e.g. Q4_K_M)");
    run_quantize(*args);
  });
}

}  // namespace piquant::cli
