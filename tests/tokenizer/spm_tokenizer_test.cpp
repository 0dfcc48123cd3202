// SpmTokenizer on small hand-made vocabs: each test pins one rule of llama.cpp's
// "llama" tokenizer (merge order, byte fallback, space prefix, special tokens, decode).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "support/test_support.h"
#include "tokenizer/spm_tokenizer.h"

namespace piquant {
namespace {

using Ids = std::vector<std::int32_t>;

constexpr std::int32_t kByteBase = 3;  // <0x00> is id 3, as in Llama 2

// <unk>, <s>, </s>, the 256 byte tokens, then the given normal pieces (with scores).
Vocab make_vocab(const std::vector<std::pair<std::string, float>>& pieces, bool add_space_prefix = true) {
  Vocab v;
  v.kind = TokenizerKind::Spm;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.scores = {0, 0, 0};
  v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int b = 0; b < 256; ++b) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    v.tokens.push_back(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">");
    v.scores.push_back(0);
    v.types.push_back(TokenType::Byte);
  }
  for (const auto& [text, score] : pieces) {
    v.tokens.push_back(text);
    v.scores.push_back(score);
    v.types.push_back(TokenType::Normal);
  }
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = add_space_prefix;
  return v;
}

// Id of a normal piece added by make_vocab.
std::int32_t id_of(const Vocab& v, const std::string& text) {
  for (std::size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.tokens[i] == text) return static_cast<std::int32_t>(i);
  }
  ADD_FAILURE() << "no piece " << text;
  return -1;
}

const std::string kSpace = "\xE2\x96\x81";  // '▁'

TEST(SpmTokenizer, MergesTheHighestScoringPairFirst) {
  const Vocab v = make_vocab({{"a", -10}, {"b", -10}, {"c", -10}, {"ab", -2}, {"bc", -1}}, false);
  const SpmTokenizer tok(v);
  // "bc" outscores "ab", so b goes right and "ab" can no longer form.
  EXPECT_EQ(tok.encode("abc", false, false), (Ids{id_of(v, "a"), id_of(v, "bc")}));
}

TEST(SpmTokenizer, EqualScoresMergeLeftmostFirst) {
  const Vocab v = make_vocab({{"a", -10}, {"b", -10}, {"c", -10}, {"ab", -1}, {"bc", -1}}, false);
  const SpmTokenizer tok(v);
  EXPECT_EQ(tok.encode("abc", false, false), (Ids{id_of(v, "ab"), id_of(v, "c")}));
  EXPECT_EQ(tok.encode("abcabc", false, false),
            (Ids{id_of(v, "ab"), id_of(v, "c"), id_of(v, "ab"), id_of(v, "c")}));
}

TEST(SpmTokenizer, MergesRepeatUntilNoPairIsAPiece) {
  const Vocab v = make_vocab({{"a", -10}, {"b", -10}, {"ab", -1}, {"abab", -3}, {"ababa", -4}}, false);
  const SpmTokenizer tok(v);
  // ab ab a -> abab a -> ababa
  EXPECT_EQ(tok.encode("ababa", false, false), (Ids{id_of(v, "ababa")}));
}

TEST(SpmTokenizer, UnknownCharactersFallBackToByteTokens) {
  const Vocab v = make_vocab({{"a", -1}}, false);
  const SpmTokenizer tok(v);
  // U+00E9 is C3 A9 in UTF-8; neither it nor its bytes are pieces.
  EXPECT_EQ(tok.encode("a\xC3\xA9", false, false), (Ids{id_of(v, "a"), kByteBase + 0xC3, kByteBase + 0xA9}));
  // Invalid UTF-8 (a lone continuation byte, a truncated sequence at the end) still encodes.
  EXPECT_EQ(tok.encode("\x80\xE2\x96", false, false), (Ids{kByteBase + 0x80, kByteBase + 0xE2, kByteBase + 0x96}));
  // llama.cpp sizes a character by its lead byte alone: 0xFF swallows the next three
  // bytes, so the "a" after it is not a piece of its own but part of an unknown symbol.
  EXPECT_EQ(tok.encode("\xFF" "aaaa", false, false),
            (Ids{kByteBase + 0xFF, kByteBase + 'a', kByteBase + 'a', kByteBase + 'a', id_of(v, "a")}));
}

TEST(SpmTokenizer, MissingByteTokensUseUnkOrThrow) {
  Vocab v;
  v.kind = TokenizerKind::Spm;
  v.tokens = {"<unk>", "a"};
  v.scores = {0, 0};
  v.types = {TokenType::Unknown, TokenType::Normal};
  v.unk_id = 0;
  v.add_bos = false;
  v.add_space_prefix = false;
  EXPECT_EQ(SpmTokenizer(v).encode("ab", false, false), (Ids{1, 0}));
  v.unk_id = -1;
  EXPECT_THROW(SpmTokenizer(v).encode("ab", false, false), Error);
}

TEST(SpmTokenizer, SpacesBecomeMarkersAndAPrefixIsAdded) {
  const Vocab v = make_vocab({{kSpace, -5}, {"a", -5}, {"b", -5}, {kSpace + "a", -1}, {kSpace + "b", -1}});
  const SpmTokenizer tok(v);
  const Ids expected{id_of(v, kSpace + "a"), id_of(v, kSpace + "b")};
  EXPECT_EQ(tok.encode("a b", false, false), expected);
  EXPECT_EQ(tok.encode(" a b", false, false), (Ids{id_of(v, kSpace), id_of(v, kSpace + "a"), id_of(v, kSpace + "b")}));
  // Only ' ' is escaped: a tab stays a byte.
  EXPECT_EQ(tok.encode("\t", false, false), (Ids{id_of(v, kSpace), kByteBase + '\t'}));
  // No prefix for empty text.
  EXPECT_EQ(tok.encode("", false, false), Ids{});
}

TEST(SpmTokenizer, NoPrefixWhenTheVocabSaysSo) {
  const Vocab v = make_vocab({{kSpace, -5}, {"a", -5}, {"b", -5}, {kSpace + "b", -1}}, false);
  const SpmTokenizer tok(v);
  EXPECT_EQ(tok.encode("a b", false, false), (Ids{id_of(v, "a"), id_of(v, kSpace + "b")}));
}

TEST(SpmTokenizer, AddSpecialAddsBosAndEosAsConfigured) {
  Vocab v = make_vocab({{kSpace, -5}, {"a", -5}, {kSpace + "a", -1}});
  const std::int32_t a = id_of(v, kSpace + "a");
  EXPECT_EQ(SpmTokenizer(v).encode("a", true, false), (Ids{1, a}));
  EXPECT_EQ(SpmTokenizer(v).encode("", true, false), (Ids{1}));
  v.add_eos = true;
  EXPECT_EQ(SpmTokenizer(v).encode("a", true, false), (Ids{1, a, 2}));
  EXPECT_EQ(SpmTokenizer(v).encode("a", false, false), (Ids{a}));
  v.add_bos = false;
  EXPECT_EQ(SpmTokenizer(v).encode("a", true, false), (Ids{a, 2}));
}

TEST(SpmTokenizer, ParseSpecialSplitsControlTokensAndReaddsThePrefix) {
  const Vocab v = make_vocab({{kSpace, -5}, {"a", -5}, {"b", -5}, {kSpace + "a", -1}});
  const SpmTokenizer tok(v);
  const std::int32_t sa = id_of(v, kSpace + "a");
  const std::int32_t sp = id_of(v, kSpace);
  const std::int32_t b = id_of(v, "b");
  // After a special token, the text gets the space prefix again (llama.cpp).
  EXPECT_EQ(tok.encode("a</s>b", false, true), (Ids{sa, 2, sp, b}));
  EXPECT_EQ(tok.encode("<s>a", true, true), (Ids{1, 1, sa}));
  EXPECT_EQ(tok.encode("</s>", false, true), (Ids{2}));
  // Without parse_special the same text is plain characters (here: byte fallback).
  EXPECT_EQ(tok.encode("a<s>", false, false), (Ids{sa, kByteBase + '<', kByteBase + 's', kByteBase + '>'}));
}

TEST(SpmTokenizer, LongerSpecialTokensWinOverShorterOnes) {
  Vocab v = make_vocab({{kSpace, -5}, {"x", -5}});
  v.tokens.push_back("<s>x");
  v.scores.push_back(0);
  v.types.push_back(TokenType::Control);
  const auto long_id = static_cast<std::int32_t>(v.tokens.size() - 1);
  const SpmTokenizer tok(v);
  EXPECT_EQ(tok.encode("<s>x<s>", false, true), (Ids{long_id, 1}));
}

TEST(SpmTokenizer, UserDefinedTokensAreAlwaysRecognised) {
  Vocab v = make_vocab({{kSpace, -5}, {"a", -5}, {kSpace + "a", -1}});
  v.tokens.push_back("<tool>");
  v.scores.push_back(0);
  v.types.push_back(TokenType::UserDefined);
  const auto tool = static_cast<std::int32_t>(v.tokens.size() - 1);
  const SpmTokenizer tok(v);
  const Ids expected{id_of(v, kSpace + "a"), tool, id_of(v, kSpace + "a")};
  EXPECT_EQ(tok.encode("a<tool>a", false, false), expected);
  EXPECT_EQ(tok.encode("a<tool>a", false, true), expected);
  EXPECT_EQ(tok.token_to_piece(tool), "<tool>");
}

TEST(SpmTokenizer, MergesAcrossSpacesWhenTheVocabHasSuchPieces) {
  // A piece with '▁' in the middle turns off chunking at spaces; the merge must still happen.
  const Vocab v = make_vocab({{kSpace, -5}, {"a", -5}, {"b", -5}, {"a" + kSpace, -2}, {"a" + kSpace + "b", -1}},
                             false);
  const SpmTokenizer tok(v);
  EXPECT_EQ(tok.encode("a b", false, false), (Ids{id_of(v, "a" + kSpace + "b")}));
}

TEST(SpmTokenizer, TokenToPieceRendersBytesSpacesAndSpecials) {
  const Vocab v = make_vocab({{kSpace + "a" + kSpace, -1}});
  const SpmTokenizer tok(v);
  EXPECT_EQ(tok.token_to_piece(id_of(v, kSpace + "a" + kSpace)), " a ");
  EXPECT_EQ(tok.token_to_piece(kByteBase + 0x0A), "\n");
  EXPECT_EQ(tok.token_to_piece(kByteBase + 0xFF), "\xFF");
  EXPECT_EQ(tok.token_to_piece(1), "");
  EXPECT_EQ(tok.token_to_piece(1, true), "<s>");
  EXPECT_EQ(tok.token_to_piece(0), "");
  EXPECT_EQ(tok.token_to_piece(0, true), "<unk>");
  EXPECT_THROW(tok.token_to_piece(-1), Error);
  EXPECT_THROW(tok.token_to_piece(static_cast<std::int32_t>(v.size())), Error);
}

TEST(SpmTokenizer, DecodeDropsOnlyTheFirstTokensLeadingSpace) {
  const Vocab v = make_vocab({{kSpace, -5}, {"a", -5}, {kSpace + "a", -1}});
  const SpmTokenizer tok(v);
  const std::int32_t sa = id_of(v, kSpace + "a");
  EXPECT_EQ(tok.decode(Ids{sa, sa}), "a a");
  // As llama.cpp's detokenizer: with a BOS first, the BOS is the first token.
  EXPECT_EQ(tok.decode(Ids{1, sa}), " a");
  EXPECT_EQ(tok.decode(Ids{1, sa}, true), "<s> a");
  EXPECT_EQ(tok.decode(Ids{kByteBase + 0xC3, kByteBase + 0xA9}), "\xC3\xA9");
  for (const std::string text : {"a a", "  a", "\xC3\xA9 a\t", " ", ""}) {
    EXPECT_EQ(tok.decode(tok.encode(text, false, false)), text);
  }
  Vocab no_prefix = v;
  no_prefix.add_space_prefix = false;
  EXPECT_EQ(SpmTokenizer(no_prefix).decode(Ids{sa, sa}), " a a");
}

TEST(SpmTokenizer, RejectsUnusableVocabs) {
  Vocab v = make_vocab({{"a", -1}});
  v.scores.pop_back();
  EXPECT_THROW(SpmTokenizer{v}, Error);
  v.scores.clear();  // no scores at all: llama.cpp uses 0 for every piece
  EXPECT_NO_THROW(SpmTokenizer{v});
  v = make_vocab({{"a", -1}});
  v.types.pop_back();
  EXPECT_THROW(SpmTokenizer{v}, Error);
  v = make_vocab({{"a", -1}});
  v.bos_id = static_cast<std::int32_t>(v.size());
  EXPECT_THROW(SpmTokenizer{v}, Error);
  v.add_bos = false;
  EXPECT_THROW(SpmTokenizer{v}, Error);
  v.bos_id = -1;  // no BOS is fine when none is added
  EXPECT_NO_THROW(SpmTokenizer{v});
  v.add_bos = true;
  EXPECT_THROW(SpmTokenizer{v}, Error);
  v = make_vocab({{"a", -1}});
  v.kind = TokenizerKind::Bpe;
  EXPECT_THROW(SpmTokenizer{v}, Error);
}

TEST(SpmTokenizer, NanScoresDoNotBreakMerging) {
  const Vocab v = make_vocab({{"a", -1}, {"b", -1}, {"ab", std::nanf("")}, {"ba", -1}}, false);
  const SpmTokenizer tok(v);
  // The NaN piece ranks below every real score.
  EXPECT_EQ(tok.encode("aba", false, false), (Ids{id_of(v, "a"), id_of(v, "ba")}));
}

}  // namespace
}  // namespace piquant
