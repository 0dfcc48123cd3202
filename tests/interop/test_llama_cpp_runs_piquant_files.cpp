// Acceptance: files written by `piquant convert` load and run in stock llama.cpp,
// and a second, independent GGUF reader (node-llama-cpp's) sees exactly what
// `piquant inspect` says was written.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "interop/gguf_view_comparison.h"
#include "interop/llama_cpp_runner.h"
#include "support/test_support.h"

namespace piquant::testing {
namespace {

using nlohmann::json;

void run_cli_or_throw(const std::string& args) {
  const CommandResult result = run_cli(args);
  if (result.exit_code != 0) {
    throw std::runtime_error("piquant " + args + " exited with " + std::to_string(result.exit_code) + ":\n" +
                             result.output);
  }
}

// stories260K (llama2.c checkpoint + its tokenizer) converted to GGUF in `dir`.
std::filesystem::path convert_stories(const TempDir& dir, const std::filesystem::path& checkpoint,
                                      const std::filesystem::path& tokenizer) {
  const auto out = dir / "stories260K.gguf";
  run_cli_or_throw("convert " + shell_quote(checkpoint.string()) + " --tokenizer " + shell_quote(tokenizer.string()) +
                   " -o " + shell_quote(out.string()));
  return out;
}

// A synthesized tiny model whose layers have different MLP widths (a "deci"
// model in llama.cpp's terms), converted to GGUF in `dir`.
const std::vector<std::int64_t> kMlpWidths{96, 128, 64, 160};

std::filesystem::path synth_and_convert_deci(const TempDir& dir) {
  const auto model_dir = dir / "synth";
  const auto out = dir / "deci.gguf";
  run_cli_or_throw("synth --preset tiny --mlp-widths 96,128,64,160 -o " + shell_quote(model_dir.string()));
  run_cli_or_throw("convert " + shell_quote(model_dir.string()) + " -o " + shell_quote(out.string()));
  return out;
}

TEST(LlamaCppRunsPiquantFiles, ConvertedStories260KTellsItsStory) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const TempDir dir;
  const auto gguf = convert_stories(dir, checkpoint, tokenizer);

  const auto answer = run_llama_cpp({"generate", gguf.string(), "Once upon a time", "40"});
  const auto text = answer.at("text").get<std::string>();
  // The known greedy continuation of this prompt for stories260K.
  EXPECT_NE(text.find("little girl named Lily"), std::string::npos) << text;
  EXPECT_EQ(answer.at("tokens").size(), 40u) << text;
  // llama2.c prepends BOS (id 1) to every prompt; llama.cpp must do the same from the file.
  ASSERT_FALSE(answer.at("prompt_tokens").empty());
  EXPECT_EQ(answer.at("prompt_tokens")[0], 1);
}

// The `logits` subcommand lines up with generation: at every position of
// prompt + continuation, the top logit is the token greedy decoding chose next.
TEST(LlamaCppRunsPiquantFiles, LogitsAtEveryPositionAgreeWithGreedyGeneration) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const TempDir dir;
  const auto gguf = convert_stories(dir, checkpoint, tokenizer);

  const auto generated = run_llama_cpp({"generate", gguf.string(), "Once upon a time", "12"});
  auto sequence = generated.at("prompt_tokens").get<std::vector<std::int64_t>>();
  const auto continuation = generated.at("tokens").get<std::vector<std::int64_t>>();
  ASSERT_EQ(continuation.size(), 12u);
  const std::size_t prompt_length = sequence.size();
  sequence.insert(sequence.end(), continuation.begin(), continuation.end() - 1);

  const auto answer = run_llama_cpp({"logits", gguf.string(), json(sequence).dump(), "--probabilities"});
  EXPECT_EQ(answer.at("n_vocab"), 512);
  const auto& logits = answer.at("logits");
  const auto& probabilities = answer.at("probabilities");
  ASSERT_EQ(logits.size(), sequence.size());
  ASSERT_EQ(probabilities.size(), sequence.size());
  for (std::size_t i = 0; i < continuation.size(); ++i) {
    const std::size_t position = prompt_length - 1 + i;
    EXPECT_EQ(answer.at("argmax")[position], continuation[i]) << "position " << position;
  }
  for (std::size_t position = 0; position < sequence.size(); ++position) {
    ASSERT_EQ(logits[position].size(), 512u);
    double sum = 0;
    for (const auto& p : probabilities[position]) sum += p.get<double>();
    EXPECT_NEAR(sum, 1.0, 1e-4) << "position " << position;
  }
}

TEST(LlamaCppRunsPiquantFiles, SynthesizedDeciModelLoadsAndGenerates) {
  const TempDir dir;
  const auto gguf = synth_and_convert_deci(dir);

  const auto meta = run_llama_cpp({"metadata", gguf.string()});
  EXPECT_TRUE(meta.at("llama_cpp_load_error").is_null()) << meta.at("llama_cpp_load_error");
  const auto& m = meta.at("metadata");
  EXPECT_EQ(m.at("general.architecture"), "deci");
  EXPECT_EQ(m.at("deci.feed_forward_length").get<std::vector<std::int64_t>>(), kMlpWidths);
  // As llama.cpp's own GGUF reader typed it: an array of 4 INT32.
  EXPECT_EQ(meta.at("llama_cpp_types").at("deci.feed_forward_length"), "arr[i32,4]");

  const auto answer = run_llama_cpp({"generate", gguf.string(), "Once upon a time", "8"});
  const auto tokens = answer.at("tokens").get<std::vector<std::int64_t>>();
  // Random weights may pick end-of-generation early; anything else must give 8 tokens.
  if (answer.at("stop") == "eog") {
    EXPECT_LT(tokens.size(), 8u);
  } else {
    EXPECT_EQ(tokens.size(), 8u);
  }
  const auto n_vocab = m.at("tokenizer.ggml.tokens").size();
  for (const auto token : tokens) {
    EXPECT_GE(token, 0);
    EXPECT_LT(static_cast<std::size_t>(token), n_vocab);
  }
}

TEST(LlamaCppRunsPiquantFiles, InspectOfConvertedStories260KMatchesNodeLlamaCpp) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const TempDir dir;
  const auto gguf = convert_stories(dir, checkpoint, tokenizer);
  const auto theirs = run_llama_cpp({"metadata", gguf.string()});
  const auto ours = run_cli_json("inspect " + shell_quote(gguf.string()) + " --json");
  // A real model: every tensor a llama2.c checkpoint has.
  EXPECT_GE(theirs.at("tensors").size(), 2u + 9u * 5u);
  expect_same_gguf_view(theirs, ours);
}

TEST(LlamaCppRunsPiquantFiles, InspectOfConvertedDeciModelMatchesNodeLlamaCpp) {
  const TempDir dir;
  const auto gguf = synth_and_convert_deci(dir);
  const auto theirs = run_llama_cpp({"metadata", gguf.string()});
  const auto ours = run_cli_json("inspect " + shell_quote(gguf.string()) + " --json");
  EXPECT_FALSE(theirs.at("tensors").empty());
  expect_same_gguf_view(theirs, ours);
}

}  // namespace
}  // namespace piquant::testing
