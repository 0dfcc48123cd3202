#pragma once
// The Llama 3 vocabulary from shared test data, loaded once per test program (the
// 9 MB tokenizer.json takes a while to parse, more so under sanitizers).
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "support/test_support.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/byte_level_codec.h"
#include "tokenizer/vocab.h"

namespace piquant::testing {

inline constexpr const char* kLlama3TokenizerJson = "tokenizers/llama3/tokenizer.json";
inline constexpr const char* kLlama3VocabGguf = "tokenizers/ggml-vocab/ggml-vocab-llama-bpe.gguf";

struct CachedBpe {
  Vocab vocab;
  std::unique_ptr<BpeTokenizer> tokenizer;
};

// Loads `path` (tokenizer.json or .gguf) on first use.
inline const CachedBpe& cached_bpe(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<CachedBpe>> cache;
  std::lock_guard lock(mutex);
  auto& slot = cache[path];
  if (!slot) {
    slot = std::make_unique<CachedBpe>();
    slot->vocab = path.ends_with(".gguf") ? load_vocab_gguf(GgufFile(path)) : load_vocab_hf(path);
    slot->tokenizer = std::make_unique<BpeTokenizer>(slot->vocab);
  }
  return *slot;
}

// llama.cpp's tokenizer test vectors: `.inp` holds the texts, each followed by a line
// "__ggml_vocab_test__"; `.out` one line of space-separated ids per text (no BOS).
struct VocabTestCase {
  std::string text;
  std::vector<std::int32_t> ids;
};
inline std::vector<VocabTestCase> read_vocab_test_cases(const std::string& inp_path, const std::string& out_path) {
  const std::string separator = "\n__ggml_vocab_test__\n";
  const std::string inp = read_file(inp_path);
  std::vector<VocabTestCase> cases;
  std::size_t pos = 0;
  while (pos < inp.size()) {
    const std::size_t end = inp.find(separator, pos);
    if (end == std::string::npos) break;
    cases.push_back({inp.substr(pos, end - pos), {}});
    pos = end + separator.size();
  }
  std::istringstream out(read_file(out_path));
  std::string line;
  std::size_t i = 0;
  while (std::getline(out, line)) {
    if (i >= cases.size()) {
      cases.push_back({"<more .out lines than .inp texts>", {}});
      break;
    }
    std::istringstream ids(line);
    for (std::int32_t id = 0; ids >> id;) cases[i].ids.push_back(id);
    ++i;
  }
  if (i != cases.size()) cases.clear();  // the caller reports the mismatch
  return cases;
}

// Field-by-field comparison, so a failure says which field differs.
inline void expect_vocab_eq(const Vocab& a, const Vocab& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.pre, b.pre);
  ASSERT_EQ(a.tokens.size(), b.tokens.size());
  for (std::size_t i = 0; i < a.tokens.size(); ++i) {
    ASSERT_EQ(a.tokens[i], b.tokens[i]) << "token " << i;
    ASSERT_EQ(a.types[i], b.types[i]) << "type of token " << i << " '" << a.tokens[i] << "'";
  }
  EXPECT_TRUE(a.scores == b.scores) << "scores differ (" << a.scores.size() << " vs " << b.scores.size() << ")";
  EXPECT_TRUE(a.merges == b.merges) << "merges differ (" << a.merges.size() << " vs " << b.merges.size() << ")";
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.eot_id, b.eot_id);
  EXPECT_EQ(a.eom_id, b.eom_id);
  EXPECT_EQ(a.unk_id, b.unk_id);
  EXPECT_EQ(a.pad_id, b.pad_id);
  EXPECT_EQ(a.add_bos, b.add_bos);
  EXPECT_EQ(a.add_eos, b.add_eos);
  EXPECT_EQ(a.add_space_prefix, b.add_space_prefix);
  EXPECT_EQ(a.chat_template, b.chat_template);
}

// A small byte-level vocab for tests that must not depend on shared data: the 256
// byte tokens in GPT-2 order of their characters, then `extra` tokens, then the merges' results.
// Extra tokens written "<|...|>" are Control tokens.
inline Vocab tiny_bpe_vocab(const std::vector<std::string>& merges, const std::vector<std::string>& extra = {}) {
  const ByteLevelCodec codec;
  Vocab vocab;
  vocab.kind = TokenizerKind::Bpe;
  vocab.pre = "llama-bpe";
  vocab.add_space_prefix = false;
  const auto add = [&](const std::string& text, TokenType type) {
    if (std::find(vocab.tokens.begin(), vocab.tokens.end(), text) != vocab.tokens.end()) return;
    vocab.tokens.push_back(text);
    vocab.types.push_back(type);
  };
  for (int b = 0; b < 256; ++b) add(std::string(codec.char_for(static_cast<std::uint8_t>(b))), TokenType::Normal);
  for (const auto& text : extra) add(text, text.starts_with("<|") ? TokenType::Control : TokenType::Normal);
  for (const auto& merge : merges) {
    const auto space = merge.find(' ', 1);
    add(merge.substr(0, space) + merge.substr(space + 1), TokenType::Normal);
  }
  vocab.merges = merges;
  vocab.add_bos = false;
  return vocab;
}

}  // namespace piquant::testing
