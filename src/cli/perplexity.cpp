// piquant perplexity: llama-perplexity's measure of how well a model predicts a text.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/eval_args.h"
#include "core/logger.h"
#include "eval/perplexity.h"

namespace piquant::cli {
namespace {

struct PerplexityArgs {
  std::string model;
  EvalArgs eval;
};

void run_perplexity(const PerplexityArgs& args) {
  const std::string text = read_eval_text(args.eval.text_file);
  const auto load_start = std::chrono::steady_clock::now();
  const auto model = load_eval_model(args.model, args.eval);
  const auto context = make_eval_context(*model, args.eval);
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();

  PerplexityOptions options;
  options.n_ctx = args.eval.n_ctx;
  options.max_chunks = args.eval.chunks;
  options.on_chunk = [](std::int64_t done, std::int64_t total, double ppl) { show_progress("perplexity", done, total, "PPL", ppl); };
  const PerplexityResult r = compute_perplexity(*context, text, options);

  if (args.eval.json) {
    const nlohmann::json out = {
        {"model", args.model},          {"text", args.eval.text_file},   {"n_ctx", r.n_ctx},
        {"n_chunks", r.n_chunks},       {"n_scored", r.n_scored},        {"n_evaluated", r.n_evaluated},
        {"ppl", r.ppl},                 {"ppl_stderr", r.ppl_stderr},    {"mean_nll", r.mean_nll},
        {"nll_stderr", r.nll_stderr},   {"eval_seconds", r.eval_seconds}, {"tokens_per_second", r.tokens_per_second},
        {"load_seconds", load_seconds}, {"threads", context->pool().size()}, {"kv_type", args.eval.kv_type},
    };
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("PPL = %.4f ± %.5f\n", r.ppl, r.ppl_stderr);
  std::printf("%lld tokens scored in %lld chunks of %lld; %lld tokens evaluated in %.2f s, %.1f tokens/s (%u threads)\n",
              static_cast<long long>(r.n_scored), static_cast<long long>(r.n_chunks), static_cast<long long>(r.n_ctx),
              static_cast<long long>(r.n_evaluated), r.eval_seconds, r.tokens_per_second, context->pool().size());
  log::debug("load: ", load_seconds, " s");
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto args = std::make_shared<PerplexityArgs>();
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of a model on a text (llama-perplexity's method)");
  cmd->add_option("-m,--model", args->model, "Model: a .gguf file or a Hugging Face checkpoint folder")->required();
  add_eval_options(*cmd, args->eval);
  cmd->callback([args] { run_perplexity(*args); });
}

}  // namespace piquant::cli
