// tokenizer.ggml.* keys <-> Vocab, for both tokenizer kinds, as llama.cpp reads and
// its converter (gguf-py) writes them.
#include <optional>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/bpe_pretokenizer.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

constexpr const char* kModel = "tokenizer.ggml.model";
constexpr const char* kPre = "tokenizer.ggml.pre";
constexpr const char* kTokens = "tokenizer.ggml.tokens";
constexpr const char* kScores = "tokenizer.ggml.scores";
constexpr const char* kTokenType = "tokenizer.ggml.token_type";
constexpr const char* kMerges = "tokenizer.ggml.merges";
constexpr const char* kBos = "tokenizer.ggml.bos_token_id";
constexpr const char* kEos = "tokenizer.ggml.eos_token_id";
constexpr const char* kEot = "tokenizer.ggml.eot_token_id";
constexpr const char* kEom = "tokenizer.ggml.eom_token_id";
constexpr const char* kUnk = "tokenizer.ggml.unknown_token_id";
constexpr const char* kPad = "tokenizer.ggml.padding_token_id";
constexpr const char* kAddBos = "tokenizer.ggml.add_bos_token";
constexpr const char* kAddEos = "tokenizer.ggml.add_eos_token";
constexpr const char* kAddSpacePrefix = "tokenizer.ggml.add_space_prefix";
constexpr const char* kChatTemplate = "tokenizer.chat_template";

// llama.cpp's defaults when a key is absent.
bool default_add_space_prefix(TokenizerKind kind) { return kind == TokenizerKind::Spm; }
bool default_add_bos(TokenizerKind kind, const std::string& pre) {
  return kind == TokenizerKind::Spm || is_llama3_pre(pre);
}

const GgufValue* find_array(const GgufFile& gguf, const char* key, bool required) {
  const GgufValue* value = gguf.find(key);
  if (value == nullptr) {
    if (required) throw FormatError(gguf.path(), key, "missing");
    return nullptr;
  }
  if (!value->is_array()) throw FormatError(gguf.path(), key, std::string("is ") + gguf_type_name(value->type()) + ", not an array");
  return value;
}

void check_element_type(const GgufFile& gguf, const char* key, const GgufValue& array, bool ok, const char* wanted) {
  if (!ok) {
    throw FormatError(gguf.path(), key,
                      std::string("array of ") + gguf_type_name(array.element_type()) + ", expected " + wanted);
  }
}

void check_length(const GgufFile& gguf, const char* key, std::size_t length, std::size_t n_tokens) {
  if (length != n_tokens) {
    throw FormatError(gguf.path(), key,
                      std::to_string(length) + " entries for " + std::to_string(n_tokens) + " tokens");
  }
}

bool is_integer_type(GgufType type) {
  switch (type) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64:
      return true;
    default:
      return false;
  }
}

// A special token id: absent -> fallback; -1 (some writers' "none") -> -1; else must be a token.
std::int32_t read_token_id(const GgufFile& gguf, const char* key, std::size_t n_tokens, std::int32_t fallback) {
  const GgufValue* value = gguf.find(key);
  if (value == nullptr) return fallback;
  if (value->is_array() || !is_integer_type(value->type())) {
    throw FormatError(gguf.path(), key, std::string("is ") + gguf_type_name(value->type()) + ", not an integer");
  }
  const std::int64_t id = value->as_int();
  if (id == -1) return -1;
  if (id < 0 || static_cast<std::uint64_t>(id) >= n_tokens) {
    throw FormatError(gguf.path(), key,
                      "token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(n_tokens));
  }
  return static_cast<std::int32_t>(id);
}

}  // namespace

Vocab load_vocab_gguf(const GgufFile& gguf) {
  const std::string& path = gguf.path();
  Vocab vocab;
  const std::string model = gguf.get_string(kModel);
  if (model == "gpt2") {
    vocab.kind = TokenizerKind::Bpe;
  } else if (model == "llama") {
    vocab.kind = TokenizerKind::Spm;
  } else {
    throw FormatError(path, kModel, "tokenizer '" + model + "' is not supported (gpt2 or llama)");
  }
  vocab.pre = gguf.get_string(kPre, "default");

  const GgufValue* tokens = find_array(gguf, kTokens, true);
  check_element_type(gguf, kTokens, *tokens, tokens->element_type() == GgufType::STRING, "STRING");
  vocab.tokens = tokens->as_string_array();
  const std::size_t n = vocab.tokens.size();
  if (n == 0) throw FormatError(path, kTokens, "empty");

  if (const GgufValue* scores = find_array(gguf, kScores, false)) {
    check_element_type(gguf, kScores, *scores,
                       scores->element_type() == GgufType::FLOAT32 || scores->element_type() == GgufType::FLOAT64,
                       "FLOAT32");
    check_length(gguf, kScores, scores->as_array().size(), n);
    vocab.scores = scores->as_float_array();
  }

  if (const GgufValue* types = find_array(gguf, kTokenType, false)) {
    check_element_type(gguf, kTokenType, *types, is_integer_type(types->element_type()), "INT32");
    check_length(gguf, kTokenType, types->as_array().size(), n);
    vocab.types.reserve(n);
    const std::vector<std::int64_t> values = types->as_int_array();
    for (std::size_t i = 0; i < n; ++i) {
      if (values[i] < static_cast<std::int64_t>(TokenType::Undefined) || values[i] > static_cast<std::int64_t>(TokenType::Byte)) {
        throw FormatError(path, std::string(kTokenType) + "[" + std::to_string(i) + "]",
                          "unknown token type " + std::to_string(values[i]));
      }
      vocab.types.push_back(static_cast<TokenType>(values[i]));
    }
  } else {
    vocab.types.assign(n, TokenType::Normal);
  }

  if (const GgufValue* merges = find_array(gguf, kMerges, vocab.kind == TokenizerKind::Bpe)) {
    check_element_type(gguf, kMerges, *merges, merges->element_type() == GgufType::STRING, "STRING");
    vocab.merges = merges->as_string_array();
  }

  // Like llama.cpp, a SentencePiece vocab without these keys uses <unk>=0, <s>=1, </s>=2.
  const bool spm = vocab.kind == TokenizerKind::Spm && n > 2;
  vocab.bos_id = read_token_id(gguf, kBos, n, spm ? 1 : -1);
  vocab.eos_id = read_token_id(gguf, kEos, n, spm ? 2 : -1);
  vocab.unk_id = read_token_id(gguf, kUnk, n, spm ? 0 : -1);
  vocab.eot_id = read_token_id(gguf, kEot, n, -1);
  vocab.eom_id = read_token_id(gguf, kEom, n, -1);
  vocab.pad_id = read_token_id(gguf, kPad, n, -1);
  // Older Llama 3 GGUFs lack the end-of-turn keys; like llama.cpp, find them by their text
  // so that chat stops after the assistant's turn.
  for (auto [id, text] : {std::pair{&vocab.eot_id, "<|eot_id|>"}, std::pair{&vocab.eom_id, "<|eom_id|>"}}) {
    if (*id >= 0) continue;
    for (std::size_t i = 0; i < vocab.tokens.size(); ++i) {
      if (vocab.tokens[i] == text && i < vocab.types.size() && vocab.types[i] == TokenType::Control) {
        *id = static_cast<std::int32_t>(i);
        break;
      }
    }
  }
  vocab.add_bos = gguf.get_bool(kAddBos, default_add_bos(vocab.kind, vocab.pre));
  vocab.add_eos = gguf.get_bool(kAddEos, false);
  vocab.add_space_prefix = gguf.get_bool(kAddSpacePrefix, default_add_space_prefix(vocab.kind));
  vocab.chat_template = gguf.get_string(kChatTemplate, "");
  vocab.validate(path);
  return vocab;
}

void write_vocab_gguf(const Vocab& vocab, GgufWriter& writer) {
  vocab.validate("vocabulary for GGUF");
  writer.set(kModel, vocab.kind == TokenizerKind::Bpe ? "gpt2" : "llama");
  writer.set(kPre, vocab.pre);
  writer.set(kTokens, GgufValue::string_array(vocab.tokens));
  if (!vocab.scores.empty()) writer.set(kScores, GgufValue::float32_array(vocab.scores));
  std::vector<std::int32_t> types;
  types.reserve(vocab.types.size());
  for (const TokenType type : vocab.types) types.push_back(static_cast<std::int32_t>(type));
  writer.set(kTokenType, GgufValue::int32_array(types));
  if (vocab.kind == TokenizerKind::Bpe) writer.set(kMerges, GgufValue::string_array(vocab.merges));
  // gguf-py's order: bos, eos, unk, pad; then the end-of-turn ids.
  for (const auto& [key, id] : {std::pair{kBos, vocab.bos_id}, std::pair{kEos, vocab.eos_id}, std::pair{kUnk, vocab.unk_id},
                                std::pair{kPad, vocab.pad_id}, std::pair{kEot, vocab.eot_id}, std::pair{kEom, vocab.eom_id}}) {
    if (id >= 0) writer.set(key, static_cast<std::uint32_t>(id));
  }
  // Always explicit: llama.cpp's defaults for these have changed over time.
  writer.set(kAddBos, vocab.add_bos);
  writer.set(kAddEos, vocab.add_eos);
  if (vocab.add_space_prefix != default_add_space_prefix(vocab.kind)) writer.set(kAddSpacePrefix, vocab.add_space_prefix);
  if (!vocab.chat_template.empty()) writer.set(kChatTemplate, vocab.chat_template);
}

}  // namespace piquant
