// piquant convert: HF folder, llama2.c checkpoint or GGUF -> GGUF (f32 / f16 / bf16), or
// -> a Hugging Face folder (Llama, or DeciLM when MLP widths vary).
#include <chrono>
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "core/logger.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "checkpoint/hf_export.h"

namespace piquant::cli {
namespace {

struct ConvertArgs {
  std::string input;
  std::string output;
  std::string type;  // empty: f16 for a GGUF, bf16 for a Hugging Face folder
  std::string tokenizer;
  bool decilm = false;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A live counter for people at a terminal; logs and pipes get the summary line only.
void show_progress(std::size_t done, std::size_t total, std::uint64_t bytes) {
  if (log::level() <= log::Level::Info && ::isatty(2)) {
    std::fprintf(stderr, "\rconvert: %zu/%zu tensors, %.2f GB written", done, total, static_cast<double>(bytes) / 1e9);
    if (done == total) std::fprintf(stderr, "\n");
  }
}

void run_convert(const ConvertArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  const bool to_gguf = ends_with(args.output, ".gguf");
  CheckpointOptions options;
  options.tokenizer_path = args.tokenizer;
  const std::string type_name = !args.type.empty() ? args.type : to_gguf ? "f16" : "bf16";
  const auto type = ggml_type_from_name(type_name);
  if (!type || (*type != GgmlType::F32 && *type != GgmlType::F16 && *type != GgmlType::BF16)) {
    throw Error("--type '" + type_name + "': convert writes f32, f16 or bf16 (quantized types come from `piquant quantize`)");
  }
  if (to_gguf && args.decilm) throw Error("--decilm: a GGUF output is deci by itself when MLP widths vary");
  const auto checkpoint = open_checkpoint(args.input, options);
  if (!to_gguf) {
    HfExportOptions hf;
    hf.dtype = *type == GgmlType::F32 ? SafeDtype::F32 : *type == GgmlType::F16 ? SafeDtype::F16 : SafeDtype::BF16;
    hf.decilm = args.decilm;
    if (ends_with(args.tokenizer, ".json")) hf.tokenizer_json = args.tokenizer;
    hf.progress = show_progress;
    const HfExportSummary summary = export_hf(*checkpoint, args.output, hf);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log::info("convert: wrote the Hugging Face folder ", args.output, " (",
              summary.layout == "decilm" ? "DeciLMForCausalLM" : "LlamaForCausalLM", ", ", summary.tensor_count, " tensors, ",
              static_cast<double>(summary.tensor_bytes) / 1e9, " GB of tensor data) in ", seconds, " s");
    return;
  }
  GgufExportOptions export_options;
  export_options.type = *type;
  export_options.progress = show_progress;
  const GgufExportSummary summary = export_gguf(*checkpoint, args.output, export_options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("convert: wrote ", args.output, " (architecture ", summary.architecture, ", ", summary.tensor_count,
            " tensors, ", static_cast<double>(summary.tensor_bytes) / 1e9, " GB of tensor data) in ", seconds, " s");
}

}  // namespace

void register_convert(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* cmd = app.add_subcommand(
      "convert", "Convert a Hugging Face folder, llama2.c checkpoint or GGUF to GGUF, or to a Hugging Face folder");
  cmd->add_option("input", args->input, "HF checkpoint folder, llama2.c .bin, or .gguf")->required();
  cmd->add_option("-o,--output", args->output,
                  "NAME.gguf writes a GGUF; any other name a Hugging Face folder (config.json, safetensors, tokenizer)")
      ->required();
  cmd->add_option("--type", args->type,
                  "Weight type: f32, f16 or bf16 (GGUF: default f16, norms and biases stay f32; folder: default bf16, "
                  "every tensor)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}, CLI::ignore_case));
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer file (llama2.c tokenizer.bin, or a tokenizer.json override)");
  cmd->add_flag("--decilm", args->decilm,
                "Folder output: Nvidia's DeciLM layout (block_configs) even when every layer has the same MLP width");
  cmd->callback([args] { run_convert(*args); });
}

}  // namespace piquant::cli
