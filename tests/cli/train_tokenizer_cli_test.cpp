// piquant train-tokenizer: the tokenizer.json it writes loads back, encodes text it never
// saw and decodes it exactly; bad input is one clear error and writes nothing.
#include <gtest/gtest.h>

#include <filesystem>

#include "support/eval_test_support.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

using testing::run_cli;
using testing::shell_quote;

TEST(TrainTokenizerCli, WritesATokenizerThatRoundTripsUnseenText) {
  const auto austen = PIQUANT_SHARED_FILE("corpora/austen.txt");
  const auto kjv = PIQUANT_SHARED_FILE("corpora/kjv.txt");
  testing::TempDir dir;
  testing::write_file(dir / "a.txt", testing::text_head(austen, 200'000));
  testing::write_file(dir / "b.txt", testing::text_head(kjv, 200'000));
  const auto r = run_cli("train-tokenizer --data " + shell_quote((dir / "a.txt").string()) + " " +
                         shell_quote((dir / "b.txt").string()) + " --vocab-size 1024 --json -o " + shell_quote((dir / "tok").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Vocab vocab = load_vocab_hf((dir / "tok/tokenizer.json").string());
  EXPECT_EQ(vocab.size(), 1024u);
  EXPECT_EQ(vocab.tokens[static_cast<std::size_t>(vocab.bos_id)], "<|begin_of_text|>");
  const auto tokenizer = Tokenizer::create(vocab);
  const std::string unseen = "And it came to pass, that Mr. Knightley walked unto the garden; 1813 or 1611? ¿Quién sabe?";
  EXPECT_EQ(tokenizer->decode(tokenizer->encode(unseen, false, false)), unseen);
  // Words of both texts were learned: each is a single token.
  for (const std::string word : {" Emma", " LORD"}) EXPECT_EQ(tokenizer->encode(word, false, false).size(), 1u) << word;
}

TEST(TrainTokenizerCli, BadInputIsOneClearError) {
  testing::TempDir dir;
  testing::write_file(dir / "empty.txt", "");
  const auto empty = run_cli("train-tokenizer --data " + shell_quote((dir / "empty.txt").string()) + " -o " + shell_quote((dir / "t1").string()));
  EXPECT_NE(empty.exit_code, 0);
  EXPECT_NE(empty.output.find("empty"), std::string::npos) << empty.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "t1/tokenizer.json"));
  const auto missing = run_cli("train-tokenizer --data " + shell_quote((dir / "none.txt").string()) + " -o " + shell_quote((dir / "t2").string()));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("none.txt"), std::string::npos) << missing.output;
  testing::write_file(dir / "text.txt", "some text");
  const auto small = run_cli("train-tokenizer --data " + shell_quote((dir / "text.txt").string()) + " --vocab-size 100 -o " + shell_quote((dir / "t3").string()));
  EXPECT_NE(small.exit_code, 0);
  EXPECT_NE(small.output.find("vocab-size"), std::string::npos) << small.output;
}

}  // namespace
}  // namespace piquant
