// piquant convert: HF folder, llama2.c checkpoint or GGUF -> GGUF (f32 / f16 / bf16).
#include <chrono>
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "core/logger.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"

namespace piquant::cli {
namespace {

struct ConvertArgs {
  std::string input;
  std::string output;
  std::string type = "f16";
  std::string tokenizer;
};

void run_convert(const ConvertArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  CheckpointOptions options;
  options.tokenizer_path = args.tokenizer;
  const auto checkpoint = open_checkpoint(args.input, options);
  GgufExportOptions export_options;
  const auto type = ggml_type_from_name(args.type);
  if (!type || (*type != GgmlType::F32 && *type != GgmlType::F16 && *type != GgmlType::BF16)) {
    throw Error("--type '" + args.type + "': convert writes f32, f16 or bf16 (quantized types come from `piquant quantize`)");
  }
  export_options.type = *type;
  export_options.progress = [](std::size_t done, std::size_t total, std::uint64_t bytes) {
    // A live counter for people at a terminal; logs and pipes get the summary line only.
    if (log::level() <= log::Level::Info && ::isatty(2)) {
      std::fprintf(stderr, "\rconvert: %zu/%zu tensors, %.2f GB written", done, total, static_cast<double>(bytes) / 1e9);
      if (done == total) std::fprintf(stderr, "\n");
    }
  };
  const GgufExportSummary summary = export_gguf(*checkpoint, args.output, export_options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("convert: wrote ", args.output, " (architecture ", summary.architecture, ", ", summary.tensor_count,
            " tensors, ", static_cast<double>(summary.tensor_bytes) / 1e9, " GB of tensor data) in ", seconds, " s");
}

}  // namespace

void register_convert(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a Hugging Face folder, llama2.c checkpoint or GGUF to GGUF");
  cmd->add_option("input", args->input, "HF checkpoint folder, llama2.c .bin, or .gguf")->required();
  cmd->add_option("-o,--output", args->output, "Output .gguf file")->required();
  cmd->add_option("--type", args->type, "Weight type: f32, f16 or bf16 (norms stay f32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}, CLI::ignore_case));
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer file (llama2.c tokenizer.bin, or a tokenizer.json override)");
  cmd->callback([args] { run_convert(*args); });
}

}  // namespace piquant::cli
