// The harness's `metadata` reads GGUF files right: node-llama-cpp's JS reader for
// the values, llama.cpp's loader for the value types, checked on llama.cpp's
// vocab-only test files against facts known from elsewhere (the Llama 3
// tokenizer.json in shared/, the well-known Llama 2 vocabulary layout).
#include <cstdint>
#include <fstream>
#include <string>

#include "interop/llama_cpp_runner.h"
#include "support/test_support.h"

namespace piquant::testing {
namespace {

using nlohmann::json;

TEST(LlamaCppMetadata, ReadsLlama2SpmVocabulary) {
  const auto vocab = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf");
  const auto answer = run_llama_cpp({"metadata", vocab.string()});

  EXPECT_EQ(answer.at("version"), 3);
  EXPECT_EQ(answer.at("tensor_count"), 0);
  EXPECT_TRUE(answer.at("tensors").empty());
  EXPECT_TRUE(answer.at("llama_cpp_load_error").is_null()) << answer.at("llama_cpp_load_error");

  const auto& m = answer.at("metadata");
  EXPECT_EQ(m.at("general.architecture"), "llama");
  EXPECT_EQ(m.at("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(m.at("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(m.at("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(m.at("tokenizer.ggml.unknown_token_id"), 0);
  EXPECT_EQ(m.at("tokenizer.ggml.add_bos_token"), true);
  EXPECT_EQ(m.at("tokenizer.ggml.add_eos_token"), false);
  EXPECT_FLOAT_EQ(m.at("llama.attention.layer_norm_rms_epsilon").get<float>(), 1e-5f);
  EXPECT_EQ(m.at("llama.vocab_size"), 32000);

  // Llama 2's SentencePiece layout: <unk> <s> </s>, 256 byte pieces, then "▁▁".
  const auto& tokens = m.at("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 32000u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(tokens[13], "<0x0A>");
  EXPECT_EQ(tokens[258], "<0xFF>");
  EXPECT_EQ(tokens[259], "\u2581\u2581");
  EXPECT_EQ(tokens[29871], "\u2581");
  const auto& types = m.at("tokenizer.ggml.token_type");
  ASSERT_EQ(types.size(), 32000u);
  EXPECT_EQ(types[0], 2);    // unknown
  EXPECT_EQ(types[1], 3);    // control
  EXPECT_EQ(types[3], 6);    // byte
  EXPECT_EQ(types[259], 1);  // normal
  ASSERT_EQ(m.at("tokenizer.ggml.scores").size(), 32000u);

  const auto& llama_types = answer.at("llama_cpp_types");
  EXPECT_EQ(llama_types.at("general.architecture"), "str");
  EXPECT_EQ(llama_types.at("llama.block_count"), "u32");
  EXPECT_EQ(llama_types.at("llama.attention.layer_norm_rms_epsilon"), "f32");
  EXPECT_EQ(llama_types.at("tokenizer.ggml.add_bos_token"), "bool");
  EXPECT_EQ(llama_types.at("tokenizer.ggml.tokens"), "arr[str,32000]");
  EXPECT_EQ(llama_types.at("tokenizer.ggml.scores"), "arr[f32,32000]");
  EXPECT_EQ(llama_types.at("tokenizer.ggml.token_type"), "arr[i32,32000]");
  // Both readers saw the same keys.
  EXPECT_EQ(llama_types.size(), m.size());
}

TEST(LlamaCppMetadata, ReadsLlama3BpeVocabularyLikeTokenizerJson) {
  const auto vocab = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-bpe.gguf");
  const auto hf_path = PIQUANT_SHARED_FILE("tokenizers/llama3/tokenizer.json");
  const auto answer = run_llama_cpp({"metadata", vocab.string()});
  std::ifstream hf_file(hf_path);
  const json hf = json::parse(hf_file);

  EXPECT_EQ(answer.at("tensor_count"), 0);
  EXPECT_TRUE(answer.at("llama_cpp_load_error").is_null()) << answer.at("llama_cpp_load_error");
  const auto& m = answer.at("metadata");
  EXPECT_EQ(m.at("general.architecture"), "llama");
  EXPECT_EQ(m.at("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(m.at("tokenizer.ggml.pre"), "llama-bpe");
  EXPECT_EQ(m.at("tokenizer.ggml.bos_token_id"), 128000);
  EXPECT_EQ(m.at("tokenizer.ggml.eos_token_id"), 128001);
  EXPECT_EQ(m.at("llama.rope.freq_base"), 500000);

  // Every token string and merge as Hugging Face lists them.
  const auto& tokens = m.at("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 128256u);
  std::size_t mismatches = 0;
  for (const auto& [piece, id] : hf.at("model").at("vocab").items()) {
    if (tokens.at(id.get<std::size_t>()) != piece && ++mismatches <= 5) {
      ADD_FAILURE() << "token " << id << ": GGUF " << tokens.at(id.get<std::size_t>()) << ", tokenizer.json " << piece;
    }
  }
  for (const auto& added : hf.at("added_tokens")) {
    EXPECT_EQ(tokens.at(added.at("id").get<std::size_t>()), added.at("content"));
  }
  EXPECT_EQ(mismatches, 0u);
  const auto& merges = m.at("tokenizer.ggml.merges");
  const auto& hf_merges = hf.at("model").at("merges");
  ASSERT_EQ(merges.size(), hf_merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const std::string hf_merge = hf_merges[i].is_string() ? hf_merges[i].get<std::string>()
                                                          : hf_merges[i][0].get<std::string>() + " " +
                                                                hf_merges[i][1].get<std::string>();
    if (merges[i] != hf_merge) {
      ADD_FAILURE() << "merge " << i << ": GGUF " << merges[i] << ", tokenizer.json " << hf_merge;
      break;
    }
  }

  const auto& llama_types = answer.at("llama_cpp_types");
  EXPECT_EQ(llama_types.at("tokenizer.ggml.tokens"), "arr[str,128256]");
  EXPECT_EQ(llama_types.at("tokenizer.ggml.merges"), "arr[str,280147]");
  EXPECT_EQ(llama_types.at("tokenizer.ggml.token_type"), "arr[i32,128256]");
  EXPECT_EQ(llama_types.at("tokenizer.ggml.pre"), "str");
  EXPECT_EQ(llama_types.size(), m.size());
}

}  // namespace
}  // namespace piquant::testing
