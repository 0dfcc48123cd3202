// BpeTokenizer behaviour: merge order, pre-token boundaries, special tokens, BOS/EOS,
// byte-level decoding, bad input. Small hand-made vocabularies need no shared data;
// the Llama 3 checks use ids from llama.cpp's test vectors as the independent reference.
#include <random>
#include <thread>

#include "core/error.h"
#include "support/test_support.h"
#include "tokenizer/bpe_llama3_fixture.h"
#include "tokenizer/unicode_utf8.h"

namespace piquant {
namespace {

using testing::cached_bpe;
using testing::tiny_bpe_vocab;

std::int32_t id_of(const Vocab& vocab, const std::string& text) {
  const auto it = std::find(vocab.tokens.begin(), vocab.tokens.end(), text);
  if (it == vocab.tokens.end()) throw Error("test vocab has no token '" + text + "'");
  return static_cast<std::int32_t>(it - vocab.tokens.begin());
}

std::vector<std::int32_t> ids_of(const Vocab& vocab, const std::vector<std::string>& texts) {
  std::vector<std::int32_t> ids;
  for (const auto& text : texts) ids.push_back(id_of(vocab, text));
  return ids;
}

std::vector<std::int32_t> encode_plain(const Vocab& vocab, std::string_view text) {
  return BpeTokenizer(vocab).encode(text, false, false);
}

TEST(ByteLevelCodec, MatchesGpt2Alphabet) {
  // Published GPT-2 byte-to-unicode values.
  const ByteLevelCodec codec;
  EXPECT_EQ(codec.char_for(' '), "\u0120");    // Ġ
  EXPECT_EQ(codec.char_for('\n'), "\u010A");   // Ċ
  EXPECT_EQ(codec.char_for(0x00), "\u0100");   // Ā
  EXPECT_EQ(codec.char_for(0x7F), "\u0121");   // ġ
  EXPECT_EQ(codec.char_for(0xAD), "\u0143");   // Ń (soft hyphen is not printable)
  EXPECT_EQ(codec.char_for('A'), "A");
  EXPECT_EQ(codec.char_for(0xFF), "\u00FF");
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  EXPECT_EQ(codec.decode(codec.encode(all)), all);
}

TEST(BpeTokenizer, MergesByRankNotPosition) {
  const Vocab bc_first = tiny_bpe_vocab({"b c", "a b"});
  EXPECT_EQ(encode_plain(bc_first, "abc"), ids_of(bc_first, {"a", "bc"}));
  const Vocab ab_first = tiny_bpe_vocab({"a b", "b c"});
  EXPECT_EQ(encode_plain(ab_first, "abc"), ids_of(ab_first, {"ab", "c"}));
}

TEST(BpeTokenizer, EqualRanksMergeLeftmostFirst) {
  const Vocab vocab = tiny_bpe_vocab({"a a", "aa aa"});
  EXPECT_EQ(encode_plain(vocab, "aaa"), ids_of(vocab, {"aa", "a"}));
  EXPECT_EQ(encode_plain(vocab, "aaaa"), ids_of(vocab, {"aaaa"}));
  EXPECT_EQ(encode_plain(vocab, "aaaaa"), ids_of(vocab, {"aaaa", "a"}));
  EXPECT_EQ(encode_plain(vocab, "aaaaaaa"), ids_of(vocab, {"aaaa", "aa", "a"}));
}

TEST(BpeTokenizer, MergesStayInsidePreTokens) {
  // Without the pre-tokenizer "b" + "Ġ" (b, space) would merge.
  const Vocab vocab = tiny_bpe_vocab({"b Ġ", "a b", "Ġ a", "Ġa b"});
  EXPECT_EQ(encode_plain(vocab, "ab ab"), ids_of(vocab, {"ab", "Ġab"}));
  EXPECT_EQ(encode_plain(vocab, "ab  ab"), ids_of(vocab, {"ab", "Ġ", "Ġab"}));
}

TEST(BpeTokenizer, WholeWordTokenSkipsMergesForLlama3Only) {
  // Hugging Face's ignore_merges / llama.cpp's Llama 3 rule: a piece that is a token is used as is.
  Vocab vocab = tiny_bpe_vocab({"a b"}, {"abc"});
  EXPECT_EQ(encode_plain(vocab, "abc"), ids_of(vocab, {"abc"}));
  vocab.pre = "gpt-2";
  EXPECT_EQ(encode_plain(vocab, "abc"), ids_of(vocab, {"ab", "c"}));
}

TEST(BpeTokenizer, SpecialTokensLongestFirstAndOnlyWhenAsked) {
  Vocab vocab = tiny_bpe_vocab({}, {"xy", "yzw", "<|end|>", "<|end|>x"});
  vocab.types[id_of(vocab, "xy")] = TokenType::UserDefined;
  vocab.types[id_of(vocab, "yzw")] = TokenType::UserDefined;
  vocab.types[id_of(vocab, "<|end|>x")] = TokenType::Control;
  const BpeTokenizer tokenizer(vocab);
  // The longer user-defined text wins even though the shorter one starts earlier.
  EXPECT_EQ(tokenizer.encode("xyzw", false, true), ids_of(vocab, {"x", "yzw"}));
  // User-defined tokens are always recognised (as in llama.cpp and Hugging Face); control tokens only on request.
  EXPECT_EQ(tokenizer.encode("xyzw", false, false), ids_of(vocab, {"x", "yzw"}));
  EXPECT_EQ(tokenizer.encode("a<|end|>xb", false, true), ids_of(vocab, {"a", "<|end|>x", "b"}));
  EXPECT_EQ(tokenizer.encode("<|end|><|end|>", false, true), ids_of(vocab, {"<|end|>", "<|end|>"}));
  const auto plain = tokenizer.encode("a<|end|>b", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), id_of(vocab, "<|end|>")), 0);
  EXPECT_EQ(tokenizer.decode(plain), "a<|end|>b");
}

TEST(BpeTokenizer, PiecesByTokenType) {
  Vocab vocab = tiny_bpe_vocab({"Ġ a"}, {"<|ctl|>", "user text", "[PAD999]"});
  vocab.types[id_of(vocab, "user text")] = TokenType::UserDefined;
  vocab.types[id_of(vocab, "[PAD999]")] = TokenType::Unused;
  const BpeTokenizer tokenizer(vocab);
  EXPECT_EQ(tokenizer.token_to_piece(id_of(vocab, "Ġa")), " a");
  EXPECT_EQ(tokenizer.token_to_piece(id_of(vocab, "Ċ")), "\n");
  EXPECT_EQ(tokenizer.token_to_piece(id_of(vocab, "<|ctl|>")), "");
  EXPECT_EQ(tokenizer.token_to_piece(id_of(vocab, "<|ctl|>"), true), "<|ctl|>");
  EXPECT_EQ(tokenizer.token_to_piece(id_of(vocab, "user text")), "user text");
  EXPECT_EQ(tokenizer.token_to_piece(id_of(vocab, "[PAD999]")), "");
  EXPECT_THROW(tokenizer.token_to_piece(-1), Error);
  EXPECT_THROW(tokenizer.token_to_piece(static_cast<std::int32_t>(vocab.size())), Error);
}

TEST(BpeTokenizer, BosAndEosFollowTheVocab) {
  Vocab vocab = tiny_bpe_vocab({}, {"<|bos|>", "<|eos|>"});
  vocab.bos_id = id_of(vocab, "<|bos|>");
  vocab.eos_id = id_of(vocab, "<|eos|>");
  vocab.add_bos = true;
  vocab.add_eos = false;
  const auto a = id_of(vocab, "a");
  EXPECT_EQ(BpeTokenizer(vocab).encode("a", true, false), (std::vector<std::int32_t>{vocab.bos_id, a}));
  EXPECT_EQ(BpeTokenizer(vocab).encode("a", false, false), (std::vector<std::int32_t>{a}));
  EXPECT_EQ(BpeTokenizer(vocab).encode("", true, false), (std::vector<std::int32_t>{vocab.bos_id}));
  vocab.add_bos = false;
  vocab.add_eos = true;
  EXPECT_EQ(BpeTokenizer(vocab).encode("a", true, false), (std::vector<std::int32_t>{a, vocab.eos_id}));
}

TEST(BpeTokenizer, UnusableVocabsAreErrors) {
  Vocab vocab = tiny_bpe_vocab({"a b"});
  vocab.pre = "no-such-pre-tokenizer";
  EXPECT_THROW(BpeTokenizer{vocab}, Error);
  vocab = tiny_bpe_vocab({"a b"});
  vocab.merges.push_back("a zz");
  EXPECT_THROW(BpeTokenizer{vocab}, Error);
  vocab = tiny_bpe_vocab({"a b"});
  vocab.types.pop_back();
  EXPECT_THROW(Tokenizer::create(vocab), Error);
  vocab = tiny_bpe_vocab({"a b"});
  EXPECT_EQ(Tokenizer::create(vocab)->encode("ab", false, false), ids_of(vocab, {"ab"}));
}

TEST(BpeTokenizer, InvalidUtf8BecomesReplacementCharacters) {
  const Vocab vocab = tiny_bpe_vocab({});
  const BpeTokenizer tokenizer(vocab);
  const std::string fffd = "\xEF\xBF\xBD";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a\xFF" "b", "a" + fffd + "b"},
      {"\x80", fffd},
      {"x\xE2\x82", "x" + fffd + fffd},              // truncated 3-byte sequence
      {"\xED\xA0\x80", fffd + fffd + fffd},          // UTF-16 surrogate
      {"\xC0\xAF", fffd + fffd},                     // overlong '/'
      {"\xF4\x90\x80\x80", fffd + fffd + fffd + fffd},  // above U+10FFFF
      {"ok \xE2\x82\xAC", "ok \xE2\x82\xAC"},        // valid (euro sign) stays
  };
  for (const auto& [input, expected] : cases) {
    std::vector<std::int32_t> ids;
    ASSERT_NO_THROW(ids = tokenizer.encode(input, false, true)) << input;
    EXPECT_EQ(tokenizer.decode(ids), expected);
  }
}

// Random strings over many scripts, spaces, digits, marks and emoji.
std::string random_text(std::mt19937& rng) {
  static const std::vector<std::pair<char32_t, char32_t>> ranges = {
      {0x20, 0x7E}, {0x20, 0x7E}, {0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0xFF}, {0x300, 0x36F}, {0x391, 0x3C9},
      {0x410, 0x44F}, {0x660, 0x669}, {0x900, 0x97F}, {0x1780, 0x17FF}, {0x2000, 0x200D}, {0x2028, 0x2029},
      {0x3000, 0x3000}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xFF10, 0xFF5A}, {0x1F300, 0x1FAFF},
      {0xE000, 0xE0FF}, {0x10000, 0x10FFFF}};
  std::uniform_int_distribution<std::size_t> pick_range(0, ranges.size() - 1);
  std::uniform_int_distribution<int> length(0, 40);
  std::string text;
  for (int n = length(rng); n > 0; --n) {
    const auto [lo, hi] = ranges[pick_range(rng)];
    char32_t cp = std::uniform_int_distribution<char32_t>(lo, hi)(rng);
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
    append_utf8(text, cp);
  }
  return text;
}

TEST(BpeTokenizer, Llama3DecodeInvertsEncodeOnRandomText) {
  const auto json = PIQUANT_SHARED_FILE(testing::kLlama3TokenizerJson);
  const BpeTokenizer& tokenizer = *cached_bpe(json.string()).tokenizer;
  std::mt19937 rng(20240611);
  for (int i = 0; i < 3000; ++i) {
    const std::string text = random_text(rng);
    const auto ids = tokenizer.encode(text, false, false);
    ASSERT_EQ(tokenizer.decode(ids), text) << "case " << i;
  }
}

TEST(BpeTokenizer, Llama3SpecialTokensAndBos) {
  const auto json = PIQUANT_SHARED_FILE(testing::kLlama3TokenizerJson);
  const BpeTokenizer& tokenizer = *cached_bpe(json.string()).tokenizer;
  // 9906 = "Hello", 22691 = " Hello", 1917 = " world" (llama.cpp's test vectors).
  const std::string chat = "<|begin_of_text|>Hello<|eot_id|> world";
  EXPECT_EQ(tokenizer.encode(chat, false, true), (std::vector<std::int32_t>{128000, 9906, 128009, 1917}));
  const auto plain = tokenizer.encode(chat, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 128000), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 128009), 0);
  EXPECT_EQ(tokenizer.decode(plain), chat);
  EXPECT_EQ(tokenizer.encode("Hello world", true, false), (std::vector<std::int32_t>{128000, 9906, 1917}));
  EXPECT_EQ(tokenizer.encode("Hello world", true, true), (std::vector<std::int32_t>{128000, 9906, 1917}));
  EXPECT_EQ(tokenizer.decode(std::vector<std::int32_t>{128000, 22691}), " Hello");
  EXPECT_EQ(tokenizer.decode(std::vector<std::int32_t>{128000, 22691}, true), "<|begin_of_text|> Hello");
}

TEST(BpeTokenizer, Llama3ByteTokensDecodeToRawBytes) {
  const auto json = PIQUANT_SHARED_FILE(testing::kLlama3TokenizerJson);
  const BpeTokenizer& tokenizer = *cached_bpe(json.string()).tokenizer;
  // llama.cpp's vectors split U+1F680 (F0 9F 9A 80) into 9468 248 222.
  EXPECT_EQ(tokenizer.token_to_piece(9468), "\xF0\x9F");
  EXPECT_EQ(tokenizer.token_to_piece(248), "\x9A");
  EXPECT_EQ(tokenizer.token_to_piece(222), "\x80");
  EXPECT_EQ(tokenizer.decode(std::vector<std::int32_t>{9468, 248, 222}), "\xF0\x9F\x9A\x80");
  EXPECT_EQ(tokenizer.token_to_piece(220), " ");
  EXPECT_EQ(tokenizer.token_to_piece(198), "\n");
}

TEST(BpeTokenizer, ConcurrentEncodesAgree) {
  const Vocab vocab = tiny_bpe_vocab({"a b", "Ġ a", "Ġa b", "ab ab"});
  const BpeTokenizer tokenizer(vocab);
  std::string text;
  for (int i = 0; i < 2000; ++i) text += i % 7 == 0 ? " ab\n" : "abab ab ";
  const auto expected = tokenizer.encode(text, false, false);
  std::vector<std::vector<std::int32_t>> results(4);
  std::vector<std::thread> threads;
  for (auto& result : results) threads.emplace_back([&] { result = tokenizer.encode(text, false, false); });
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_TRUE(result == expected);
}

}  // namespace
}  // namespace piquant
