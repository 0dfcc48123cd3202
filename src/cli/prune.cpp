// piquant prune: remove whole MLP neurons in a layer range, by an importance criterion,
// to a ratio, a parameter count or a file size; writes a GGUF (deci when widths differ)
// or a Hugging Face folder (DeciLM layout when widths differ).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logger.h"
#include "core/memory_info.h"
#include "core/thread_pool.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "checkpoint/hf_export.h"
#include "engine/llama_model.h"
#include "prune/prune_job.h"
#include "prune/pruned_checkpoint.h"
#include "quantize/recipe.h"

namespace piquant::cli {
namespace {

struct PruneArgs {
  std::string model;
  std::string output;
  std::string layers;
  std::string criterion = "flap";
  std::string allocation = "uniform";
  double ratio = -1;
  std::string target_params;
  double target_size_gib = -1;
  std::string for_recipe;
  std::int64_t align = 256;
  std::int64_t min_width = 0;
  std::string bias = "auto";
  std::string calib;
  std::int64_t calib_tokens = 65536;
  std::int64_t calib_seq = 512;
  std::string type;  // default: f16 for a GGUF, bf16 for a folder
  std::string report;
  unsigned threads = 0;
  bool dry_run = false;
  bool json = false;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the calibration text");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void progress_line(const char* what, std::int64_t done, std::int64_t total) {
  if (log::level() <= log::Level::Info && ::isatty(2)) {
    std::fprintf(stderr, "\rprune: %s %lld/%lld", what, static_cast<long long>(done), static_cast<long long>(total));
    if (done == total) std::fprintf(stderr, "\n");
  }
}

// Bytes of a model's tensor data: every 2-D weight at `type` (norms and biases F32), or
// at the per-tensor types a quantization recipe would choose.
std::function<std::uint64_t(const LlamaParams&)> byte_counter(const std::string& recipe_name, GgmlType type) {
  if (!recipe_name.empty()) {
    const QuantRecipe recipe = quant_recipe(recipe_name);
    return [recipe](const LlamaParams& p) { return plan_summary(plan_quantization(recipe, p, llama_tensor_layout(p))).total_bytes; };
  }
  return [type](const LlamaParams& p) {
    std::uint64_t bytes = 0;
    for (const auto& t : llama_tensor_layout(p)) {
      const GgmlType stored = t.shape.size() == 2 ? type : GgmlType::F32;
      bytes += ggml_nbytes(stored, static_cast<std::uint64_t>(t.n_elements()));
    }
    return bytes;
  };
}

void run_prune(const PruneArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  const bool to_gguf = args.output.size() >= 5 && args.output.compare(args.output.size() - 5, 5, ".gguf") == 0;
  const std::string type_name = !args.type.empty() ? args.type : to_gguf ? "f16" : "bf16";
  const auto type = ggml_type_from_name(type_name);
  if (!type || (*type != GgmlType::F32 && *type != GgmlType::F16 && *type != GgmlType::BF16)) {
    throw Error("--type '" + type_name + "': prune writes f32, f16 or bf16 (quantize the pruned model afterwards)");
  }
  const auto model = LlamaModel::load(args.model);
  const auto checkpoint = open_checkpoint(args.model);
  const LlamaParams& before = model->params();

  PruneSettings settings;
  settings.criterion = parse_prune_criterion(args.criterion);
  const auto [first, last] = parse_layer_range(args.layers, before.n_layer);
  settings.widths.first_layer = first;
  settings.widths.last_layer = last;
  settings.widths.allocation = parse_width_allocation(args.allocation);
  settings.widths.align = args.align;
  settings.widths.min_width = args.min_width;
  if (args.bias != "auto" && args.bias != "on" && args.bias != "off") throw Error("--bias-compensation: auto, on or off");
  settings.widths.bias_compensation = args.bias == "on" || (args.bias == "auto" && settings.criterion == PruneCriterion::Flap);
  if (args.ratio >= 0) settings.target.ratio = args.ratio;
  if (!args.target_params.empty()) settings.target.params = parse_param_count(args.target_params);
  if (args.target_size_gib > 0) {
    settings.target.bytes = static_cast<std::uint64_t>(args.target_size_gib * 1073741824.0);
    settings.target.bytes_of = byte_counter(args.for_recipe, *type);
  } else if (!args.for_recipe.empty()) {
    throw Error("--for-recipe goes with --target-size-gib");
  }
  const int n_targets = int(settings.target.ratio.has_value()) + int(settings.target.params.has_value()) + int(settings.target.bytes.has_value());
  if (n_targets != 1) throw Error("give exactly one of --ratio, --target-params, --target-size-gib");

  const bool needs_calibration = prune_criterion_needs_calibration(settings.criterion) || settings.widths.bias_compensation;
  if (needs_calibration) {
    if (args.calib.empty()) {
      throw Error("--criterion " + args.criterion + (settings.widths.bias_compensation ? " with bias compensation" : "") +
                  " needs --calib FILE (calibration text)");
    }
    settings.calibration = calibration_sequences(model->tokenizer(), read_text(args.calib), args.calib, args.calib_seq, args.calib_tokens);
    settings.calibration_progress = [](std::int64_t done, std::int64_t total) { progress_line("calibration", done, total); };
  }
  ThreadPool pool(args.threads ? args.threads : ThreadPool::physical_cores());
  const PruneDecision decision = decide_pruning(*model, settings, pool);
  nlohmann::json report = pruning_report(before, settings, decision);
  report["model"] = args.model;

  if (!args.dry_run) {
    if (args.output.empty()) throw Error("prune: give an output file (-o) or --dry-run");
    const PrunedCheckpoint pruned(*checkpoint, decision.plan.params, decision.plan.kept, decision.biases);
    const auto progress = [](std::size_t done, std::size_t total, std::uint64_t) {
      progress_line("writing tensor", static_cast<std::int64_t>(done), static_cast<std::int64_t>(total));
    };
    report["output"] = args.output;
    if (to_gguf) {
      GgufExportOptions options;
      options.type = *type;
      options.n_threads = pool.size();
      options.progress = progress;
      const GgufExportSummary summary = export_gguf(pruned, args.output, options);
      report["architecture"] = summary.architecture;
      report["tensor_bytes"] = summary.tensor_bytes;
    } else {
      HfExportOptions options;
      options.dtype = *type == GgmlType::F32 ? SafeDtype::F32 : *type == GgmlType::F16 ? SafeDtype::F16 : SafeDtype::BF16;
      options.progress = progress;
      const HfExportSummary summary = export_hf(pruned, args.output, options);
      report["architecture"] = summary.layout == "decilm" ? "DeciLMForCausalLM" : "LlamaForCausalLM";
      report["tensor_bytes"] = summary.tensor_bytes;
    }
  }
  report["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report["peak_rss_bytes"] = read_process_memory().peak;
  if (!args.report.empty()) {
    AtomicFileWriter out(args.report);
    const std::string text = report.dump(2) + "\n";
    out.write(text.data(), text.size());
    out.commit();
  }

  if (args.json) {
    std::cout << report.dump(2) << "\n";
    return;
  }
  std::printf("%s layers %lld-%lld by %s (%s): %lld -> %lld parameters (%.2f%%)%s\n", args.dry_run ? "would prune" : "pruned",
              static_cast<long long>(first), static_cast<long long>(last), args.criterion.c_str(), args.allocation.c_str(),
              static_cast<long long>(before.n_params()), static_cast<long long>(decision.plan.params.n_params()),
              100.0 * static_cast<double>(decision.plan.params.n_params()) / static_cast<double>(before.n_params()),
              settings.widths.bias_compensation ? ", ffn_down bias compensation" : "");
  std::printf("widths:");
  for (std::int64_t l = 0; l < before.n_layer; ++l) std::printf(" %lld", static_cast<long long>(decision.plan.params.n_ff[static_cast<std::size_t>(l)]));
  std::printf("\n");
  if (!args.dry_run) std::printf("wrote %s in %.1f s\n", args.output.c_str(), report["seconds"].get<double>());
}

}  // namespace

void register_prune(CLI::App& app) {
  auto args = std::make_shared<PruneArgs>();
  CLI::App* cmd = app.add_subcommand("prune", "Remove whole MLP neurons (structured pruning) and write the smaller model");
  cmd->add_option("-m,--model", args->model, "Float model: .gguf (f32/f16/bf16) or Hugging Face folder")->required();
  cmd->add_option("-o,--output", args->output,
                  "NAME.gguf writes a GGUF (architecture deci when widths differ); any other name a Hugging Face folder "
                  "(DeciLM / nemotron-nas layout when widths differ: multiples of 256)");
  cmd->add_option("--layers", args->layers, "Layer range to prune, e.g. 4-27 (default: all)");
  cmd->add_option("--criterion", args->criterion, "Importance: magnitude, wanda, activation, flap, taylor (default flap)")
      ->check(CLI::IsMember(prune_criterion_names()));
  cmd->add_option("--allocation", args->allocation, "uniform (same share per layer) or global (one ranking; default uniform)")
      ->check(CLI::IsMember({"uniform", "global"}));
  cmd->add_option("--ratio", args->ratio, "Share of the range's MLP neurons to remove, e.g. 0.25");
  cmd->add_option("--target-params", args->target_params, "Parameters of the pruned model, e.g. 6.97B");
  cmd->add_option("--target-size-gib", args->target_size_gib, "Size of the pruned model's tensors in GiB (at --type, or --for-recipe)");
  cmd->add_option("--for-recipe", args->for_recipe, "Count --target-size-gib at this quantization recipe's types, e.g. Q4_K_M");
  cmd->add_option("--align", args->align, "Widths are multiples of this (default 256, K-quant blocks)");
  cmd->add_option("--min-width", args->min_width, "Smallest width a pruned layer may get (default: --align)");
  cmd->add_option("--bias-compensation", args->bias, "Add removed neurons' mean output as an ffn_down bias: auto (flap), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--calib", args->calib, "Calibration text file (every criterion but magnitude, and bias compensation)");
  cmd->add_option("--calib-tokens", args->calib_tokens, "Calibration tokens to use (default 65536)");
  cmd->add_option("--calib-seq", args->calib_seq, "Calibration sequence length (default 512)");
  cmd->add_option("--type", args->type, "Weight type written: f32, f16 or bf16 (default f16 for a GGUF, bf16 for a folder)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}, CLI::ignore_case));
  cmd->add_option("--report", args->report, "Write the JSON report here");
  cmd->add_option("-t,--threads", args->threads, "Threads (default: one per physical core)");
  cmd->add_flag("--dry-run", args->dry_run, "Decide and print the widths; write nothing but --report");
  cmd->add_flag("--json", args->json, "Print the report as JSON");
  cmd->callback([args] { run_prune(*args); });
}

}  // namespace piquant::cli
