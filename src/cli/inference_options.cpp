#include "cli/inference_options.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "core/error.h"
#include "core/logger.h"

namespace piquant::cli {

void add_model_options(CLI::App& cmd, InferenceArgs& args) {
  cmd.add_option("-m,--model", args.model, "Model: a .gguf file or a Hugging Face checkpoint folder")->required();
  cmd.add_option("-c,--ctx", args.n_ctx,
                 "Context length in tokens (default: the model's training context, at most 4096)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("-b,--batch", args.n_batch, "Prompt tokens evaluated per step")->check(CLI::PositiveNumber);
  cmd.add_option("-t,--threads", args.threads, "Threads (default: one per physical core)");
  cmd.add_option("--kv-type", args.kv_type, "KV cache element type: f16 or f32")
      ->check(CLI::IsMember({"f16", "f32"}, CLI::ignore_case));
}

void add_sampling_options(CLI::App& cmd, SamplerOptions& sampling) {
  cmd.add_option("--temp", sampling.temperature, "Temperature; 0 picks the most likely token (greedy)")
      ->capture_default_str();
  cmd.add_option("--top-k", sampling.top_k, "Keep the k most likely tokens (0: off)")->capture_default_str();
  cmd.add_option("--top-p", sampling.top_p, "Keep the most likely tokens up to this total probability (1: off)")
      ->check(CLI::Range(0.0f, 1.0f))
      ->capture_default_str();
  cmd.add_option("--min-p", sampling.min_p, "Drop tokens less likely than this times the most likely (0: off)")
      ->check(CLI::Range(0.0f, 1.0f))
      ->capture_default_str();
  cmd.add_option("--repeat-penalty", sampling.repeat_penalty, "Penalty for recently seen tokens (1: off)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--repeat-last-n", sampling.repeat_last_n, "How many recent tokens the penalty looks at")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("-s,--seed", sampling.seed, "Random seed (the same seed gives the same text)")->capture_default_str();
}

LoadedModel load_model_and_context(const InferenceArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  LoadedModel loaded;
  loaded.model = LlamaModel::load(args.model);
  ContextOptions options;
  options.n_ctx = args.n_ctx > 0 ? args.n_ctx : std::min(loaded.model->params().n_ctx_train, kDefaultMaxContext);
  options.n_batch = args.n_batch;
  options.n_threads = args.threads;
  const auto kv_type = ggml_type_from_name(args.kv_type);
  if (!kv_type) throw Error("--kv-type '" + args.kv_type + "': use f16 or f32");
  options.kv_type = *kv_type;
  loaded.context = std::make_unique<LlamaContext>(*loaded.model, options);
  loaded.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::debug("loaded ", args.model, " (", loaded.model->architecture(), ", ", loaded.model->params().n_layer,
             " layers, context ", options.n_ctx, ", KV cache ",
             static_cast<double>(loaded.context->kv_cache_bytes()) / 1e6, " MB) in ", loaded.load_seconds, " s");
  return loaded;
}

void write_to_stdout(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

}  // namespace piquant::cli
