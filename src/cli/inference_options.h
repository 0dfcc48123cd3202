#pragma once
// Options shared by the subcommands that run a model (generate, chat): which model,
// how big a context, and how to sample.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "model/llama_context.h"
#include "model/llama_model.h"
#include "model/sampler.h"

namespace piquant::cli {

struct InferenceArgs {
  std::string model;
  std::int64_t n_ctx = 0;  // 0: the model's training context, at most kDefaultMaxContext
  std::int64_t n_batch = 512;
  unsigned threads = 0;
  std::string kv_type = "f16";
  SamplerOptions sampling;
};

inline constexpr std::int64_t kDefaultMaxContext = 4096;

void add_model_options(CLI::App& cmd, InferenceArgs& args);
void add_sampling_options(CLI::App& cmd, SamplerOptions& sampling);

// A loaded model with its context, and how long getting there took.
struct LoadedModel {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<LlamaContext> context;
  double load_seconds = 0.0;
};
LoadedModel load_model_and_context(const InferenceArgs& args);

// Writes generated text to stdout at once (flushed, so it streams through pipes too).
void write_to_stdout(std::string_view text);

}  // namespace piquant::cli
