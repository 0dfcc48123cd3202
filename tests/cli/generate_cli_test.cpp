// piquant generate and chat end to end, on models that piquant itself converted.
#include <gtest/gtest.h>

#include <regex>

#include "support/test_support.h"

namespace piquant {
namespace {

// stories260K converted by the CLI (default f16), once per test program.
std::filesystem::path stories_gguf(const testing::TempDir& dir) {
  const auto gguf = dir / "stories260K.gguf";
  if (!std::filesystem::exists(gguf)) {
    const auto result = testing::run_cli("convert " + (testing::shared_dir() / "models/stories260K/stories260K.bin").string() +
                                         " --tokenizer " + (testing::shared_dir() / "models/stories260K/tok512.bin").string() +
                                         " -o " + gguf.string());
    EXPECT_EQ(result.exit_code, 0) << result.output;
  }
  return gguf;
}

// stdout only: -q keeps the timing lines (which differ from run to run) off stderr.
std::string generated_text(const testing::TempDir& dir, const std::string& args) {
  const auto out = dir / "stdout.txt";
  const auto result = testing::run_cli("-q generate " + args + " > " + out.string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return testing::read_file(out);
}

TEST(GenerateCli, GreedyStoryAndStats) {
  PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  static testing::TempDir dir;
  const auto model = stories_gguf(dir);
  // What stock llama.cpp writes for this prompt at temperature 0.
  const auto result = testing::run_cli("generate -m " + model.string() + " --temp 0 -n 40 -p \"Once upon a time\"");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("Once upon a time, there was a little girl named Lily"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("load: "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("prompt: 5 tokens in "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("generated: 40 tokens in "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("tokens/s"), std::string::npos) << result.output;

  // The prompt from a file, without echo: just the continuation.
  testing::write_file(dir / "prompt.txt", "Once upon a time");
  const std::string from_file =
      generated_text(dir, "-m " + model.string() + " --temp 0 -n 40 -f " + (dir / "prompt.txt").string() + " --no-echo");
  EXPECT_TRUE(from_file.starts_with(", there was a little girl named Lily")) << from_file;
  // A stop string ends the text just before it.
  const std::string stopped =
      generated_text(dir, "-m " + model.string() + " --temp 0 -n 40 -p \"Once upon a time\" --stop Lily");
  EXPECT_EQ(stopped, "Once upon a time, there was a little girl named \n");
}

TEST(GenerateCli, SameSeedSameText) {
  PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  static testing::TempDir dir;
  const auto model = stories_gguf(dir);
  const std::string args = "-m " + model.string() + " -n 60 -p \"Once upon a time\" --temp 1.0 ";
  const std::string unfiltered = args + "--top-k 0 --top-p 1 --min-p 0 ";
  const std::string a = generated_text(dir, unfiltered + "--seed 5");
  EXPECT_EQ(generated_text(dir, unfiltered + "--seed 5"), a);
  EXPECT_NE(generated_text(dir, unfiltered + "--seed 6"), a);
  EXPECT_GT(a.size(), 100u) << a;
  // Filters, penalty and an f32 cache are accepted and still deterministic.
  const std::string filtered = args + "--seed 5 --top-k 20 --top-p 0.9 --min-p 0.05 --repeat-penalty 1.1 "
                                      "--repeat-last-n 32 --kv-type f32 --ctx 128";
  EXPECT_EQ(generated_text(dir, filtered), generated_text(dir, filtered));
}

TEST(GenerateCli, BadArgumentsAreClearErrors) {
  testing::TempDir dir;
  auto result = testing::run_cli("generate -m " + (dir / "missing.gguf").string() + " -p hi");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("missing.gguf"), std::string::npos) << result.output;
  testing::write_file(dir / "p.txt", "hi");
  result = testing::run_cli("generate -m x.gguf -p hi -f " + (dir / "p.txt").string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("not both"), std::string::npos) << result.output;
  result = testing::run_cli("generate -m x.gguf -p hi --kv-type q4");
  EXPECT_NE(result.exit_code, 0);
  result = testing::run_cli("chat --system hi");
  EXPECT_NE(result.exit_code, 0);
}

// "debug: chat: N prompt tokens ..." per turn, from -v.
std::vector<int> prompt_tokens_per_turn(const std::string& output) {
  std::vector<int> counts;
  const std::regex line("chat: ([0-9]+) prompt tokens");
  for (auto it = std::sregex_iterator(output.begin(), output.end(), line); it != std::sregex_iterator(); ++it) {
    counts.push_back(std::stoi((*it)[1]));
  }
  return counts;
}

// A random-weight tiny model (Llama 3 special tokens, its own small BPE vocab): "hf"
// and "tiny.gguf" in `dir`.
void make_tiny_model(const testing::TempDir& dir) {
  auto result = testing::run_cli("synth --preset tiny -o " + (dir / "hf").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = testing::run_cli("convert " + (dir / "hf").string() + " -o " + (dir / "tiny.gguf").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

TEST(ChatCli, TwoTurnsFromPipedStdinKeepTheConversationInTheCache) {
  testing::TempDir dir;
  make_tiny_model(dir);
  testing::write_file(dir / "input.txt", "Hello there\n\nHow are you?\n");

  const int n_reply = 12;
  auto result = testing::run_cli("-v chat -m " + (dir / "tiny.gguf").string() + " -n " + std::to_string(n_reply) +
                            " --system \"Be brief.\" --seed 3 < " + (dir / "input.txt").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("llama3 format"), std::string::npos) << result.output;
  const auto counts = prompt_tokens_per_turn(result.output);
  ASSERT_EQ(counts.size(), 2u) << result.output;  // the blank line is no turn
  // Turn 1: <|begin_of_text|> + system header (4) + "Be brief." + <|eot_id|> + user header (4) + text
  // + <|eot_id|> + assistant header (4): at least 15 tokens. Turn 2 evaluates only its own
  // tokens: far fewer than the whole conversation again.
  EXPECT_GE(counts[0], 15);
  EXPECT_LT(counts[1], counts[0] + n_reply) << result.output;
  EXPECT_GE(counts[1], 2 + 9);  // last reply token + <|eot_id|> + user turn + assistant header

  // Also from the Hugging Face folder directly, and with generate.
  result = testing::run_cli("chat -m " + (dir / "hf").string() + " -n 4 < " + (dir / "input.txt").string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  result = testing::run_cli("generate -m " + (dir / "hf").string() + " -n 4 -p hello");
  EXPECT_EQ(result.exit_code, 0) << result.output;
}

TEST(ChatCli, AFullContextStartsOver) {
  testing::TempDir dir;
  make_tiny_model(dir);
  // Turn 1 takes about 23 + 30 positions of 64, so turn 2 does not fit; the long
  // message cannot fit even in an empty context.
  testing::write_file(dir / "input.txt", "Hello there\nHow are you?\n" + std::string(400, 'x') + " y z\nBye\n");
  const auto result = testing::run_cli("-v chat -m " + (dir / "tiny.gguf").string() + " -n 30 --ctx 64 < " +
                                       (dir / "input.txt").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("starting over"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("was skipped"), std::string::npos) << result.output;
  EXPECT_EQ(prompt_tokens_per_turn(result.output).size(), 3u) << result.output;
}

TEST(ChatCli, Llama2FormatOnStories260K) {
  PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  static testing::TempDir dir;
  const auto model = stories_gguf(dir);
  testing::write_file(dir / "input.txt", "Tell me a story.\nAnother one.\n");
  const auto result = testing::run_cli("-v chat -m " + model.string() + " --temp 0 -n 20 --ctx 512 < " +
                                       (dir / "input.txt").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("llama2 format"), std::string::npos) << result.output;
  EXPECT_EQ(prompt_tokens_per_turn(result.output).size(), 2u) << result.output;
}

}  // namespace
}  // namespace piquant
