// The harness drives real llama.cpp: its tokenizer reproduces llama.cpp's own
// test vectors (tests/test-tokenizer-0 data) for the Llama 3 BPE and Llama 2 SPM
// vocabularies.
#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "interop/llama_cpp_runner.h"
#include "support/test_support.h"

namespace piquant::testing {
namespace {

// .inp: every test string is followed by a line "__ggml_vocab_test__" (strings may
// be empty or contain newlines of their own).
std::vector<std::string> read_vocab_test_inputs(const std::filesystem::path& path) {
  const std::string text = read_file(path);
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  std::size_t start = 0;
  for (std::size_t at = text.find(separator); at != std::string::npos; at = text.find(separator, start)) {
    inputs.push_back(text.substr(start, at - start));
    start = at + separator.size();
  }
  EXPECT_EQ(start, text.size()) << path << ": text after the last separator";
  return inputs;
}

// .out: one line per input, the expected ids separated by spaces (an empty line for
// an input that has no tokens).
std::vector<std::vector<std::int64_t>> read_vocab_test_outputs(const std::filesystem::path& path) {
  std::vector<std::vector<std::int64_t>> outputs;
  std::istringstream lines(read_file(path));
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream ids(line);
    std::vector<std::int64_t> row;
    std::int64_t id = 0;
    while (ids >> id) row.push_back(id);
    EXPECT_TRUE(ids.eof()) << path << ": not a list of ids: " << line;
    outputs.push_back(row);
  }
  return outputs;
}

void expect_llama_cpp_reproduces_vectors(const std::filesystem::path& vocab) {
  const auto inputs = read_vocab_test_inputs(vocab.string() + ".inp");
  const auto expected = read_vocab_test_outputs(vocab.string() + ".out");
  ASSERT_EQ(inputs.size(), expected.size());
  ASSERT_GE(inputs.size(), 40u) << "fewer test strings than llama.cpp ships";

  const TempDir dir;
  write_file(dir / "inputs.json", nlohmann::json(inputs).dump());
  const auto answer = run_llama_cpp({"tokenize", vocab.string(), (dir / "inputs.json").string(), "--list"});
  const auto& tokens = answer.at("tokens");
  ASSERT_EQ(tokens.size(), inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(tokens[i].get<std::vector<std::int64_t>>(), expected[i])
        << "test string " << i << ": " << nlohmann::json(inputs[i]).dump();
  }
}

TEST(LlamaCppTokenizer, ReproducesLlama3BpeVectors) {
  expect_llama_cpp_reproduces_vectors(PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-bpe.gguf"));
}

TEST(LlamaCppTokenizer, ReproducesLlama2SpmVectors) {
  expect_llama_cpp_reproduces_vectors(PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf"));
}

// --special: control-token text becomes the control token only when asked for,
// and BOS is never added by `tokenize` (the vectors above need that too).
// "Hello world" is 15043 3186 in the SPM vectors; "<s>" is BOS, id 1.
TEST(LlamaCppTokenizer, ParsesSpecialTokensOnlyWhenAsked) {
  const auto vocab = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf");
  const TempDir dir;
  write_file(dir / "text.txt", "<s>Hello world");
  const auto special = run_llama_cpp({"tokenize", vocab.string(), (dir / "text.txt").string(), "--special"});
  EXPECT_EQ(special.at("tokens").get<std::vector<std::int64_t>>(), (std::vector<std::int64_t>{1, 15043, 3186}));
  const auto plain = run_llama_cpp({"tokenize", vocab.string(), (dir / "text.txt").string()});
  const auto plain_tokens = plain.at("tokens").get<std::vector<std::int64_t>>();
  EXPECT_GT(plain_tokens.size(), 3u);
  EXPECT_EQ(std::count(plain_tokens.begin(), plain_tokens.end(), 1), 0);
}

}  // namespace
}  // namespace piquant::testing
