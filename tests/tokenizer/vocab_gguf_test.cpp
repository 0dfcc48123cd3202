// tokenizer.ggml.* in GGUF: reading llama.cpp's own vocab files, writing keys of the same
// names and types as llama.cpp's converter, write -> read round trips, corrupt files.
#include "core/error.h"
#include "support/test_support.h"
#include "tokenizer/bpe_llama3_fixture.h"

namespace piquant {
namespace {

using testing::cached_bpe;
using testing::expect_vocab_eq;
using testing::tiny_bpe_vocab;

constexpr const char* kSpmGguf = "tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf";

// Writes a vocab-only GGUF; `edit` may then change keys to make it corrupt.
template <typename Edit>
void write_vocab_file(const std::filesystem::path& path, const Vocab& vocab, Edit edit) {
  GgufWriter writer(path.string());
  write_vocab_gguf(vocab, writer);
  edit(writer);
  writer.write_header();
  writer.finish();
}
void write_vocab_file(const std::filesystem::path& path, const Vocab& vocab) {
  write_vocab_file(path, vocab, [](GgufWriter&) {});
}

Vocab round_trip(const Vocab& vocab, const testing::TempDir& dir) {
  const auto path = dir / "vocab.gguf";
  write_vocab_file(path, vocab);
  return load_vocab_gguf(GgufFile(path.string()));
}

std::vector<std::pair<std::string, GgufValue>> tokenizer_keys(const GgufFile& gguf) {
  std::vector<std::pair<std::string, GgufValue>> keys;
  for (const auto& [key, value] : gguf.metadata()) {
    if (key.starts_with("tokenizer.")) keys.emplace_back(key, value);
  }
  return keys;
}

// Every tokenizer key of llama.cpp's file comes out of our writer with the same type and
// value; ours may add only the keys in `extra_allowed`.
void expect_same_keys_as_llama_cpp(const std::filesystem::path& reference, const std::vector<std::string>& extra_allowed) {
  const GgufFile original(reference.string());
  const testing::TempDir dir;
  const auto ours_path = dir / "ours.gguf";
  write_vocab_file(ours_path, load_vocab_gguf(original));
  const GgufFile ours(ours_path.string());
  for (const auto& [key, value] : tokenizer_keys(original)) {
    const GgufValue* mine = ours.find(key);
    ASSERT_NE(mine, nullptr) << key << " is not written";
    EXPECT_EQ(mine->type(), value.type()) << key;
    if (value.is_array()) {
      EXPECT_EQ(mine->element_type(), value.element_type()) << key;
    }
    EXPECT_TRUE(*mine == value) << key << ": " << mine->to_string() << " vs " << value.to_string();
  }
  for (const auto& [key, value] : tokenizer_keys(ours)) {
    if (original.find(key) != nullptr) continue;
    EXPECT_NE(std::find(extra_allowed.begin(), extra_allowed.end(), key), extra_allowed.end()) << "extra key " << key;
  }
}

TEST(VocabGguf, ReadsLlamaCppLlama3Vocab) {
  const auto path = PIQUANT_SHARED_FILE(testing::kLlama3VocabGguf);
  const Vocab& vocab = cached_bpe(path.string()).vocab;
  EXPECT_EQ(vocab.kind, TokenizerKind::Bpe);
  EXPECT_EQ(vocab.pre, "llama-bpe");
  EXPECT_EQ(vocab.size(), 128256u);
  EXPECT_EQ(vocab.merges.size(), 280147u);
  EXPECT_EQ(vocab.merges[0], "Ġ Ġ");
  EXPECT_EQ(vocab.bos_id, 128000);
  EXPECT_EQ(vocab.eos_id, 128001);
  EXPECT_EQ(vocab.tokens[128009], "<|eot_id|>");
  EXPECT_EQ(vocab.eot_id, 128009);  // no key in that file: found by its text, as llama.cpp does
  EXPECT_EQ(vocab.types[128009], TokenType::Control);
  EXPECT_EQ(vocab.types[9906], TokenType::Normal);
  EXPECT_TRUE(vocab.add_bos);  // llama.cpp's default for llama-bpe; the file has no key
  EXPECT_FALSE(vocab.add_eos);
  EXPECT_FALSE(vocab.add_space_prefix);
  EXPECT_TRUE(vocab.scores.empty());
}

TEST(VocabGguf, ReadsLlamaCppLlama2Vocab) {
  const auto path = PIQUANT_SHARED_FILE(kSpmGguf);
  const Vocab vocab = load_vocab_gguf(GgufFile(path.string()));
  EXPECT_EQ(vocab.kind, TokenizerKind::Spm);
  EXPECT_EQ(vocab.pre, "default");
  EXPECT_EQ(vocab.size(), 32000u);
  EXPECT_EQ(vocab.scores.size(), 32000u);
  EXPECT_EQ(vocab.tokens[1], "<s>");
  EXPECT_EQ(vocab.types[0], TokenType::Unknown);
  EXPECT_EQ(vocab.types[3], TokenType::Byte);  // <0x00>
  EXPECT_EQ(vocab.bos_id, 1);
  EXPECT_EQ(vocab.eos_id, 2);
  EXPECT_EQ(vocab.unk_id, 0);
  EXPECT_TRUE(vocab.add_bos);
  EXPECT_TRUE(vocab.add_space_prefix);
  EXPECT_TRUE(vocab.merges.empty());
}

TEST(VocabGguf, WritesTheKeysLlamaCppWritesForLlama3) {
  // That older converter did not write add_bos/add_eos for BPE, nor the end-of-turn id
  // (found by its text on loading); we always write them.
  expect_same_keys_as_llama_cpp(PIQUANT_SHARED_FILE(testing::kLlama3VocabGguf),
                                {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                                 "tokenizer.ggml.eot_token_id"});
}

TEST(VocabGguf, WritesTheKeysLlamaCppWritesForLlama2) {
  expect_same_keys_as_llama_cpp(PIQUANT_SHARED_FILE(kSpmGguf), {});
}

TEST(VocabGguf, RoundTripsLlama3VocabFromTokenizerJson) {
  const auto json = PIQUANT_SHARED_FILE(testing::kLlama3TokenizerJson);
  const Vocab& vocab = cached_bpe(json.string()).vocab;
  ASSERT_FALSE(vocab.chat_template.empty());
  ASSERT_EQ(vocab.eot_id, 128009);
  const testing::TempDir dir;
  expect_vocab_eq(round_trip(vocab, dir), vocab);
}

TEST(VocabGguf, RoundTripsLlama2Vocab) {
  const Vocab vocab = load_vocab_gguf(GgufFile(PIQUANT_SHARED_FILE(kSpmGguf).string()));
  const testing::TempDir dir;
  expect_vocab_eq(round_trip(vocab, dir), vocab);
}

TEST(VocabGguf, RoundTripsEveryField) {
  Vocab vocab = tiny_bpe_vocab({"a b", "Ġ ab"}, {"<|bos|>", "<|eos|>", "<|eot|>", "<|eom|>", "<|pad|>", "<unk>"});
  vocab.pre = "gpt-2";
  vocab.scores.assign(vocab.size(), 0.0f);
  for (std::size_t i = 0; i < vocab.size(); ++i) vocab.scores[i] = -0.25f * static_cast<float>(i);
  vocab.bos_id = 256;
  vocab.eos_id = 257;
  vocab.eot_id = 258;
  vocab.eom_id = 259;
  vocab.pad_id = 260;
  vocab.unk_id = 261;
  vocab.types[261] = TokenType::Unknown;
  vocab.types[5] = TokenType::UserDefined;
  vocab.types[6] = TokenType::Unused;
  vocab.add_bos = false;
  vocab.add_eos = true;
  vocab.add_space_prefix = true;  // not BPE's default, so it must be written
  vocab.chat_template = "{{ messages }}";
  const testing::TempDir dir;
  expect_vocab_eq(round_trip(vocab, dir), vocab);

  Vocab spm = vocab;
  spm.kind = TokenizerKind::Spm;
  spm.merges.clear();
  spm.add_space_prefix = false;  // not SPM's default
  expect_vocab_eq(round_trip(spm, dir), spm);
}

// Each corrupt file must give a FormatError that names the file and the key.
struct CorruptCase {
  const char* name;
  const char* key;
  std::function<void(GgufWriter&)> edit;
};

TEST(VocabGguf, CorruptFilesAreFormatErrors) {
  const Vocab vocab = tiny_bpe_vocab({"a b"}, {"<|bos|>"});
  const auto n = static_cast<std::uint32_t>(vocab.size());
  const std::vector<CorruptCase> cases = {
      {"short token_type", "tokenizer.ggml.token_type",
       [&](GgufWriter& w) { w.set("tokenizer.ggml.token_type", GgufValue::int32_array(std::vector<std::int32_t>(n - 1, 1))); }},
      {"long scores", "tokenizer.ggml.scores",
       [&](GgufWriter& w) { w.set("tokenizer.ggml.scores", GgufValue::float32_array(std::vector<float>(n + 1, 0.0f))); }},
      {"bad token type", "tokenizer.ggml.token_type[3]",
       [&](GgufWriter& w) {
         std::vector<std::int32_t> types(n, 1);
         types[3] = 9;
         w.set("tokenizer.ggml.token_type", GgufValue::int32_array(types));
       }},
      {"bos out of range", "tokenizer.ggml.bos_token_id", [&](GgufWriter& w) { w.set("tokenizer.ggml.bos_token_id", n); }},
      {"eos not an integer", "tokenizer.ggml.eos_token_id",
       [&](GgufWriter& w) { w.set("tokenizer.ggml.eos_token_id", "2"); }},
      {"merge of unknown tokens", "merges[1]",
       [&](GgufWriter& w) { w.set("tokenizer.ggml.merges", GgufValue::string_array({"a b", "q zz"})); }},
      {"merges missing", "tokenizer.ggml.merges", [&](GgufWriter& w) { w.remove("tokenizer.ggml.merges"); }},
      {"tokens not strings", "tokenizer.ggml.tokens",
       [&](GgufWriter& w) { w.set("tokenizer.ggml.tokens", GgufValue::int32_array(std::vector<std::int32_t>(n, 0))); }},
      {"tokens missing", "tokenizer.ggml.tokens", [&](GgufWriter& w) { w.remove("tokenizer.ggml.tokens"); }},
      {"unknown model", "tokenizer.ggml.model", [&](GgufWriter& w) { w.set("tokenizer.ggml.model", "t5"); }},
      {"no model", "tokenizer.ggml.model", [&](GgufWriter& w) { w.remove("tokenizer.ggml.model"); }},
      {"add_bos not bool", "tokenizer.ggml.add_bos_token",
       [&](GgufWriter& w) { w.set("tokenizer.ggml.add_bos_token", std::uint32_t{1}); }},
  };
  const testing::TempDir dir;
  for (const auto& test : cases) {
    const auto path = dir / (std::string(test.name) + ".gguf");
    write_vocab_file(path, vocab, test.edit);
    const GgufFile gguf(path.string());
    try {
      load_vocab_gguf(gguf);
      ADD_FAILURE() << test.name << ": no error";
    } catch (const FormatError& e) {
      EXPECT_EQ(e.path(), path.string()) << test.name;
      // GgufFile's own getters spell the field "key '<name>'".
      EXPECT_NE(e.field().find(test.key), std::string::npos) << test.name << ": " << e.what();
    }
  }
}

TEST(VocabGguf, WriterRejectsInconsistentVocab) {
  Vocab vocab = tiny_bpe_vocab({"a b"});
  vocab.bos_id = static_cast<std::int32_t>(vocab.size());
  const testing::TempDir dir;
  GgufWriter writer((dir / "x.gguf").string());
  EXPECT_THROW(write_vocab_gguf(vocab, writer), Error);
}

}  // namespace
}  // namespace piquant
