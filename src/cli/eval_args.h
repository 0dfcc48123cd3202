#pragma once
// Options shared by the evaluation subcommands (perplexity, kld): the text, how it
// is chunked, and how each model runs.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "cli/inference_options.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"

namespace piquant::cli {

struct EvalArgs {
  std::string text_file;
  std::int64_t n_ctx = 512;
  std::int64_t chunks = 0;  // 0: all
  unsigned threads = 0;
  std::string kv_type = "f16";
  bool json = false;
  ModelLoadArgs load;
};

// -f, --ctx, --chunks, -t, --kv-type, --json, --no-mmap, --no-memory-check.
void add_eval_options(CLI::App& cmd, EvalArgs& args);

// Throws Error when the folder `output` would be written in does not exist: a long job
// (imatrix, awq) fails before its work rather than after it.
void check_output_folder(const std::string& output);

// The whole text file (UTF-8).
std::string read_eval_text(const std::string& path);

// A context of exactly args.n_ctx positions for the model.
ContextOptions eval_context_options(const EvalArgs& args);
std::unique_ptr<LlamaContext> make_eval_context(const LlamaModel& model, const EvalArgs& args);

// Loads a model to evaluate (load options and memory check as load_model).
std::unique_ptr<LlamaModel> load_eval_model(const std::string& path, const EvalArgs& args);

// Progress on stderr for people at a terminal ("perplexity: chunk 3/40, PPL 12.3456").
void show_progress(const char* what, std::int64_t done, std::int64_t total, const char* value_name, double value);

}  // namespace piquant::cli
