// piquant kld: how far a model's next-token distributions are from a base model's
// (llama-perplexity --kl-divergence), with the base run alongside or saved once.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/eval_args.h"
#include "core/error.h"
#include "eval/kld.h"

namespace piquant::cli {
namespace {

struct KldArgs {
  std::string base;
  std::string model;
  std::string save_logits;
  std::string base_logits;
  EvalArgs eval;
};

void print_text(const KldResult& r) {
  std::printf("PPL(base)  = %.4f ± %.5f\n", r.ppl_base, r.ppl_base_stderr);
  std::printf("PPL(model) = %.4f ± %.5f\n", r.ppl_model, r.ppl_model_stderr);
  std::printf("ΔPPL       = %.4f   (ln(PPL(model)/PPL(base)) = %.5f ± %.5f)\n", r.delta_ppl, r.ln_ppl_ratio,
              r.ln_ppl_ratio_stderr);
  // %g: a good quantization's KLD is 1e-4 or less, which fixed decimals would flatten.
  std::printf("Mean KLD   = %.6g ± %.3g\n", r.kld_mean, r.kld_stderr);
  std::printf("Median KLD = %.6g\n", r.kld_median);
  std::printf("90%% KLD    = %.6g\n", r.kld_p90);
  std::printf("99%% KLD    = %.6g\n", r.kld_p99);
  std::printf("Max KLD    = %.6g\n", r.kld_max);
  std::printf("Same top   = %.3f ± %.3f %%\n", 100.0 * r.top1_agreement, 100.0 * r.top1_stderr);
  std::printf("%lld tokens scored in %lld chunks of %lld; %.2f s in the models\n", static_cast<long long>(r.n_scored),
              static_cast<long long>(r.n_chunks), static_cast<long long>(r.n_ctx), r.eval_seconds);
}

void run_kld(const KldArgs& args) {
  if (args.base.empty() == args.base_logits.empty()) throw Error("give the base as --base MODEL or --base-logits FILE (one of them)");
  if (!args.save_logits.empty() && args.base.empty()) throw Error("--save-logits needs --base MODEL (there is nothing to save from --base-logits)");
  const std::string text = read_eval_text(args.eval.text_file);

  std::unique_ptr<LlamaModel> base_model;
  std::unique_ptr<LlamaContext> base_context;
  std::unique_ptr<BaseLogitsFile> saved;
  KldBase base;
  if (!args.base.empty()) {
    base_model = load_eval_model(args.base, args.eval);
    base_context = make_eval_context(*base_model, args.eval);
    base.context = base_context.get();
  } else {
    saved = std::make_unique<BaseLogitsFile>(args.base_logits);
    base.saved = saved.get();
  }
  // The base compared with itself (e.g. to save its logits and perplexity) is loaded and run once.
  std::error_code same_error;
  const bool same = !args.base.empty() && std::filesystem::equivalent(args.base, args.model, same_error);
  std::unique_ptr<LlamaModel> model_holder;
  std::unique_ptr<LlamaContext> context_holder;
  if (!same) {
    model_holder = load_eval_model(args.model, args.eval);
    context_holder = make_eval_context(*model_holder, args.eval);
  }
  LlamaContext* const context = same ? base_context.get() : context_holder.get();

  KldOptions options;
  options.n_ctx = args.eval.n_ctx;
  options.max_chunks = args.eval.chunks;
  options.save_base_logits = args.save_logits;
  options.on_chunk = [](std::int64_t done, std::int64_t total, double kld) { show_progress("kld", done, total, "mean KLD", kld); };
  const KldResult r = compute_kld(base, *context, text, options);

  if (!args.eval.json) {
    print_text(r);
    if (!args.save_logits.empty()) std::printf("base distributions saved to %s\n", args.save_logits.c_str());
    return;
  }
  const nlohmann::json out = {
      {"base", args.base.empty() ? args.base_logits : args.base},
      {"model", args.model},
      {"text", args.eval.text_file},
      {"n_ctx", r.n_ctx},
      {"n_chunks", r.n_chunks},
      {"n_scored", r.n_scored},
      {"kld_mean", r.kld_mean},
      {"kld_stderr", r.kld_stderr},
      {"kld_median", r.kld_median},
      {"kld_p90", r.kld_p90},
      {"kld_p99", r.kld_p99},
      {"kld_max", r.kld_max},
      {"top1_agreement", r.top1_agreement},
      {"top1_stderr", r.top1_stderr},
      {"ppl_base", r.ppl_base},
      {"ppl_base_stderr", r.ppl_base_stderr},
      {"ppl_model", r.ppl_model},
      {"ppl_model_stderr", r.ppl_model_stderr},
      {"delta_ppl", r.delta_ppl},
      {"ln_ppl_ratio", r.ln_ppl_ratio},
      {"ln_ppl_ratio_stderr", r.ln_ppl_ratio_stderr},
      {"eval_seconds", r.eval_seconds},
      {"saved_logits", args.save_logits},
  };
  std::cout << out.dump(2) << "\n";
}

}  // namespace

void register_kld(CLI::App& app) {
  auto args = std::make_shared<KldArgs>();
  CLI::App* cmd = app.add_subcommand("kld", "KL divergence of a model from a base model (llama-perplexity --kl-divergence)");
  cmd->add_option("--base", args->base, "Base model (.gguf or Hugging Face folder), run beside the model");
  cmd->add_option("-m,--model", args->model, "Model to compare with the base")->required();
  cmd->add_option("--save-logits", args->save_logits, "Also save the base model's distributions to this file");
  cmd->add_option("--base-logits", args->base_logits, "Use distributions saved by --save-logits instead of a base model")
      ->check(CLI::ExistingFile);
  add_eval_options(*cmd, args->eval);
  cmd->callback([args] { run_kld(*args); });
}

}  // namespace piquant::cli
