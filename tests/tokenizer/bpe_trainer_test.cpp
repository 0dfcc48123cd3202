// The incremental BPE trainer against its reference twin (every pair recounted every
// step), on the built-in text and on a slice of a real corpus, with both word splits; and
// a learned Llama 3-style vocabulary encodes real text compactly and decodes it exactly.
#include "support/test_support.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

namespace piquant {
namespace {

void expect_same_vocab(const Vocab& a, const Vocab& b) {
  ASSERT_EQ(a.merges.size(), b.merges.size());
  for (std::size_t i = 0; i < a.merges.size(); ++i) ASSERT_EQ(a.merges[i], b.merges[i]) << "merge " << i;
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.types, b.types);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
}

TEST(BpeTrainer, IncrementalCountsMatchTheReferenceOnTheBuiltinText) {
  for (const auto split : {BpeWordSplit::Simple, BpeWordSplit::Llama3}) {
    BpeTrainerOptions options;
    options.vocab_size = 700;  // more merges than the text has pairs: reserved tokens fill the rest
    options.word_split = split;
    expect_same_vocab(train_byte_level_bpe(builtin_training_text(), options),
                      reference::train_byte_level_bpe(builtin_training_text(), options));
  }
}

TEST(BpeTrainer, IncrementalCountsMatchTheReferenceOnRealText) {
  const std::string text = testing::read_file(PIQUANT_SHARED_FILE("corpora/austen.txt")).substr(0, 60'000);
  BpeTrainerOptions options;
  options.vocab_size = 900;
  options.word_split = BpeWordSplit::Llama3;
  const Vocab fast = train_byte_level_bpe(text, options);
  expect_same_vocab(fast, reference::train_byte_level_bpe(text, options));
  EXPECT_EQ(fast.types[899 - 8], TokenType::Normal);  // real merges up to the specials: the text had enough pairs

  // Control: a trainer that broke ties the other way would differ, so the comparison can fail.
  Vocab reversed = fast;
  std::swap(reversed.merges[10], reversed.merges[11]);
  EXPECT_NE(reversed.merges, fast.merges);
}

TEST(BpeTrainer, LearnedVocabularyEncodesHeldOutTextCompactly) {
  const std::string train = testing::read_file(PIQUANT_SHARED_FILE("corpora/austen.txt")).substr(0, 400'000);
  const std::string held_out = testing::read_file(PIQUANT_SHARED_FILE("corpora/austen.txt")).substr(1'000'000, 20'000);
  BpeTrainerOptions options;
  options.vocab_size = 2048;
  options.word_split = BpeWordSplit::Llama3;
  const Vocab vocab = train_byte_level_bpe(train, options);
  const auto tokenizer = Tokenizer::create(vocab);
  const auto ids = tokenizer->encode(held_out, false, false);
  EXPECT_EQ(tokenizer->decode(ids), held_out);
  // 2048 tokens learned from the same author: English prose at well over 3 bytes per token.
  EXPECT_GT(static_cast<double>(held_out.size()) / static_cast<double>(ids.size()), 3.0);
}

}  // namespace
}  // namespace piquant
