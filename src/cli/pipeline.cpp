// piquant pipeline: a recipe's stages (prune → finetune → merge → imatrix → quantize →
// evaluate → bench) in a run folder, skipping what is unchanged, resuming what was killed,
// and ending with REPORT.md.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "core/logger.h"
#include "pipeline/child_process.h"
#include "pipeline/pipeline_report.h"
#include "pipeline/pipeline_runner.h"
#include "pipeline/recipe.h"

namespace piquant::cli {
namespace {

struct PipelineArgs {
  std::string recipe;
  std::string run_dir;
  std::string model;
  bool json = false;
  bool quiet = false;
  bool force = false;
  bool dry_run = false;
};

void run_pipeline_command(const PipelineArgs& args) {
  const PipelineRecipe recipe = parse_recipe(args.recipe, args.model);
  PipelineOptions options;
  options.run_dir = args.run_dir.empty() ? "runs/" + recipe.name : args.run_dir;
  // PIQUANT_EXE: the binary the stages run (a wrapper, e.g. under an emulator); default this one.
  const char* exe = std::getenv("PIQUANT_EXE");
  options.executable = exe != nullptr && *exe != '\0' ? exe : current_executable();
  options.style = args.json    ? ProgressStyle::Json
                  : args.quiet ? ProgressStyle::Quiet
                  : ::isatty(2) ? ProgressStyle::Terminal
                                : ProgressStyle::Lines;
  options.force = args.force;
  options.dry_run = args.dry_run;
  const PipelineOutcome outcome = run_pipeline(recipe, options);
  if (args.dry_run) return;
  if (args.json) {
    std::cout << nlohmann::json{{"event", "report"}, {"report_md", outcome.report_md}, {"report_json", outcome.report_json},
                                {"report", outcome.report}}
                     .dump()
              << "\n";
    return;
  }
  std::cout << "\nreport: " << outcome.report_md << "\n\n" << render_variant_table(outcome.report);
}

}  // namespace

void register_pipeline(CLI::App& app) {
  auto args = std::make_shared<PipelineArgs>();
  auto* cmd = app.add_subcommand(
      "pipeline",
      "Run a recipe (TOML): prune → finetune → merge → imatrix → quantize → evaluate → bench, with a report");
  cmd->add_option("recipe", args->recipe, "Recipe file (see examples/default.toml)")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--run-dir", args->run_dir, "Run folder (default: runs/<recipe name>)");
  cmd->add_option("-m,--model", args->model, "Input model instead of the recipe's `model` (a .gguf file or a Hugging Face folder)");
  cmd->add_flag("--json", args->json, "One JSON object per event on stderr, the report as JSON on stdout");
  cmd->add_flag("--quiet", args->quiet, "No progress lines");
  cmd->add_flag("--force", args->force, "Rerun every step, even those whose inputs and options are unchanged");
  cmd->add_flag("--dry-run", args->dry_run, "List the steps and whether each would run; run nothing");
  cmd->callback([args] { run_pipeline_command(*args); });
}

}  // namespace piquant::cli
