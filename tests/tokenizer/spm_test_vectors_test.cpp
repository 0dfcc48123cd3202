// llama.cpp's own tokenizer test vectors for the Llama 2 SentencePiece vocab
// (ggml-vocab-llama-spm.gguf.inp / .out): every string must give exactly the ids
// llama.cpp expects, with the vocab read from SentencePiece's tokenizer.model.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "support/test_support.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

using Ids = std::vector<std::int32_t>;

struct TestVectors {
  std::vector<std::string> inputs;
  std::vector<Ids> expected;
};

// .inp: each string is followed by "\n__ggml_vocab_test__\n" (so a string may itself
// end in newlines). .out: one line of space-separated ids per string, without BOS.
TestVectors read_test_vectors(const std::filesystem::path& inp, const std::filesystem::path& out) {
  TestVectors vectors;
  const std::string text = testing::read_file(inp);
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find(separator, start);
    if (end == std::string::npos) break;
    vectors.inputs.push_back(text.substr(start, end - start));
    start = end + separator.size();
  }
  EXPECT_EQ(start, text.size()) << "text after the last separator in " << inp;

  std::istringstream lines(testing::read_file(out));
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream numbers(line);
    Ids ids;
    std::int32_t id = 0;
    while (numbers >> id) ids.push_back(id);
    vectors.expected.push_back(std::move(ids));
  }
  return vectors;
}

// Escapes control and non-ASCII bytes so a failing input is readable.
std::string shown(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

void expect_matches_test_vectors(const Tokenizer& tok, const TestVectors& vectors) {
  ASSERT_EQ(vectors.inputs.size(), vectors.expected.size());
  ASSERT_GE(vectors.inputs.size(), 40u);
  for (std::size_t i = 0; i < vectors.inputs.size(); ++i) {
    const std::string& input = vectors.inputs[i];
    EXPECT_EQ(tok.encode(input, false, false), vectors.expected[i]) << "input #" << i << ": \"" << shown(input) << '"';
    // None of the strings contains a special token's text, so parse_special changes nothing.
    EXPECT_EQ(tok.encode(input, false, true), vectors.expected[i]) << "input #" << i << " with parse_special";
    // With BOS: exactly one BOS in front.
    Ids with_bos{1};
    with_bos.insert(with_bos.end(), vectors.expected[i].begin(), vectors.expected[i].end());
    EXPECT_EQ(tok.encode(input, true, false), with_bos) << "input #" << i << " with BOS";
    EXPECT_EQ(tok.decode(vectors.expected[i]), input) << "decode of input #" << i;
  }
}

TEST(SpmTestVectors, TokenizerModelVocabMatchesLlamaCpp) {
  const auto model = PIQUANT_SHARED_FILE("tokenizers/llama2/tokenizer.model");
  const auto inp = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf.inp");
  const auto out = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf.out");
  const TestVectors vectors = read_test_vectors(inp, out);
  ASSERT_EQ(vectors.inputs.size(), 46u);
  const SpmTokenizer tok(load_vocab_sentencepiece(model.string()));
  expect_matches_test_vectors(tok, vectors);
}

TEST(SpmTestVectors, GgufVocabMatchesLlamaCpp) {
  const auto gguf = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf");
  const auto inp = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf.inp");
  const auto out = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf.out");
  const TestVectors vectors = read_test_vectors(inp, out);
  const auto tok = Tokenizer::create(load_vocab_gguf(GgufFile(gguf.string())));
  ASSERT_NE(dynamic_cast<const SpmTokenizer*>(tok.get()), nullptr);
  expect_matches_test_vectors(*tok, vectors);
}

}  // namespace
}  // namespace piquant
