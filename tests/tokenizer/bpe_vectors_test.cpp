// llama.cpp's own tokenizer test vectors for Llama 3 (ggml-vocab-llama-bpe.gguf.inp/.out),
// run with the vocab from llama.cpp's GGUF and with the one from Meta's tokenizer.json.
#include "support/test_support.h"
#include "tokenizer/bpe_llama3_fixture.h"

namespace piquant {
namespace {

using testing::cached_bpe;

void expect_vectors_match(const std::string& vocab_path, const std::filesystem::path& inp) {
  const auto cases = testing::read_vocab_test_cases(inp.string(), inp.string().substr(0, inp.string().size() - 4) + ".out");
  ASSERT_EQ(cases.size(), 46u) << "cannot pair the texts of " << inp << " with the lines of its .out";
  const BpeTokenizer& tokenizer = *cached_bpe(vocab_path).tokenizer;
  int failures = 0;
  for (const auto& test : cases) {
    const auto ids = tokenizer.encode(test.text, /*add_special=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, test.ids) << "text: '" << test.text << "'";
    failures += ids != test.ids;
    EXPECT_EQ(tokenizer.decode(ids), test.text);
  }
  EXPECT_EQ(failures, 0);
}

TEST(BpeVectors, LlamaCppVectorsWithGgufVocab) {
  const auto gguf = PIQUANT_SHARED_FILE(testing::kLlama3VocabGguf);
  const auto inp = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-bpe.gguf.inp");
  expect_vectors_match(gguf.string(), inp);
}

TEST(BpeVectors, LlamaCppVectorsWithTokenizerJsonVocab) {
  const auto json = PIQUANT_SHARED_FILE(testing::kLlama3TokenizerJson);
  const auto inp = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-bpe.gguf.inp");
  expect_vectors_match(json.string(), inp);
}

// Unicode corners where PCRE2's defaults differ from Hugging Face / llama.cpp (U+180E and
// U+0085 as white space, Unicode case folding of "'ſ"), plus contractions and white-space
// runs. Expected ids from stock llama.cpp (node-llama-cpp 3.22.1) on the same vocab.
TEST(BpeVectors, UnicodeCornersMatchStockLlamaCpp) {
  const auto gguf = PIQUANT_SHARED_FILE(testing::kLlama3VocabGguf);
  const std::vector<testing::VocabTestCase> cases = {
      {"'\u017F", {6, 129, 123}},
      {"x'\u017F", {87, 6, 129, 123}},
      {"'S", {13575}},
      {"'LL'Ve", {6, 4178, 6, 43712}},
      {"I'M", {40, 28703}},
      {"he'S", {383, 13575}},
      {"a\u0085b", {64, 116360, 65}},
      {"\u0085\u0085", {116360, 116360}},
      {"a\u0085 b", {64, 116360, 293}},
      {"a \u0085\u0085b", {64, 2188, 227, 116360, 65}},
      {"x\u0085\n", {87, 116360, 198}},
      {"\u0085a", {116360, 64}},
      {"a\u0085\u0085", {64, 116360, 116360}},
      {"!\u0085\u0085 x", {0, 116360, 116360, 865}},
      {"x \u0085", {87, 2188, 227}},
      {"x\u180E\u180E y", {87, 157, 254, 236, 157, 254, 236, 379}},
      {"a\u180E", {64, 157, 254, 236}},
      {"x \u180E", {87, 87189, 254, 236}},
      {"a\u180Eb", {64, 157, 254, 236, 65}},
      {"a\u200Bb", {64, 16067, 65}},
      {"x\u00A0\u00A0y", {87, 4194, 4194, 88}},
      {" \u00A0a", {220, 4194, 64}},
      {"\u3000x", {23249, 87}},
      {"\u2028\u2029a", {378, 101, 378, 102, 64}},
      {"  \n  \n", {31879}},
      {"\r\n\r\n x", {881, 865}},
      {"\t\t x", {298, 865}},
      {"      a", {415, 264}},
      {"a    ", {64, 257}},
      {"1234567", {4513, 10961, 22}},
      {"\u0661\u0662\u0663\u0664\u0665", {109610, 110546, 117413, 124079, 124043}},
      {"\u216B \u00B2\u00B3", {71567, 104, 220, 30556, 44301}},
      {"e\u0301", {68, 54939}},
      {"\U0001F3F3\uFE0F\u200D\U0001F308", {9468, 237, 111, 31643, 102470, 9468, 234, 230}},
      {"...!!", {1131, 3001}},
      {"<|eot_id|>x<|begin_of_text|>", {27, 91, 68, 354, 851, 91, 29, 87, 27, 91, 7413, 3659, 4424, 91, 29}},
  };
  const BpeTokenizer& tokenizer = *cached_bpe(gguf.string()).tokenizer;
  for (const auto& test : cases) {
    EXPECT_EQ(tokenizer.encode(test.text, false, false), test.ids) << "text: '" << test.text << "'";
  }
}

}  // namespace
}  // namespace piquant
