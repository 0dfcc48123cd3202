#include "tokenizer/vocab.h"

#include <string_view>
#include <unordered_set>

#include "core/error.h"
#include "tokenizer/bpe_merge_text.h"

namespace piquant {
namespace {

void check_special_id(const std::string& source, const char* field, std::int32_t id, std::size_t n_tokens) {
  if (id < -1 || (id >= 0 && static_cast<std::size_t>(id) >= n_tokens)) {
    throw FormatError(source, field,
                      "token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(n_tokens));
  }
}

void check_merges(const Vocab& vocab, const std::string& source) {
  std::unordered_set<std::string_view> known(vocab.tokens.begin(), vocab.tokens.end());
  std::string joined;
  for (std::size_t i = 0; i < vocab.merges.size(); ++i) {
    const std::string& merge = vocab.merges[i];
    const std::string field = "merges[" + std::to_string(i) + "]";
    const auto pair = split_bpe_merge(merge);
    if (!pair) throw FormatError(source, field, "'" + merge + "' is not two tokens separated by a space");
    for (const std::string_view part : {pair->first, pair->second}) {
      if (!known.contains(part)) {
        throw FormatError(source, field, "'" + merge + "' refers to '" + std::string(part) + "', which is not a token");
      }
    }
    joined.assign(pair->first).append(pair->second);
    if (!known.contains(joined)) {
      throw FormatError(source, field, "'" + merge + "' makes '" + joined + "', which is not a token");
    }
  }
}

}  // namespace

void Vocab::validate(const std::string& source) const {
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
  check_special_id(source, "bos_token_id", bos_id, tokens.size());
  check_special_id(source, "eos_token_id", eos_id, tokens.size());
  check_special_id(source, "eot_token_id", eot_id, tokens.size());
  check_special_id(source, "eom_token_id", eom_id, tokens.size());
  check_special_id(source, "unknown_token_id", unk_id, tokens.size());
  check_special_id(source, "padding_token_id", pad_id, tokens.size());
  if (kind == TokenizerKind::Bpe) check_merges(*this, source);
}

}  // namespace piquant
