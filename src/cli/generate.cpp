// piquant generate: continue a prompt, streaming the text to stdout.
#include <cstdio>
#include <string_view>

#include "cli/commands.h"
#include "cli/inference_options.h"
#include "core/error.h"
#include "core/logger.h"
#include "core/mapped_file.h"
#include "generate/generator.h"

namespace piquant::cli {
namespace {

struct GenerateArgs {
  InferenceArgs inference;
  std::string prompt;
  std::string prompt_file;
  std::int64_t n_predict = 128;
  std::vector<std::string> stop;
  bool no_bos = false;
  bool no_echo = false;
};

// "5 tokens in 4.21 ms (1187.6 tokens/s)"
std::string describe_throughput(std::int64_t tokens, double seconds) {
  char text[128];
  const double rate = seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0;
  std::snprintf(text, sizeof text, "%lld tokens in %.2f ms (%.1f tokens/s)", static_cast<long long>(tokens),
                seconds * 1e3, rate);
  return text;
}

std::string read_prompt(const GenerateArgs& args) {
  if (!args.prompt_file.empty()) {
    if (!args.prompt.empty()) throw Error("give the prompt with -p or -f, not both");
    const MappedFile file(args.prompt_file);
    return std::string(reinterpret_cast<const char*>(file.data()), file.size());
  }
  return args.prompt;
}

void run_generate(const GenerateArgs& args) {
  const std::string prompt = read_prompt(args);
  LoadedModel loaded = load_model_and_context(args.inference);
  const Tokenizer& tokenizer = loaded.model->tokenizer();
  // Control token texts in the prompt (<|eot_id|>, ...) mean the tokens, as in llama.cpp.
  const std::vector<std::int32_t> tokens = tokenizer.encode(prompt, !args.no_bos, /*parse_special=*/true);
  if (tokens.empty()) throw Error("the prompt is empty and --no-bos leaves no token to start from");

  GenerateOptions options;
  options.max_new_tokens = args.n_predict;
  options.stop_tokens = end_of_generation_tokens(*loaded.model);
  options.stop_strings = args.stop;

  if (!args.no_echo) write_to_stdout(prompt);
  Sampler sampler(args.inference.sampling);
  const GenerateStats stats = generate(*loaded.context, sampler, tokens, options, write_to_stdout);
  write_to_stdout("\n");

  log::info("load: ", loaded.load_seconds * 1e3, " ms");
  log::info("prompt: ", describe_throughput(stats.n_prompt, stats.prompt_seconds));
  log::info("generated: ", describe_throughput(stats.n_generated, stats.decode_seconds), ", stopped by ",
            stop_reason_name(stats.stop_reason));
}

}  // namespace

void register_generate(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Continue a prompt, streaming the text to stdout");
  add_model_options(*cmd, args->inference);
  cmd->add_option("-p,--prompt", args->prompt, "Prompt text");
  cmd->add_option("-f,--file", args->prompt_file, "Read the prompt from this file")->check(CLI::ExistingFile);
  cmd->add_option("-n,--n-predict", args->n_predict, "Tokens to generate at most (-1: until the model stops)")
      ->capture_default_str();
  cmd->add_option("--stop", args->stop, "Stop before this text (repeatable)");
  cmd->add_flag("--no-bos", args->no_bos, "Do not put the BOS token in front of the prompt");
  cmd->add_flag("--no-echo", args->no_echo, "Print only the generated text, not the prompt");
  add_sampling_options(*cmd, args->inference.sampling);
  cmd->callback([args] { run_generate(*args); });
}

}  // namespace piquant::cli
