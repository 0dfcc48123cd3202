#include "tokenizer/vocab.h"

#include <string_view>

#include "core/error.h"
#include "tokenizer/bpe_merge_text.h"
#include "tokenizer/bpe_token_lookup.h"
#include "tokenizer/bpe_vocab_checks.h"

namespace piquant {
namespace {

void check_special_id(const std::string& source, const char* field, std::int32_t id, std::size_t n_tokens) {
  if (id < -1 || (id >= 0 && static_cast<std::size_t>(id) >= n_tokens)) {
    throw FormatError(source, field,
                      "token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(n_tokens));
  }
}

}  // namespace

void check_bpe_merges(const Vocab& vocab, const std::string& source) {
  const BpeTokenLookup known(vocab.tokens);
  const auto fail = [&](std::size_t i, const std::string& problem) {
    throw FormatError(source, "merges[" + std::to_string(i) + "]", "'" + vocab.merges[i] + "' " + problem);
  };
  std::string joined;
  for (std::size_t i = 0; i < vocab.merges.size(); ++i) {
    const auto pair = split_bpe_merge(vocab.merges[i]);
    if (!pair) fail(i, "is not two tokens separated by a space");
    for (const std::string_view part : {pair->first, pair->second}) {
      if (!known.contains(part)) fail(i, "refers to '" + std::string(part) + "', which is not a token");
    }
    joined.assign(pair->first).append(pair->second);
    if (!known.contains(joined)) fail(i, "makes '" + joined + "', which is not a token");
  }
}

void check_vocab_tables(const Vocab& vocab, const std::string& source) {
  const auto& tokens = vocab.tokens;
  const auto& types = vocab.types;
  const auto& scores = vocab.scores;
  if (tokens.empty()) throw FormatError(source, "tokens", "the vocabulary is empty");
  if (types.size() != tokens.size()) {
    throw FormatError(source, "token_type",
                      std::to_string(types.size()) + " token types for " + std::to_string(tokens.size()) + " tokens");
  }
  if (!scores.empty() && scores.size() != tokens.size()) {
    throw FormatError(source, "scores",
                      std::to_string(scores.size()) + " scores for " + std::to_string(tokens.size()) + " tokens");
  }
  for (std::size_t i = 0; i < types.size(); ++i) {
    const auto value = static_cast<std::int32_t>(types[i]);
    if (value < static_cast<std::int32_t>(TokenType::Undefined) || value > static_cast<std::int32_t>(TokenType::Byte)) {
      throw FormatError(source, "token_type[" + std::to_string(i) + "]",
                        "unknown token type " + std::to_string(value));
    }
  }
  check_special_id(source, "bos_token_id", vocab.bos_id, tokens.size());
  check_special_id(source, "eos_token_id", vocab.eos_id, tokens.size());
  check_special_id(source, "eot_token_id", vocab.eot_id, tokens.size());
  check_special_id(source, "eom_token_id", vocab.eom_id, tokens.size());
  check_special_id(source, "unknown_token_id", vocab.unk_id, tokens.size());
  check_special_id(source, "padding_token_id", vocab.pad_id, tokens.size());
}

void Vocab::validate(const std::string& source) const {
  check_vocab_tables(*this, source);
  if (kind == TokenizerKind::Bpe) check_bpe_merges(*this, source);
}

}  // namespace piquant
