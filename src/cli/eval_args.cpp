#include "cli/eval_args.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/logger.h"
#include "core/mapped_file.h"

namespace piquant::cli {

void add_eval_options(CLI::App& cmd, EvalArgs& args) {
  cmd.add_option("-f,--file", args.text_file, "Text to evaluate (UTF-8)")->required()->check(CLI::ExistingFile);
  cmd.add_option("-c,--ctx", args.n_ctx, "Tokens per chunk; the second half of each is scored")
      ->check(CLI::Range(std::int64_t{4}, std::int64_t{1} << 20))
      ->capture_default_str();
  cmd.add_option("--chunks", args.chunks, "Evaluate at most this many chunks (0: all)")->check(CLI::NonNegativeNumber);
  cmd.add_option("-t,--threads", args.threads, "Threads (default: one per physical core)");
  cmd.add_option("--kv-type", args.kv_type, "KV cache element type: f16 or f32")
      ->check(CLI::IsMember({"f16", "f32"}, CLI::ignore_case))
      ->capture_default_str();
  cmd.add_flag("--json", args.json, "Print the result as JSON");
  add_model_load_options(cmd, args.load);
}

void check_output_folder(const std::string& output) {
  const std::filesystem::path parent = std::filesystem::path(output).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent)) {
    throw Error(output + ": the folder " + parent.string() + " does not exist");
  }
}

std::string read_eval_text(const std::string& path) {
  const MappedFile file(path);
  if (file.size() == 0) throw Error(path + ": the text file is empty");
  return std::string(reinterpret_cast<const char*>(file.data()), file.size());
}

std::unique_ptr<LlamaContext> make_eval_context(const LlamaModel& model, const EvalArgs& args) {
  return std::make_unique<LlamaContext>(model, eval_context_options(args));
}

std::unique_ptr<LlamaModel> load_eval_model(const std::string& path, const EvalArgs& args) {
  return load_model(path, args.load, [&args](const LlamaParams&) { return eval_context_options(args); });
}

ContextOptions eval_context_options(const EvalArgs& args) {
  ContextOptions options;
  options.n_ctx = args.n_ctx;
  options.n_batch = args.n_ctx;
  options.n_threads = args.threads;
  options.kv_type = parse_kv_type(args.kv_type);
  return options;
}

void show_progress(const char* what, std::int64_t done, std::int64_t total, const char* value_name, double value) {
  if (log::level() > log::Level::Info || !::isatty(2)) return;
  std::fprintf(stderr, "\r%s: chunk %lld/%lld, %s %.6g   ", what, static_cast<long long>(done), static_cast<long long>(total),
               value_name, value);
  if (done == total) std::fprintf(stderr, "\n");
}

}  // namespace piquant::cli
