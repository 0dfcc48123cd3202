// Chunking as llama-perplexity does it: whole chunks, BOS at each chunk's start,
// the second half scored.
#include <numeric>
#include <vector>

#include "core/error.h"
#include "eval/eval_chunks.h"
#include "support/eval_test_support.h"
#include "engine/llama_model.h"

namespace piquant {
namespace {

std::vector<std::int32_t> iota_tokens(int n) {
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(n));
  std::iota(tokens.begin(), tokens.end(), 100);
  return tokens;
}

TEST(EvalChunks, WholeChunksWithBosAndTheSecondHalfScored) {
  const EvalChunks chunks(iota_tokens(21), 8, 0, 1);
  EXPECT_EQ(chunks.n_chunks(), 2);  // the 5 tokens left over are dropped
  EXPECT_EQ(chunks.tokens().size(), 16u);
  EXPECT_EQ(chunks.first_scored(), 4);
  EXPECT_EQ(chunks.scored_per_chunk(), 3);  // positions 4, 5, 6 predict 5, 6, 7
  EXPECT_EQ(chunks.n_scored(), 6);
  EXPECT_EQ(chunks.n_evaluated(), 16);
  EXPECT_EQ(chunks.input(0), (std::vector<std::int32_t>{1, 101, 102, 103, 104, 105, 106, 107}));
  EXPECT_EQ(chunks.input(1), (std::vector<std::int32_t>{1, 109, 110, 111, 112, 113, 114, 115}));
  EXPECT_EQ(chunks.target(0, 4), 105);
  EXPECT_EQ(chunks.target(1, 6), 115);
  // Chunk 1 begins with the text's token 108, replaced by BOS in the input only.
  EXPECT_EQ(chunks.tokens()[8], 108);
  EXPECT_THROW(chunks.input(2), Error);
}

TEST(EvalChunks, OddContextLengthsAndNoBos) {
  const EvalChunks chunks(iota_tokens(10), 5, 0, -1);
  EXPECT_EQ(chunks.first_scored(), 2);
  EXPECT_EQ(chunks.scored_per_chunk(), 2);
  EXPECT_EQ(chunks.input(1), (std::vector<std::int32_t>{105, 106, 107, 108, 109}));
}

TEST(EvalChunks, MaxChunksLimitsTheCount) {
  EXPECT_EQ(EvalChunks(iota_tokens(100), 10, 3, 1).n_chunks(), 3);
  EXPECT_EQ(EvalChunks(iota_tokens(100), 10, 50, 1).n_chunks(), 10);
}

TEST(EvalChunks, RejectsTooShortTextsAndContexts) {
  try {
    EvalChunks(iota_tokens(7), 8, 0, 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("7 tokens"), std::string::npos) << e.what();
  }
  EXPECT_THROW(EvalChunks(iota_tokens(100), 3, 0, 1), Error);
  EXPECT_THROW(EvalChunks(iota_tokens(100), 8, -1, 1), Error);
}

TEST(EvalChunks, TextIsTokenizedWithTheVocabsBos) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const testing::TempDir dir;
  const auto model = LlamaModel::load(testing::convert_stories260k(dir, checkpoint, tokenizer, "f32").string());
  const auto tokens = tokenize_eval_text(model->tokenizer(), "Once upon a time");
  ASSERT_GE(tokens.size(), 2u);
  EXPECT_EQ(tokens[0], 1);  // llama2.c's BOS
  EXPECT_EQ(eval_bos_id(model->vocab()), 1);
  // Special-token text is not parsed: "<s>" is plain text here.
  const auto literal = tokenize_eval_text(model->tokenizer(), "<s>");
  EXPECT_GT(literal.size(), 2u);
}

}  // namespace
}  // namespace piquant
