#include "tokenizer/bpe_tokenizer.h"

#include <array>
#include <deque>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/bpe_merger.h"
#include "tokenizer/bpe_pretokenizer.h"
#include "tokenizer/bpe_special_splitter.h"
#include "tokenizer/bpe_vocab_checks.h"
#include "tokenizer/byte_level_codec.h"
#include "tokenizer/unicode_utf8.h"

// Invalid UTF-8 input: as llama.cpp does, every byte that is not part of a valid
// sequence is replaced by U+FFFD before pre-tokenizing, so such input encodes without
// error but does not decode back to the same bytes. (llama.cpp lets overlong forms and
// surrogates through as code points; here they count as invalid, as PCRE2 requires.)

namespace piquant {

struct BpeTokenizer::Impl {
  explicit Impl(const Vocab& vocab);  // views vocab's strings: BpeTokenizer keeps vocab_ unchanged

  // The ids of one pre-token (a regex piece) of valid UTF-8 text.
  void encode_word(std::string_view word, std::vector<std::int32_t>& out, BpeMerger::Scratch& scratch,
                   std::vector<std::int32_t>& initial, std::string& byte_text) const;

  ByteLevelCodec codec;
  BpePreTokenizer pre_tokenizer;
  BpeTokenLookup index;
  BpeMerger merger;
  BpeSpecialSplitter specials;
  std::array<std::int32_t, 256> byte_token{};
  // Like llama.cpp and Hugging Face ("ignore_merges") for Llama 3: a whole piece that
  // is itself a token is taken as is, without merging.
  bool ignore_merges = false;
  std::vector<std::string> pieces;  // token_to_piece without render_special
};

namespace {

void check_usable(const Vocab& vocab) {
  if (vocab.kind != TokenizerKind::Bpe) throw Error("BpeTokenizer: the vocabulary is not byte-level BPE");
  // Merges are checked while BpeMerger resolves them; no need to look them up twice.
  check_vocab_tables(vocab, "BPE vocabulary");
}

}  // namespace

BpeTokenizer::Impl::Impl(const Vocab& vocab)
    : pre_tokenizer(vocab.pre), index(vocab.tokens), merger(vocab.merges, index) {
  for (unsigned b = 0; b < 256; ++b) byte_token[b] = index.find(codec.char_for(static_cast<std::uint8_t>(b)));
  ignore_merges = is_llama3_pre(vocab.pre);
  pieces.resize(vocab.tokens.size());
  for (std::size_t id = 0; id < vocab.tokens.size(); ++id) {
    const std::string& text = vocab.tokens[id];
    switch (vocab.types[id]) {
      case TokenType::Normal:
      case TokenType::Byte:
        pieces[id] = codec.decode(text);
        break;
      case TokenType::UserDefined:
        pieces[id] = text;  // stored as plain text, not byte-level (llama.cpp's convention)
        specials.add(text, static_cast<std::int32_t>(id), /*always=*/true);
        break;
      case TokenType::Control:
      case TokenType::Unknown:
        specials.add(text, static_cast<std::int32_t>(id), /*always=*/false);
        break;
      case TokenType::Undefined:
      case TokenType::Unused:
        break;
    }
  }
  specials.finish();
}

void BpeTokenizer::Impl::encode_word(std::string_view word, std::vector<std::int32_t>& out,
                                     BpeMerger::Scratch& scratch, std::vector<std::int32_t>& initial,
                                     std::string& byte_text) const {
  if (word.size() == 1) {
    if (const std::int32_t id = byte_token[static_cast<std::uint8_t>(word[0])]; id >= 0) out.push_back(id);
    return;
  }
  if (ignore_merges) {
    byte_text.clear();
    for (const char c : word) codec.append_encoded(byte_text, static_cast<std::uint8_t>(c));
    if (const std::int32_t id = index.find(byte_text); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  initial.clear();
  for (const char c : word) initial.push_back(byte_token[static_cast<std::uint8_t>(c)]);
  merger.merge(initial, out, scratch);
}

BpeTokenizer::BpeTokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
  check_usable(vocab_);
  impl_ = std::make_unique<Impl>(vocab_);
}

BpeTokenizer::~BpeTokenizer() = default;

std::vector<std::int32_t> BpeTokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special && vocab_.add_bos && vocab_.bos_id >= 0) ids.push_back(vocab_.bos_id);

  // Per-call state only, so one tokenizer serves many threads. The cache maps a piece's
  // bytes to its ids (a slice of cached_ids); prose repeats its words a lot.
  std::unordered_map<std::string_view, std::pair<std::uint32_t, std::uint32_t>> cache;
  std::vector<std::int32_t> cached_ids;
  std::deque<std::string> repaired;  // stable storage for repaired text that the cache views
  std::vector<std::string_view> words;
  BpeMerger::Scratch scratch;
  std::vector<std::int32_t> initial;
  std::string byte_text;
  constexpr std::size_t kMaxCacheEntries = 1 << 18;

  for (const TextFragment& fragment : impl_->specials.split(text, parse_special)) {
    if (fragment.token >= 0) {
      ids.push_back(fragment.token);
      continue;
    }
    std::string_view plain = text.substr(fragment.offset, fragment.length);
    if (!is_valid_utf8(plain)) plain = repaired.emplace_back(replace_invalid_utf8(plain));
    words.clear();
    impl_->pre_tokenizer.split(plain, words);
    for (const std::string_view word : words) {
      if (const auto it = cache.find(word); it != cache.end()) {
        const auto [begin, count] = it->second;
        ids.insert(ids.end(), cached_ids.begin() + begin, cached_ids.begin() + begin + count);
        continue;
      }
      const std::size_t before = ids.size();
      impl_->encode_word(word, ids, scratch, initial, byte_text);
      if (cache.size() < kMaxCacheEntries) {
        const auto begin = static_cast<std::uint32_t>(cached_ids.size());
        cached_ids.insert(cached_ids.end(), ids.begin() + static_cast<std::ptrdiff_t>(before), ids.end());
        cache.emplace(word, std::pair{begin, static_cast<std::uint32_t>(ids.size() - before)});
      }
    }
  }
  if (add_special && vocab_.add_eos && vocab_.eos_id >= 0) ids.push_back(vocab_.eos_id);
  return ids;
}

std::string BpeTokenizer::token_to_piece(std::int32_t id, bool render_special) const {
  if (id < 0 || static_cast<std::size_t>(id) >= vocab_.tokens.size()) {
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                std::to_string(vocab_.tokens.size()));
  }
  const TokenType type = vocab_.types[id];
  if (render_special && (type == TokenType::Control || type == TokenType::Unknown)) return vocab_.tokens[id];
  return impl_->pieces[id];
}

}  // namespace piquant
