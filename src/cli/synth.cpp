// piquant synth: a random-weight Hugging Face checkpoint of a real model's shape.
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logger.h"
#include "core/mapped_file.h"
#include "core/shared_data.h"
#include "checkpoint/synthetic.h"
#include "tokenizer/bpe_trainer.h"

namespace piquant::cli {
namespace {

struct SynthArgs {
  std::string preset;
  std::string mlp_widths;
  std::string output;
  std::string tokenizer;
  std::uint64_t seed = 1;
  unsigned threads = 0;
};

void copy_file_atomic(const std::filesystem::path& from, const std::filesystem::path& to) {
  const MappedFile in(from.string());
  AtomicFileWriter out(to.string());
  out.write(in.data(), in.size());
  out.commit();
}

void run_synth(const SynthArgs& args) {
  namespace fs = std::filesystem;
  const auto start = std::chrono::steady_clock::now();
  LlamaParams params = synth_preset(args.preset);
  apply_mlp_widths(params, args.mlp_widths);
  fs::create_directories(args.output);

  if (synth_preset_has_own_tokenizer(args.preset) && args.tokenizer.empty()) {
    BpeTrainerOptions options;
    options.vocab_size = static_cast<std::size_t>(params.n_vocab);
    const Vocab vocab = train_byte_level_bpe(builtin_training_text(), options);
    params.bos_token_id = vocab.bos_id;
    params.eos_token_ids = {vocab.eos_id};
    save_vocab_hf(vocab, args.output);
  } else {
    const std::string tokenizer =
        args.tokenizer.empty() ? find_shared_file("tokenizers/llama3/tokenizer.json").string() : args.tokenizer;
    const Vocab vocab = load_vocab_hf(tokenizer);
    if (static_cast<std::int64_t>(vocab.size()) > params.n_vocab) {
      throw Error(tokenizer + ": " + std::to_string(vocab.size()) + " tokens do not fit the preset's vocab of " +
                  std::to_string(params.n_vocab));
    }
    copy_file_atomic(tokenizer, fs::path(args.output) / "tokenizer.json");
    const fs::path config = fs::path(tokenizer).parent_path() / "tokenizer_config.json";
    if (fs::exists(config)) copy_file_atomic(config, fs::path(args.output) / "tokenizer_config.json");
  }

  SynthOptions options;
  options.seed = args.seed;
  options.threads = args.threads;
  write_synthetic_weights(params, args.output, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("synth: wrote ", args.preset, " (", static_cast<double>(params.n_params()) / 1e9, " B parameters) to ",
            args.output, " in ", seconds, " s");
}

}  // namespace

void register_synth(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd = app.add_subcommand("synth", "Write a random-weight Hugging Face checkpoint of a real model's shape");
  cmd->add_option("--preset", args->preset, "llama-3.1-8b, llama-3.2-1b or tiny")->required();
  cmd->add_option("--mlp-widths", args->mlp_widths,
                  "MLP width per layer (96,128,64,160) or per layer range (4-27:10752,0:512)");
  cmd->add_option("-o,--output", args->output, "Output folder")->required();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "tokenizer.json to ship (default: tiny trains its own; others use shared/tokenizers/llama3)");
  cmd->add_option("--seed", args->seed, "Random seed");
  cmd->add_option("-t,--threads", args->threads, "Threads (default: all cores)");
  cmd->callback([args] { run_synth(*args); });
}

}  // namespace piquant::cli
