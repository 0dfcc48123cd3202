// A whole real text (State of the Union addresses since 1950, 2.5 MB): the vocab from
// tokenizer.json and the one from llama.cpp's GGUF must give identical ids, decoding
// must give back the text byte for byte, and it must be fast.
#include <chrono>

#include "support/test_support.h"
#include "tokenizer/bpe_llama3_fixture.h"

namespace piquant {
namespace {

using testing::cached_bpe;

std::string corpus_for_this_build(const std::filesystem::path& path) {
  std::string text = testing::read_file(path);
#if defined(__SANITIZE_ADDRESS__)
  text.resize(std::min<std::size_t>(text.size(), 300'000));  // sanitizers are ~10x slower
#endif
  return text;
}

TEST(BpeCorpus, HfAndGgufVocabsAgreeAndRoundTrip) {
  const auto corpus_path = PIQUANT_SHARED_FILE("corpora/sotu_1950plus.txt");
  const auto json = PIQUANT_SHARED_FILE(testing::kLlama3TokenizerJson);
  const auto gguf = PIQUANT_SHARED_FILE(testing::kLlama3VocabGguf);
  const std::string text = corpus_for_this_build(corpus_path);
  ASSERT_GT(text.size(), 100'000u);
  const BpeTokenizer& from_json = *cached_bpe(json.string()).tokenizer;
  const BpeTokenizer& from_gguf = *cached_bpe(gguf.string()).tokenizer;

  const auto start = std::chrono::steady_clock::now();
  const auto ids = from_json.encode(text, false, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "encoded " << text.size() << " bytes into " << ids.size() << " tokens in " << seconds << " s ("
            << text.size() / seconds / 1e6 << " MB/s)\n";

  // English prose runs about 4.3 bytes per Llama 3 token; far off means a broken merge loop.
  const double bytes_per_token = static_cast<double>(text.size()) / static_cast<double>(ids.size());
  EXPECT_GT(bytes_per_token, 3.8);
  EXPECT_LT(bytes_per_token, 5.5);

  const auto ids_gguf = from_gguf.encode(text, false, false);
  ASSERT_EQ(ids.size(), ids_gguf.size());
  EXPECT_TRUE(ids == ids_gguf);
  EXPECT_TRUE(from_json.decode(ids) == text);

  // Whole-corpus encoding must not depend on where the text is cut: per paragraph gives the same ids.
  std::vector<std::int32_t> by_paragraph;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find("\n\n", pos);
    end = end == std::string::npos ? text.size() : end + 2;
    // A cut after "\n\n" is also a pre-token boundary unless more newlines follow.
    while (end < text.size() && (text[end] == '\n' || text[end] == ' ')) ++end;
    const auto part = from_gguf.encode(std::string_view(text).substr(pos, end - pos), false, false);
    by_paragraph.insert(by_paragraph.end(), part.begin(), part.end());
    pos = end;
  }
  EXPECT_TRUE(by_paragraph == ids);
}

}  // namespace
}  // namespace piquant
