// Hugging Face tokenizer.json (+ tokenizer_config.json): Meta's Llama 3 file against
// llama.cpp's GGUF of the same tokenizer, save -> load round trips, both merge
// spellings, config variants and corrupt files.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "support/test_support.h"
#include "tokenizer/bpe_llama3_fixture.h"

namespace piquant {
namespace {

using nlohmann::json;
using testing::cached_bpe;
using testing::expect_vocab_eq;
using testing::tiny_bpe_vocab;

Vocab small_vocab() {
  Vocab vocab = tiny_bpe_vocab({"a b", "Ġ ab", "c c"}, {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<tool>"});
  vocab.bos_id = 256;
  vocab.eos_id = 257;
  vocab.eot_id = 258;
  vocab.types[259] = TokenType::UserDefined;
  vocab.add_bos = true;
  vocab.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}<|eot_id|>{% endfor %}";
  return vocab;
}

// save_vocab_hf's tokenizer.json for `vocab`, edited by `edit`, written back.
template <typename Edit>
std::filesystem::path edited_tokenizer(const testing::TempDir& dir, const Vocab& vocab, Edit edit) {
  save_vocab_hf(vocab, dir.path().string());
  const auto path = dir / "tokenizer.json";
  json document = json::parse(testing::read_file(path));
  edit(document);
  testing::write_file(path, document.dump());
  return path;
}

TEST(VocabHf, Llama3MatchesLlamaCppVocab) {
  const auto json_path = PIQUANT_SHARED_FILE(testing::kLlama3TokenizerJson);
  const auto gguf_path = PIQUANT_SHARED_FILE(testing::kLlama3VocabGguf);
  const Vocab& hf = cached_bpe(json_path.string()).vocab;
  const Vocab& gguf = cached_bpe(gguf_path.string()).vocab;
  EXPECT_EQ(hf.kind, TokenizerKind::Bpe);
  EXPECT_EQ(hf.pre, "llama-bpe");
  EXPECT_EQ(hf.size(), 128256u);
  EXPECT_TRUE(hf.tokens == gguf.tokens);  // llama.cpp's converter output, token for token
  EXPECT_TRUE(hf.types == gguf.types);
  EXPECT_TRUE(hf.merges == gguf.merges);
  EXPECT_EQ(hf.bos_id, 128000);
  EXPECT_EQ(hf.eos_id, 128001);  // the config says <|eot_id|>: that is EOT
  EXPECT_EQ(hf.eot_id, 128009);
  EXPECT_EQ(hf.eom_id, -1);  // Llama 3.0 has no <|eom_id|>
  EXPECT_TRUE(hf.add_bos);   // from the TemplateProcessing post-processor
  EXPECT_FALSE(hf.add_eos);
  EXPECT_FALSE(hf.add_space_prefix);
  EXPECT_NE(hf.chat_template.find("<|start_header_id|>"), std::string::npos);
}

TEST(VocabHf, Llama3SaveLoadRoundTrip) {
  const auto json_path = PIQUANT_SHARED_FILE(testing::kLlama3TokenizerJson);
  const Vocab& vocab = cached_bpe(json_path.string()).vocab;
  const testing::TempDir dir;
  save_vocab_hf(vocab, dir.path().string());
  expect_vocab_eq(load_vocab_hf((dir / "tokenizer.json").string()), vocab);
}

TEST(VocabHf, SmallVocabRoundTripsWithHolesAndOptions) {
  Vocab vocab = small_vocab();
  // A hole in the ids, as llama.cpp's converter fills it.
  vocab.tokens.push_back("[PAD" + std::to_string(vocab.size()) + "]");
  vocab.types.push_back(TokenType::Unused);
  vocab.tokens.push_back("<pad>");
  vocab.types.push_back(TokenType::Control);
  vocab.pad_id = static_cast<std::int32_t>(vocab.size() - 1);
  vocab.add_eos = true;
  const testing::TempDir dir;
  save_vocab_hf(vocab, dir.path().string());
  expect_vocab_eq(load_vocab_hf((dir / "tokenizer.json").string()), vocab);

  vocab.add_bos = false;
  vocab.bos_id = -1;
  vocab.chat_template.clear();
  vocab.pre = "gpt-2";
  save_vocab_hf(vocab, dir.path().string());
  expect_vocab_eq(load_vocab_hf((dir / "tokenizer.json").string()), vocab);
}

TEST(VocabHf, MergesAsPairsOrStrings) {
  const testing::TempDir dir;
  const Vocab vocab = small_vocab();
  const auto path = edited_tokenizer(dir, vocab, [](json& document) {
    json pairs = json::array();
    for (const auto& merge : document["model"]["merges"]) {
      const std::string text = merge.get<std::string>();
      const auto space = text.find(' ');
      pairs.push_back({text.substr(0, space), text.substr(space + 1)});
    }
    document["model"]["merges"] = pairs;
  });
  expect_vocab_eq(load_vocab_hf(path.string()), vocab);
}

TEST(VocabHf, HolesBecomeUnusedPadTokens) {
  const testing::TempDir dir;
  const auto path = edited_tokenizer(dir, small_vocab(), [](json& document) {
    document["added_tokens"].push_back({{"id", 300}, {"content", "<late>"}, {"special", true}});
  });
  const Vocab vocab = load_vocab_hf(path.string());
  ASSERT_EQ(vocab.size(), 301u);
  EXPECT_EQ(vocab.tokens[299], "[PAD299]");
  EXPECT_EQ(vocab.types[299], TokenType::Unused);
  EXPECT_EQ(vocab.tokens[300], "<late>");
  EXPECT_EQ(vocab.types[300], TokenType::Control);
}

TEST(VocabHf, ConfigVariants) {
  const testing::TempDir dir;
  save_vocab_hf(small_vocab(), dir.path().string());
  const auto tokenizer = (dir / "tokenizer.json").string();
  const auto config_path = dir / "tokenizer_config.json";
  json config = json::parse(testing::read_file(config_path));

  // AddedToken objects, explicit add_bos_token, a list of named templates.
  config["bos_token"] = {{"__type", "AddedToken"}, {"content", "<|end_of_text|>"}};
  config["add_bos_token"] = false;
  config["chat_template"] = json::array({{{"name", "tool_use"}, {"template", "T"}}, {{"name", "default"}, {"template", "D"}}});
  testing::write_file(config_path, config.dump());
  Vocab vocab = load_vocab_hf(tokenizer);
  EXPECT_EQ(vocab.bos_id, 257);
  EXPECT_FALSE(vocab.add_bos);
  EXPECT_EQ(vocab.chat_template, "D");

  // No config at all: BOS and add_bos from the post-processor, EOS by Llama 3's name.
  std::filesystem::remove(config_path);
  vocab = load_vocab_hf(tokenizer);
  EXPECT_EQ(vocab.bos_id, 256);
  EXPECT_EQ(vocab.eos_id, 257);
  EXPECT_EQ(vocab.eot_id, 258);
  EXPECT_TRUE(vocab.add_bos);
  EXPECT_TRUE(vocab.chat_template.empty());
}

struct CorruptCase {
  const char* name;
  const char* field;
  std::function<void(json&)> edit;
};

TEST(VocabHf, CorruptTokenizerJsonIsFormatError) {
  const std::vector<CorruptCase> cases = {
      {"merge of unknown token", "merges[1]", [](json& d) { d["model"]["merges"][1] = "Ġ zz"; }},
      {"merge without space", "merges[0]", [](json& d) { d["model"]["merges"][0] = "ab"; }},
      {"merge result not a token", "merges[2]", [](json& d) { d["model"]["merges"][2] = "c a"; }},
      {"bad merge entry", "model.merges[0]", [](json& d) { d["model"]["merges"][0] = 7; }},
      {"unigram", "model.type", [](json& d) { d["model"]["type"] = "Unigram"; }},
      {"byte fallback", "model.byte_fallback", [](json& d) { d["model"]["byte_fallback"] = true; }},
      {"no vocab", "model.vocab", [](json& d) { d["model"].erase("vocab"); }},
      {"no merges", "model.merges", [](json& d) { d["model"].erase("merges"); }},
      {"negative id", "model.vocab[\"a\"]", [](json& d) { d["model"]["vocab"]["a"] = -3; }},
      {"duplicate id", "model.vocab", [](json& d) { d["model"]["vocab"]["a"] = 98; }},
      {"added token without id", "added_tokens[0]", [](json& d) { d["added_tokens"][0].erase("id"); }},
      {"not byte-level", "pre_tokenizer", [](json& d) { d["pre_tokenizer"] = {{"type", "Whitespace"}}; }},
      {"other regex", "pre_tokenizer",
       [](json& d) { d["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+"; }},
      {"no model", "model", [](json& d) { d.erase("model"); }},
      {"wrong json type", "json", [](json& d) { d["pre_tokenizer"]["type"] = 5; }},
  };
  for (const auto& test : cases) {
    const testing::TempDir dir;
    const auto path = edited_tokenizer(dir, small_vocab(), test.edit);
    try {
      load_vocab_hf(path.string());
      ADD_FAILURE() << test.name << ": no error";
    } catch (const FormatError& e) {
      EXPECT_EQ(e.path(), path.string()) << test.name;
      EXPECT_EQ(e.field(), test.field) << test.name << ": " << e.what();
    }
  }
}

TEST(VocabHf, BadJsonAndBadConfigNameTheirFile) {
  const testing::TempDir dir;
  save_vocab_hf(small_vocab(), dir.path().string());
  const auto tokenizer = dir / "tokenizer.json";
  const auto config = dir / "tokenizer_config.json";
  const std::string good_config = testing::read_file(config);

  testing::write_file(config, "{\"bos_token\": \"<|nope|>\"}");
  try {
    load_vocab_hf(tokenizer.string());
    ADD_FAILURE() << "unknown bos_token accepted";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.path(), config.string());
    EXPECT_EQ(e.field(), "bos_token");
  }
  testing::write_file(config, "{\"add_bos_token\": ");
  try {
    load_vocab_hf(tokenizer.string());
    ADD_FAILURE() << "truncated config accepted";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.path(), config.string());
  }
  testing::write_file(config, good_config);
  const std::string good = testing::read_file(tokenizer);
  testing::write_file(tokenizer, good.substr(0, good.size() / 2));
  try {
    load_vocab_hf(tokenizer.string());
    ADD_FAILURE() << "truncated tokenizer.json accepted";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.path(), tokenizer.string());
    EXPECT_EQ(e.field(), "json");
  }
  EXPECT_THROW(load_vocab_hf((dir / "missing.json").string()), Error);
}

TEST(VocabHf, SaveRejectsWhatTokenizerJsonCannotHold) {
  const testing::TempDir dir;
  Vocab spm = small_vocab();
  spm.kind = TokenizerKind::Spm;
  EXPECT_THROW(save_vocab_hf(spm, dir.path().string()), Error);
  Vocab duplicate = small_vocab();
  duplicate.tokens.push_back("a");
  duplicate.types.push_back(TokenType::Normal);
  EXPECT_THROW(save_vocab_hf(duplicate, dir.path().string()), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "tokenizer.json"));
}

}  // namespace
}  // namespace piquant
