// piquant awq: activation-aware channel scales searched for the quantization that will
// be written (quantize/awq.h), folded into a float model with the same function.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "checkpoint/gguf_export.h"
#include "cli/commands.h"
#include "cli/eval_args.h"
#include "core/error.h"
#include "core/logger.h"
#include "quantize/awq.h"
#include "quantize/awq_checkpoint.h"

namespace piquant::cli {
namespace {

struct AwqArgs {
  std::string model;
  std::string output;
  std::string recipe = "Q4_K_M";
  bool no_importance = false;
  std::int64_t grid = 20;
  std::int64_t error_tokens = 512;
  std::optional<float> alpha;
  EvalArgs eval;
};

void run_awq(const AwqArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  check_output_folder(args.output);
  const std::string text = read_eval_text(args.eval.text_file);
  const auto model = load_eval_model(args.model, args.eval);
  const auto context = make_eval_context(*model, args.eval);
  const EvalChunks chunks(tokenize_eval_text(model->tokenizer(), text), args.eval.n_ctx, args.eval.chunks,
                          eval_bos_id(model->vocab()));
  log::info("awq: ", chunks.n_chunks(), " chunks of ", chunks.n_ctx(), " tokens from ", args.eval.text_file,
            ", scales searched for ", args.recipe, args.no_importance ? " without" : " with", " an importance matrix");

  AwqOptions options;
  options.recipe = args.recipe;
  options.importance = !args.no_importance;
  options.grid = args.grid;
  options.error_tokens = args.error_tokens;
  options.fixed_alpha = args.alpha;
  options.progress = [](std::int64_t done, std::int64_t total) {
    if (log::level() <= log::Level::Info && ::isatty(2)) {
      std::fprintf(stderr, "\rawq: %lld/%lld groups searched", static_cast<long long>(done), static_cast<long long>(total));
      if (done == total) std::fprintf(stderr, "\n");
    } else {
      log::info("awq: group ", done, "/", total);
    }
  };
  const AwqResult result = search_awq_scales(*context, chunks, options);

  const auto base = open_checkpoint(args.model);
  const AwqScaledCheckpoint scaled(*base, result.groups);
  GgufExportOptions export_options;
  export_options.type_for = [&scaled](const CheckpointTensor& t) { return awq_output_type(scaled, t); };
  bool any_f16 = false;
  for (const CheckpointTensor& t : scaled.tensors()) any_f16 = any_f16 || awq_output_type(scaled, t) != GgmlType::F32;
  export_options.file_type = any_f16 ? LlamaFileType::MostlyF16 : LlamaFileType::AllF32;
  export_options.n_threads = context->pool().size();
  const GgufExportSummary exported = export_gguf(scaled, args.output, export_options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::int64_t scaled_groups = 0;
  double plain = 0.0, chosen = 0.0;
  for (const AwqGroup& g : result.groups) {
    scaled_groups += g.scales.empty() ? 0 : 1;
    plain += g.error_plain;
    chosen += g.error_chosen;
  }
  if (args.eval.json) {
    nlohmann::json groups = nlohmann::json::array();
    for (const AwqGroup& g : result.groups) {
      groups.push_back({{"layer", g.layer}, {"group", awq_group_name(g.kind)}, {"alpha", g.alpha},
                        {"error_plain", g.error_plain}, {"error_chosen", g.error_chosen}});
    }
    const nlohmann::json out = {
        {"model", args.model},
        {"output", args.output},
        {"calib", args.eval.text_file},
        {"recipe", args.recipe},
        {"importance", !args.no_importance},
        {"calibration_tokens", result.calibration_tokens},
        {"error_tokens", result.error_tokens},
        {"groups_scaled", scaled_groups},
        {"groups_total", result.groups.size()},
        {"error_plain", plain},
        {"error_chosen", chosen},
        {"tensor_bytes", exported.tensor_bytes},
        {"seconds", seconds},
        {"groups", groups},
    };
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("%-6s %-12s %6s %14s %14s %8s\n", "layer", "group", "alpha", "error plain", "error chosen", "change");
  for (const AwqGroup& g : result.groups) {
    std::printf("%-6lld %-12s %6.2f %14.6g %14.6g %7.1f%%\n", static_cast<long long>(g.layer),
                awq_group_name(g.kind).c_str(), g.alpha, g.error_plain, g.error_chosen,
                g.error_plain > 0 ? 100.0 * (g.error_chosen / g.error_plain - 1.0) : 0.0);
  }
  std::printf("wrote %s: %lld of %zu groups scaled, output error %.6g → %.6g (%s, %lld calibration tokens) in %.1f s\n",
              args.output.c_str(), static_cast<long long>(scaled_groups), result.groups.size(), plain, chosen,
              args.recipe.c_str(), static_cast<long long>(result.calibration_tokens), seconds);
}

}  // namespace

void register_awq(CLI::App& app) {
  auto args = std::make_shared<AwqArgs>();
  CLI::App* cmd = app.add_subcommand(
      "awq", "Activation-aware channel scales searched for a quantization recipe, folded into a float model of the same function");
  cmd->add_option("-m,--model", args->model, "Float model: a .gguf file (f32/f16/bf16) or a Hugging Face folder")->required();
  cmd->add_option("-f,--calib", args->eval.text_file, "Calibration text (UTF-8), e.g. the imatrix's")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", args->output, "Output .gguf (the scaled tensors in f32, the rest as stored)")->required();
  cmd->add_option("--for-recipe", args->recipe, "The recipe the scales are searched for (per-tensor types as quantize plans them)");
  cmd->add_flag("--no-importance", args->no_importance,
                "Search for quantize without --imatrix (default: as quantize --imatrix with an imatrix of the scaled model)");
  cmd->add_option("--grid", args->grid, "α ∈ {0, 1/N, …, (N−1)/N}")->check(CLI::Range(1, 1000));
  cmd->add_option("--error-tokens", args->error_tokens, "Calibration tokens the output error is measured on")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--alpha", args->alpha, "Every group takes this α, no search (ablations; 0 leaves the model as it is)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--ctx", args->eval.n_ctx, "Tokens per calibration chunk (BOS first)")->capture_default_str();
  cmd->add_option("--chunks", args->eval.chunks, "Calibration chunks (0: all the text holds)")->capture_default_str();
  cmd->add_option("-t,--threads", args->eval.threads, "Threads (default: one per physical core)");
  add_model_load_options(*cmd, args->eval.load);
  cmd->add_flag("--json", args->eval.json, "Print a JSON summary with every group's α and errors");
  args->eval.n_ctx = 256;
  args->eval.chunks = 16;
  cmd->callback([args] { run_awq(*args); });
}

}  // namespace piquant::cli
