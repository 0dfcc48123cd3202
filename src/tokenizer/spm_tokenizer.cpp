#include "tokenizer/spm_tokenizer.h"

#include <cstdint>
#include <string>

#include "core/error.h"
#include "tokenizer/spm_byte_token.h"
#include "tokenizer/spm_merge.h"
#include "tokenizer/spm_piece_table.h"
#include "tokenizer/spm_special_split.h"

namespace piquant {

namespace {

void check_vocab(const Vocab& vocab) {
  const std::size_t n = vocab.tokens.size();
  if (n == 0) throw Error("SPM tokenizer: the vocab is empty");
  if (n > static_cast<std::size_t>(INT32_MAX)) throw Error("SPM tokenizer: the vocab is too large");
  // llama.cpp reads a missing score array as all zeros.
  if (!vocab.scores.empty() && vocab.scores.size() != n) {
    throw Error("SPM tokenizer: " + std::to_string(vocab.scores.size()) + " scores for " + std::to_string(n) +
                " tokens");
  }
  if (vocab.types.size() != n) {
    throw Error("SPM tokenizer: " + std::to_string(vocab.types.size()) + " token types for " + std::to_string(n) +
                " tokens");
  }
  const auto check_id = [n](std::int32_t id, const char* name, bool required) {
    if (id == -1 && !required) return;
    if (id < 0 || static_cast<std::size_t>(id) >= n) {
      throw Error(std::string("SPM tokenizer: ") + name + " id " + std::to_string(id) + " is not a token id (vocab size " +
                  std::to_string(n) + ")");
    }
  };
  check_id(vocab.bos_id, "BOS", vocab.add_bos);
  check_id(vocab.eos_id, "EOS", vocab.add_eos);
  check_id(vocab.unk_id, "UNK", false);
}

// Token text with '▁' turned back into spaces.
std::string unescape_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    if (text.substr(pos).starts_with(kSpmSpaceMarker)) {
      out += ' ';
      pos += kSpmSpaceMarker.size();
    } else {
      out += text[pos++];
    }
  }
  return out;
}

// What a token decodes to when special tokens are not rendered (llama.cpp's rules:
// control and unknown tokens vanish, user-defined ones stay as written).
std::string plain_piece(const std::string& text, TokenType type) {
  switch (type) {
    case TokenType::Normal:
      return unescape_spaces(text);
    case TokenType::Byte:
      if (const auto byte = parse_byte_token(text)) return std::string(1, static_cast<char>(*byte));
      return unescape_spaces(text);  // a "byte" token not named <0xNN>: best effort
    case TokenType::UserDefined:
      return text;
    case TokenType::Control:
    case TokenType::Unknown:
    case TokenType::Unused:
    case TokenType::Undefined:
      return {};
  }
  return {};
}

}  // namespace

struct SpmTokenizer::Impl {
  explicit Impl(const Vocab& vocab) : table(vocab), splitter(vocab) {
    pieces.reserve(vocab.size());
    for (std::size_t id = 0; id < vocab.size(); ++id) pieces.push_back(plain_piece(vocab.tokens[id], vocab.types[id]));
  }

  SpmPieceTable table;
  SpmSpecialSplitter splitter;
  std::vector<std::string> pieces;  // token_to_piece without render_special
};

SpmTokenizer::SpmTokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
  if (vocab_.kind != TokenizerKind::Spm) throw Error("SPM tokenizer: the vocab is not an SPM vocab");
  check_vocab(vocab_);
  impl_ = std::make_unique<Impl>(vocab_);
}

SpmTokenizer::~SpmTokenizer() = default;

std::vector<std::int32_t> SpmTokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special && vocab_.add_bos) ids.push_back(vocab_.bos_id);

  // llama.cpp adds the space prefix to the text at the start and after each special token.
  bool after_special = true;
  std::string escaped;
  for (const SpmFragment& fragment : impl_->splitter.split(text, parse_special)) {
    if (fragment.is_token()) {
      ids.push_back(fragment.token);
      after_special = true;
      continue;
    }
    const std::string_view raw = text.substr(fragment.begin, fragment.end - fragment.begin);
    escaped.clear();
    escaped.reserve(raw.size() + raw.size() / 2 + kSpmSpaceMarker.size());
    if (vocab_.add_space_prefix && after_special) escaped += kSpmSpaceMarker;
    for (const char c : raw) {
      if (c == ' ') {
        escaped += kSpmSpaceMarker;
      } else {
        escaped += c;
      }
    }
    spm_merge_encode(impl_->table, escaped, ids);
    after_special = false;
  }

  if (add_special && vocab_.add_eos) ids.push_back(vocab_.eos_id);
  return ids;
}

std::string SpmTokenizer::token_to_piece(std::int32_t id, bool render_special) const {
  if (id < 0 || static_cast<std::size_t>(id) >= vocab_.size()) {
    throw Error("SPM tokenizer: token id " + std::to_string(id) + " is out of range (vocab size " +
                std::to_string(vocab_.size()) + ")");
  }
  const auto index = static_cast<std::size_t>(id);
  const TokenType type = vocab_.types[index];
  if (render_special && (type == TokenType::Control || type == TokenType::Unknown)) return vocab_.tokens[index];
  return impl_->pieces[index];
}

std::string SpmTokenizer::decode(std::span<const std::int32_t> ids, bool render_special) const {
  std::string text;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    std::string piece = token_to_piece(ids[i], render_special);
    // Like llama.cpp's detokenizer: only the very first token loses the space the
    // prefix added (a BOS in front keeps it).
    if (i == 0 && vocab_.add_space_prefix && !piece.empty() && piece.front() == ' ') piece.erase(0, 1);
    text += piece;
  }
  return text;
}

}  // namespace piquant
