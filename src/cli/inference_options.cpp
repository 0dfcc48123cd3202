#include "cli/inference_options.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/logger.h"
#include "core/memory_info.h"
#include "formats/gguf.h"
#include "formats/gguf_metadata.h"

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
  add_model_load_options(cmd, args.load);
}

void add_model_load_options(CLI::App& cmd, ModelLoadArgs& args) {
  cmd.add_flag("--no-mmap", args.no_mmap,
               "Read the model file into memory with large reads instead of mapping it (GGUF only; faster from slow "
               "storage such as SD cards, but the model is not shared with other runs through the page cache)");
  cmd.add_flag("--no-memory-check", args.no_memory_check,
               "Run even when the model and its KV cache look too big for the memory available");
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

namespace {

// Throws Error when the model's weights plus a context for it do not fit in `have`.
// weight_bytes: what the weights add to memory in use.
void check_memory(const std::string& path, const LlamaParams& params, const ContextOptions& context,
                  std::uint64_t weight_bytes, const MemoryInfo& have) {
  MemoryFit need;
  need.model = path;
  need.weight_bytes = weight_bytes;
  need.kv_cache_bytes = LlamaContext::kv_cache_bytes(params, context);
  need.scratch_bytes = LlamaContext::scratch_bytes(params, context);
  check_fits_in_memory(need, have);
  log::debug("memory: ", path, " needs ", format_memory_size(need.total()), ", ", format_memory_size(have.available_bytes),
             " available");
}

std::uint64_t file_size(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(path + ": cannot stat: " + ec.message());
  return size;
}

}  // namespace

std::unique_ptr<LlamaModel> load_model(const std::string& path, const ModelLoadArgs& args,
                                       const std::function<ContextOptions(const LlamaParams&)>& context_for) {
  ModelLoadOptions options;
  options.use_mmap = !args.no_mmap;
  const std::optional<MemoryInfo> have = args.no_memory_check ? std::nullopt : read_memory_info();
  if (!have) return LlamaModel::load(path, options);

  std::error_code ec;
  if (!options.use_mmap && std::filesystem::is_regular_file(path, ec)) {
    // The copy needs the whole file in memory: check before reading gigabytes, with
    // the sizes from the header (mapped: only its pages are read).
    const LlamaParams params = read_model_params(GgufFile(path));
    check_memory(path, params, context_for(params), file_size(path), *have);
    return LlamaModel::load(path, options);
  }
  // Mapped: loading reads only the header. The weights' pages are page cache, which
  // MemAvailable counts as available whether or not they are resident now, so the
  // whole weight size must fit (counting only the pages not yet resident would count
  // the resident ones twice). On tmpfs/ramfs the file already sits in memory that
  // MemAvailable leaves out, so mapping it adds nothing.
  std::unique_ptr<LlamaModel> model = LlamaModel::load(path, options);
  const std::uint64_t weight_bytes = page_cache_is_reclaimable(path) ? model->weight_bytes() : 0;
  check_memory(path, model->params(), context_for(model->params()), weight_bytes, *have);
  return model;
}

GgmlType parse_kv_type(const std::string& name) {
  const auto type = ggml_type_from_name(name);
  if (!type || (*type != GgmlType::F16 && *type != GgmlType::F32)) throw Error("--kv-type '" + name + "': use f16 or f32");
  return *type;
}

LoadedModel load_model_and_context(const InferenceArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  const auto context_for = [&args](const LlamaParams& params) {
    ContextOptions options;
    options.n_ctx = args.n_ctx > 0 ? args.n_ctx : std::min(params.n_ctx_train, kDefaultMaxContext);
    options.n_batch = args.n_batch;
    options.n_threads = args.threads;
    options.kv_type = parse_kv_type(args.kv_type);
    return options;
  };
  LoadedModel loaded;
  loaded.model = load_model(args.model, args.load, context_for);
  const ContextOptions options = context_for(loaded.model->params());
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
