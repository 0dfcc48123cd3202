// The Llama 2 tokenizer on a whole corpus: the vocab from tokenizer.model and the one
// from llama.cpp's GGUF give the same ids and decoding gives the text back. Encoding
// speed is measured by bench/text_bench.cpp, not asserted here.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "formats/gguf.h"
#include "support/test_support.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
constexpr bool kOptimizedBuild = true;
#else
constexpr bool kOptimizedBuild = false;
#endif

TEST(SpmCorpus, TokenizerModelAndGgufAgreeAndRoundTrip) {
  const auto model = PIQUANT_SHARED_FILE("tokenizers/llama2/tokenizer.model");
  const auto gguf = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf");
  const auto corpus = PIQUANT_SHARED_FILE("corpora/sotu_1950plus.txt");
  std::string text = testing::read_file(corpus);
  ASSERT_GT(text.size(), 2'000'000u);
  // Debug and sanitizer builds are many times slower: a prefix is enough there.
  if (!kOptimizedBuild) text.resize(200'000);

  const SpmTokenizer from_model(load_vocab_sentencepiece(model.string()));
  const SpmTokenizer from_gguf(load_vocab_gguf(GgufFile(gguf.string())));

  const std::vector<std::int32_t> ids = from_model.encode(text, false, false);

  // Plain English: about 4 bytes per token for Llama 2's vocab.
  EXPECT_GT(ids.size(), text.size() / 8);
  EXPECT_LT(ids.size(), text.size() / 2);
  EXPECT_EQ(from_gguf.encode(text, false, false), ids);
  EXPECT_EQ(from_model.decode(ids), text);
}

}  // namespace
}  // namespace piquant
