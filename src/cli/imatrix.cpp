// piquant imatrix: llama-imatrix's importance matrix (mean x^2 per input column of
// every linear weight over a calibration text), for quantize --imatrix.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/eval_args.h"
#include "core/error.h"
#include "core/logger.h"
#include "quantize/imatrix_collector.h"

namespace piquant::cli {
namespace {

struct ImatrixArgs {
  std::string model;
  std::string output;
  bool process_output = false;
  EvalArgs eval;
};

void run_imatrix(const ImatrixArgs& args) {
  check_output_folder(args.output);
  const std::string text = read_eval_text(args.eval.text_file);
  const auto model = load_eval_model(args.model, args.eval);
  const auto context = make_eval_context(*model, args.eval);
  const EvalChunks chunks(tokenize_eval_text(model->tokenizer(), text), args.eval.n_ctx, args.eval.chunks,
                          eval_bos_id(model->vocab()));
  log::info("imatrix: ", chunks.n_chunks(), " chunks of ", chunks.n_ctx(), " tokens from ", args.eval.text_file);
  if (args.process_output && model->output().data == model->token_embedding().data) {
    log::warn("imatrix: ", args.model, " ties its output to the token embedding; no output.weight entry (as llama-imatrix)");
  }

  ImatrixOptions options;
  options.process_output = args.process_output;
  options.dataset = args.eval.text_file;
  const auto start = std::chrono::steady_clock::now();
  options.on_chunk = [&start](std::int64_t done, std::int64_t total) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log::info("imatrix: chunk ", done, "/", total, " (", seconds, " s)");
  };
  const ImportanceMatrix matrix = collect_imatrix(*context, chunks, options);
  write_imatrix_file(args.output, matrix);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (args.eval.json) {
    const nlohmann::json out = {
        {"model", args.model},       {"text", args.eval.text_file}, {"output", args.output},
        {"n_ctx", chunks.n_ctx()},   {"n_chunks", matrix.chunks},   {"n_entries", matrix.entries.size()},
        {"n_evaluated", chunks.n_evaluated()}, {"eval_seconds", seconds},
    };
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("wrote %s: %zu tensors, %d chunks of %lld tokens in %.2f s\n", args.output.c_str(), matrix.entries.size(),
              matrix.chunks, static_cast<long long>(chunks.n_ctx()), seconds);
}

}  // namespace

void register_imatrix(CLI::App& app) {
  auto args = std::make_shared<ImatrixArgs>();
  CLI::App* cmd = app.add_subcommand("imatrix", "Importance matrix of a model over a calibration text (llama-imatrix's file format)");
  cmd->add_option("-m,--model", args->model, "Model: a .gguf file or a Hugging Face checkpoint folder")->required();
  add_eval_options(*cmd, args->eval);
  // Every token of a chunk counts here, not only the second half as in perplexity.
  cmd->get_option("--ctx")->description("Tokens per chunk (BOS first); every token's activations count");
  cmd->add_option("-o,--output", args->output, "Importance matrix file to write (for quantize --imatrix)")->required();
  cmd->add_flag("--process-output", args->process_output, "Also collect output.weight (unless tied to the embedding)");
  cmd->callback([args] { run_imatrix(*args); });
}

}  // namespace piquant::cli
