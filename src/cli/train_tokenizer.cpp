// piquant train-tokenizer: a byte-level BPE vocabulary learned from text files, written as
// a Hugging Face tokenizer.json (+ tokenizer_config.json) that `train`, `synth` and
// llama.cpp's converters read.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/logger.h"
#include "core/mapped_file.h"
#include "tokenizer/bpe_trainer.h"

namespace piquant::cli {
namespace {

struct TrainTokenizerArgs {
  std::vector<std::string> data;
  std::string output;
  std::size_t vocab_size = 4096;
  bool json = false;
};

void run_train_tokenizer(const TrainTokenizerArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  std::string text;
  for (const auto& path : args.data) {
    const MappedFile file(path);
    text.append(reinterpret_cast<const char*>(file.data()), file.size());
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
  }
  if (text.empty()) throw Error("train-tokenizer: the training text is empty");
  BpeTrainerOptions options;
  options.vocab_size = args.vocab_size;
  options.word_split = BpeWordSplit::Llama3;
  const Vocab vocab = train_byte_level_bpe(text, options);
  std::filesystem::create_directories(args.output);
  save_vocab_hf(vocab, args.output);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (args.json) {
    nlohmann::json out = {{"output", args.output}, {"vocab_size", vocab.size()}, {"merges", vocab.merges.size()},
                          {"text_bytes", text.size()}, {"seconds", seconds}};
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "wrote " << args.output << "/tokenizer.json: " << vocab.size() << " tokens, " << vocab.merges.size()
              << " merges, learned from " << text.size() << " bytes in " << seconds << " s\n";
  }
}

}  // namespace

void register_train_tokenizer(CLI::App& app) {
  auto args = std::make_shared<TrainTokenizerArgs>();
  auto* cmd = app.add_subcommand("train-tokenizer", "Learn a byte-level BPE tokenizer (Llama 3 style) from text files");
  cmd->add_option("--data", args->data, "Plain UTF-8 text files to learn from")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", args->output, "Folder to write tokenizer.json and tokenizer_config.json into")
      ->required();
  cmd->add_option("--vocab-size", args->vocab_size, "Tokens in all: 256 bytes + merges + 8 special tokens")
      ->capture_default_str()
      ->check(CLI::Range(264, 1 << 20));
  cmd->add_flag("--json", args->json, "Print the summary as JSON");
  cmd->callback([args] { run_train_tokenizer(*args); });
}

}  // namespace piquant::cli
