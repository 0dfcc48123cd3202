#pragma once
// Options shared by the subcommands that run a model (generate, chat): which model,
// how it is loaded, how big a context, and how to sample.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/llama_context.h"
#include "engine/llama_model.h"
#include "generate/sampler.h"

namespace piquant::cli {

// How a model is brought into memory.
struct ModelLoadArgs {
  bool no_mmap = false;          // read the file into memory instead of mapping it
  bool no_memory_check = false;  // skip the "fits in MemAvailable" check
};

struct InferenceArgs {
  std::string model;
  ModelLoadArgs load;
  std::int64_t n_ctx = 0;  // 0: the model's training context, at most kDefaultMaxContext
  std::int64_t n_batch = 512;
  unsigned threads = 0;
  std::string kv_type = "f16";
  SamplerOptions sampling;
};

inline constexpr std::int64_t kDefaultMaxContext = 4096;

// The KV cache type of a --kv-type value ("f16" or "f32", any case); throws Error otherwise.
GgmlType parse_kv_type(const std::string& name);

// -m, --ctx, --batch, --threads, --kv-type and the load options below.
void add_model_options(CLI::App& cmd, InferenceArgs& args);
// --no-mmap, --no-memory-check (for subcommands with their own model options).
void add_model_load_options(CLI::App& cmd, ModelLoadArgs& args);

// Loads a model as `args` ask. Unless args.no_memory_check, it first makes sure that
// the model and a context made with context_for(params) fit in the memory available
// (throws Error naming the sizes if not): with --no-mmap before reading any weights,
// otherwise right after the (lazy) map, so either way before anything big is allocated.
std::unique_ptr<LlamaModel> load_model(const std::string& path, const ModelLoadArgs& args,
                                       const std::function<ContextOptions(const LlamaParams&)>& context_for);
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
