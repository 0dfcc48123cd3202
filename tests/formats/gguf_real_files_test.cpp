// Real vocab-only GGUF files written by llama.cpp's own Python gguf writer.
#include <cstdint>

#include "core/error.h"
#include "formats/gguf.h"
#include "support/test_support.h"

namespace piquant {
namespace {

using testing::TempDir;

TEST(GgufRealFiles, LlamaBpeVocab) {
  const auto path = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-bpe.gguf");
  // How fast this parses is bench/text_bench.cpp's business, not a test's.
  const GgufFile file(path);
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 32u);
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(file.get_string("tokenizer.ggml.pre"), "llama-bpe");
  EXPECT_EQ(file.get_int("llama.vocab_size"), 128256);
  EXPECT_EQ(file.get_int("tokenizer.ggml.bos_token_id"), 128000);
  EXPECT_EQ(file.get_int("tokenizer.ggml.eos_token_id"), 128001);
  EXPECT_FLOAT_EQ(static_cast<float>(file.get_float("llama.rope.freq_base")), 500000.0f);

  const GgufValue& tokens = file.at("tokenizer.ggml.tokens");
  EXPECT_EQ(tokens.element_type(), GgufType::STRING);
  ASSERT_EQ(tokens.as_array().size(), 128256u);
  EXPECT_EQ(tokens.as_array()[0].as_string(), "!");
  EXPECT_EQ(tokens.as_array()[128000].as_string(), "<|begin_of_text|>");
  EXPECT_EQ(tokens.as_array()[128009].as_string(), "<|eot_id|>");

  const auto types = file.at("tokenizer.ggml.token_type").as_int_array();
  ASSERT_EQ(types.size(), 128256u);
  EXPECT_EQ(types[0], 1);       // NORMAL
  EXPECT_EQ(types[128000], 3);  // CONTROL
  EXPECT_EQ(types[128255], 3);

  const GgufValue& merges = file.at("tokenizer.ggml.merges");
  ASSERT_EQ(merges.as_array().size(), 280147u);
  EXPECT_EQ(merges.as_array()[0].as_string(), "\xc4\xa0 \xc4\xa0");  // "Ġ Ġ"
  EXPECT_EQ(merges.as_array()[4].as_string(), "i n");
}

TEST(GgufRealFiles, LlamaSpmVocab) {
  const auto path = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf");
  const GgufFile file(path);
  EXPECT_EQ(file.version(), 3u);
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_EQ(file.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(file.get_string("tokenizer.ggml.pre"), "default");
  EXPECT_EQ(file.find("tokenizer.ggml.merges"), nullptr);
  EXPECT_TRUE(file.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(file.get_bool("tokenizer.ggml.add_eos_token"));
  EXPECT_EQ(file.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(file.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(file.get_int("tokenizer.ggml.unknown_token_id"), 0);

  const auto tokens = file.at("tokenizer.ggml.tokens").as_string_array();
  ASSERT_EQ(tokens.size(), 32000u);  // Llama 2's SentencePiece vocabulary
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(tokens[258], "<0xFF>");
  EXPECT_EQ(file.get_int("llama.vocab_size"), 32000);

  const auto scores = file.at("tokenizer.ggml.scores").as_float_array();
  ASSERT_EQ(scores.size(), 32000u);
  const auto types = file.at("tokenizer.ggml.token_type").as_int_array();
  ASSERT_EQ(types.size(), 32000u);
  EXPECT_EQ(types[0], 2);  // UNKNOWN
  EXPECT_EQ(types[1], 3);  // CONTROL
  EXPECT_EQ(types[2], 3);
  for (int i = 3; i < 259; ++i) EXPECT_EQ(types[i], 6) << i;  // BYTE
  EXPECT_EQ(types[259], 1);
}

// Copying every key into GgufWriter reproduces llama.cpp's bytes exactly; ours only
// adds the zero padding that aligns the (empty) data section.
void expect_rewrite_identical(const std::filesystem::path& original, const std::string& copy) {
  const GgufFile file(original);
  {
    GgufWriter writer(copy);
    for (const auto& [key, value] : file.metadata()) writer.set(key, value);
    writer.finish();
  }
  const std::string want = testing::read_file(original);
  const std::string got = testing::read_file(copy);
  ASSERT_EQ(got.size(), (want.size() + 31) / 32 * 32);
  EXPECT_TRUE(got.compare(0, want.size(), want) == 0) << "rewritten header differs from llama.cpp's";
  EXPECT_EQ(got.substr(want.size()), std::string(got.size() - want.size(), '\0'));
  EXPECT_EQ(GgufFile(copy).metadata(), file.metadata());
}

TEST(GgufRealFiles, RewriteMatchesLlamaCppBytes) {
  TempDir dir;
  expect_rewrite_identical(PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf"), dir / "spm.gguf");
  expect_rewrite_identical(PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-bpe.gguf"), dir / "bpe.gguf");
}

}  // namespace
}  // namespace piquant
