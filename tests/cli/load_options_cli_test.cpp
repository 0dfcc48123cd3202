// --no-mmap and the memory check, end to end through generate and chat.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant {
namespace {

class LoadOptionsCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
    const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
    model_ = testing::convert_stories260k(dir_, checkpoint, tokenizer, "f16").string();
  }
  // Greedy text on stdout only (-q keeps timings off).
  std::string generate(const std::string& extra) {
    const auto out = dir_ / "out.txt";
    const auto result =
        testing::run_cli("-q generate -m " + model_ + " --temp 0 -n 24 -p \"Once upon a time\" " + extra + " > " + out.string());
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return testing::read_file(out);
  }
  testing::TempDir dir_;
  std::string model_;
};

TEST_F(LoadOptionsCli, NoMmapGeneratesTheSameText) {
  const std::string mapped = generate("");
  // What stock llama.cpp writes for this prompt at temperature 0.
  EXPECT_TRUE(mapped.starts_with("Once upon a time, there was a little girl named Lily")) << mapped;
  EXPECT_EQ(generate("--no-mmap"), mapped);
  EXPECT_EQ(generate("--no-memory-check"), mapped);
  EXPECT_EQ(generate("--no-mmap --no-memory-check"), mapped);
}

// A context whose KV cache alone is ~640 TB (stories260K: 640 bytes per position in
// f16) is more than any machine's MemAvailable: the check must refuse it before the
// context allocates anything (an allocation that size would fail or be killed, so
// the exact message is the proof that it was not attempted).
TEST_F(LoadOptionsCli, ContextTooBigForMemoryIsRefusedBeforeAllocating) {
  if (!std::filesystem::exists("/proc/meminfo")) GTEST_SKIP() << "no /proc/meminfo: the check is skipped here";
  for (const std::string extra : {"", "--no-mmap"}) {
    const auto result = testing::run_cli("generate -m " + model_ + " --ctx 1000000000000 -n 1 -p hi " + extra);
    EXPECT_EQ(result.exit_code, 1) << result.output;
    EXPECT_NE(result.output.find(model_ + ": needs 648000.0 GB (weights "), std::string::npos) << result.output;
    EXPECT_NE(result.output.find(" + KV cache 640000.0 GB"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("of memory is available (MemAvailable in /proc/meminfo); use a smaller --ctx"),
              std::string::npos)
        << result.output;
    EXPECT_NE(result.output.find("--no-memory-check to try anyway"), std::string::npos) << result.output;
  }
}

// The evaluation commands take the same load options: --no-mmap gives the same
// perplexity digits, and an impossible --ctx is refused by the memory check.
TEST_F(LoadOptionsCli, PerplexityTakesTheLoadOptions) {
  const auto text = dir_ / "text.txt";
  std::string story;
  for (int i = 0; i < 20; ++i) story += "Once upon a time, there was a little girl named Lily. She loved to play. ";
  testing::write_file(text, story);
  const std::string base = "-q perplexity -m " + model_ + " -f " + text.string() + " --ctx 64 --json";
  const auto mapped = testing::run_cli(base);
  const auto read = testing::run_cli(base + " --no-mmap");
  ASSERT_EQ(mapped.exit_code, 0) << mapped.output;
  ASSERT_EQ(read.exit_code, 0) << read.output;
  const auto mapped_json = nlohmann::json::parse(mapped.output);
  const auto read_json = nlohmann::json::parse(read.output);
  EXPECT_EQ(read_json.at("mean_nll").get<double>(), mapped_json.at("mean_nll").get<double>());
  EXPECT_EQ(read_json.at("n_scored"), mapped_json.at("n_scored"));
  if (std::filesystem::exists("/proc/meminfo")) {
    const auto huge = testing::run_cli("perplexity -m " + model_ + " -f " + text.string() + " --ctx 1000000");
    EXPECT_NE(huge.exit_code, 0);
  }
}

TEST_F(LoadOptionsCli, ChatHasTheLoadOptionsToo) {
  const auto result = testing::run_cli("chat --help");
  EXPECT_NE(result.output.find("--no-mmap"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("--no-memory-check"), std::string::npos) << result.output;
  // And honours them: a context too big is refused before chatting starts.
  if (!std::filesystem::exists("/proc/meminfo")) return;
  const auto refused = testing::run_cli("chat -m " + model_ + " --ctx 1000000000000 --no-mmap < /dev/null");
  EXPECT_NE(refused.output.find("MemAvailable in /proc/meminfo"), std::string::npos) << refused.output;
}

}  // namespace
}  // namespace piquant
