// piquant merge: a base model + a LoRA adapter (llama.cpp GGUF or PEFT folder) -> one GGUF.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/logger.h"
#include "train/lora_merge.h"

namespace piquant::cli {
namespace {

struct MergeArgs {
  std::string model;
  std::string lora;
  std::string output;
  std::string type = "f16";
  std::string tokenizer;
  unsigned threads = 0;
  bool json = false;
};

void run_merge(const MergeArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  const auto type = ggml_type_from_name(args.type);
  if (!type || (*type != GgmlType::F32 && *type != GgmlType::F16 && *type != GgmlType::BF16)) {
    throw Error("--type '" + args.type + "': merge writes f32, f16 or bf16 (quantize the merged model afterwards)");
  }
  GgufExportOptions options;
  options.type = *type;
  options.n_threads = args.threads;
  options.progress = [](std::size_t done, std::size_t total, std::uint64_t bytes) {
    // A live counter for people at a terminal; logs and pipes get the summary only.
    if (log::level() <= log::Level::Info && ::isatty(2)) {
      std::fprintf(stderr, "\rmerge: %zu/%zu tensors, %.2f GB written", done, total, static_cast<double>(bytes) / 1e9);
      if (done == total) std::fprintf(stderr, "\n");
    }
  };
  CheckpointOptions checkpoint_options;
  checkpoint_options.tokenizer_path = args.tokenizer;
  const LoraMergeSummary summary = merge_lora(args.model, args.lora, args.output, options, checkpoint_options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (args.json) {
    const nlohmann::json out = {
        {"model", args.model},
        {"lora", args.lora},
        {"lora_format", summary.adapter_format},
        {"output", args.output},
        {"type", ggml_type_name(*type)},
        {"architecture", summary.exported.architecture},
        {"adapted_tensors", summary.adapted_tensors},
        {"rank", summary.rank},
        {"alpha", summary.alpha},
        {"tensor_count", summary.exported.tensor_count},
        {"tensor_bytes", summary.exported.tensor_bytes},
        {"seconds", seconds},
    };
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("wrote %s: %s adapter of rank %lld (alpha %g) merged into %zu of %llu tensors, %s, %.2f GB of tensor data in %.2f s\n",
              args.output.c_str(), summary.adapter_format == "gguf" ? "GGUF" : "PEFT", static_cast<long long>(summary.rank),
              static_cast<double>(summary.alpha), summary.adapted_tensors,
              static_cast<unsigned long long>(summary.exported.tensor_count), ggml_type_name(*type).c_str(),
              static_cast<double>(summary.exported.tensor_bytes) / 1e9, seconds);
}

}  // namespace

void register_merge(CLI::App& app) {
  auto args = std::make_shared<MergeArgs>();
  CLI::App* cmd = app.add_subcommand("merge", "Merge a LoRA adapter into its base model (W + alpha/r · B·A) and write a GGUF");
  cmd->add_option("-m,--model", args->model, "Base model: Hugging Face folder, float .gguf, or llama2.c .bin (with --tokenizer)")
      ->required();
  cmd->add_option("--lora", args->lora, "LoRA adapter: a llama.cpp GGUF adapter, or a PEFT folder (adapter_config.json + "
                                        "adapter_model.safetensors)")
      ->required();
  cmd->add_option("-o,--output", args->output, "Output .gguf file")->required();
  cmd->add_option("--type", args->type, "Weight type of the merged model: f32, f16 or bf16 (norms stay f32; default f16)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}, CLI::ignore_case));
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer file (llama2.c tokenizer.bin, or a tokenizer.json override)");
  cmd->add_option("-t,--threads", args->threads, "Threads for the merge arithmetic (default: one per physical core)");
  cmd->add_flag("--json", args->json, "Print a JSON summary");
  cmd->callback([args] { run_merge(*args); });
}

}  // namespace piquant::cli
