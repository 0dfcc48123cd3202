#include "tokenizer/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <string>
#include <vector>

#include <cstdint>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/bpe_pretokenizer.h"
#include "tokenizer/byte_level_codec.h"

namespace piquant {
namespace {

// Words as GPT-2-style pre-tokens: an optional leading space plus a run of letters,
// digits (up to 3) or other symbols. Merges never cross these boundaries.
std::vector<std::string> split_words_simple(std::string_view text) {
  std::vector<std::string> words;
  std::size_t i = 0;
  const auto cls = [](unsigned char c) { return std::isalpha(c) || c >= 0x80 ? 0 : std::isdigit(c) ? 1 : std::isspace(c) ? 2 : 3; };
  while (i < text.size()) {
    const std::size_t start = i;
    if (text[i] == ' ' && i + 1 < text.size() && cls(static_cast<unsigned char>(text[i + 1])) != 2) ++i;
    const int kind = cls(static_cast<unsigned char>(text[i]));
    std::size_t limit = kind == 1 ? 3 : text.size();
    while (i < text.size() && limit > 0 && cls(static_cast<unsigned char>(text[i])) == kind) {
      ++i;
      --limit;
    }
    words.emplace_back(text.substr(start, i - start));
  }
  return words;
}

constexpr std::array<const char*, 8> kSpecials = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
};

std::vector<std::string> split_words(std::string_view text, BpeWordSplit split) {
  if (split == BpeWordSplit::Simple) return split_words_simple(text);
  const BpePreTokenizer pretokenizer{std::string(kPreLlama3)};
  std::vector<std::string_view> pieces;
  pretokenizer.split(text, pieces);
  return {pieces.begin(), pieces.end()};
}

// Each distinct word once with its count, in byte order of the words (a deterministic order).
std::map<std::string, std::size_t> count_words(std::string_view text, const BpeTrainerOptions& options) {
  if (options.special_tokens > kSpecials.size()) throw Error("bpe trainer: at most 8 special tokens");
  if (options.vocab_size < 256 + options.special_tokens) throw Error("bpe trainer: vocab_size too small for 256 bytes");
  std::map<std::string, std::size_t> counts;
  for (const auto& w : split_words(text, options.word_split)) ++counts[w];
  return counts;
}

std::array<std::string, 256> byte_symbols() {
  const ByteLevelCodec codec;
  std::array<std::string, 256> symbols;
  for (int b = 0; b < 256; ++b) symbols[static_cast<std::size_t>(b)] = std::string(codec.char_for(static_cast<std::uint8_t>(b)));
  return symbols;
}

// Records a merge; two merge paths can build the same text ("ab"+"c", "a"+"bc"): one token serves both.
void add_merge(Vocab& vocab, const std::string& left, const std::string& right) {
  vocab.merges.push_back(left + " " + right);
  if (std::find(vocab.tokens.begin(), vocab.tokens.end(), left + right) == vocab.tokens.end()) {
    vocab.tokens.push_back(left + right);
  }
}

// Reserved specials up to vocab_size if the text ran out of pairs, then the special tokens.
void finish_vocab(Vocab& vocab, const BpeTrainerOptions& options) {
  vocab.types.assign(vocab.tokens.size(), TokenType::Normal);
  const std::size_t first_special = options.vocab_size - options.special_tokens;
  for (std::size_t i = vocab.tokens.size(); i < first_special; ++i) {
    vocab.tokens.push_back("<|reserved_special_token_" + std::to_string(100 + i) + "|>");
    vocab.types.push_back(TokenType::Control);
  }
  for (std::size_t i = 0; i < options.special_tokens; ++i) {
    vocab.tokens.emplace_back(kSpecials[i]);
    vocab.types.push_back(TokenType::Control);
  }
  const auto id_of = [&](std::string_view token) -> std::int32_t {
    const auto it = std::find(vocab.tokens.begin(), vocab.tokens.end(), token);
    return it == vocab.tokens.end() ? -1 : static_cast<std::int32_t>(it - vocab.tokens.begin());
  };
  vocab.bos_id = id_of("<|begin_of_text|>");
  vocab.eos_id = id_of("<|end_of_text|>");
  vocab.eot_id = id_of("<|eot_id|>");
  vocab.add_bos = true;
  vocab.add_space_prefix = false;
}

Vocab byte_vocab(const std::array<std::string, 256>& symbols) {
  Vocab vocab;
  vocab.kind = TokenizerKind::Bpe;
  vocab.pre = "llama-bpe";
  for (const auto& s : symbols) vocab.tokens.push_back(s);
  return vocab;
}

}  // namespace

namespace reference {

Vocab train_byte_level_bpe(std::string_view text, const BpeTrainerOptions& options) {
  const auto counts = count_words(text, options);
  const std::size_t n_merges = options.vocab_size - 256 - options.special_tokens;
  const auto symbols = byte_symbols();
  std::vector<std::vector<std::string>> words;
  std::vector<std::size_t> freq;
  for (const auto& [word, count] : counts) {
    std::vector<std::string> parts;
    for (const char c : word) parts.push_back(symbols[static_cast<unsigned char>(c)]);
    words.push_back(std::move(parts));
    freq.push_back(count);
  }
  Vocab vocab = byte_vocab(symbols);
  while (vocab.tokens.size() < 256 + n_merges) {
    std::map<std::pair<std::string, std::string>, std::size_t> pairs;
    for (std::size_t w = 0; w < words.size(); ++w) {
      for (std::size_t i = 0; i + 1 < words[w].size(); ++i) pairs[{words[w][i], words[w][i + 1]}] += freq[w];
    }
    if (pairs.empty()) break;
    // Most frequent pair; the map's order breaks ties (the first maximum is the smallest pair).
    const auto best = std::max_element(pairs.begin(), pairs.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
    const auto [left, right] = best->first;
    add_merge(vocab, left, right);
    for (auto& parts : words) {
      std::vector<std::string> merged;
      for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i + 1 < parts.size() && parts[i] == left && parts[i + 1] == right) {
          merged.push_back(left + right);
          ++i;
        } else {
          merged.push_back(parts[i]);
        }
      }
      parts = std::move(merged);
    }
  }
  finish_vocab(vocab, options);
  return vocab;
}

}  // namespace reference

Vocab train_byte_level_bpe(std::string_view text, const BpeTrainerOptions& options) {
  const auto counts = count_words(text, options);
  const std::size_t n_merges = options.vocab_size - 256 - options.special_tokens;
  const auto symbols = byte_symbols();

  // Symbols are interned: equal text, equal id (two merge paths to one string share it).
  std::vector<std::string> text_of;
  std::unordered_map<std::string, std::uint32_t> id_of;
  const auto intern = [&](const std::string& s) {
    const auto [it, inserted] = id_of.emplace(s, static_cast<std::uint32_t>(text_of.size()));
    if (inserted) text_of.push_back(s);
    return it->second;
  };
  for (const auto& s : symbols) intern(s);

  std::vector<std::vector<std::uint32_t>> words;
  std::vector<std::int64_t> freq;
  for (const auto& [word, count] : counts) {
    std::vector<std::uint32_t> parts;
    for (const char c : word) parts.push_back(static_cast<unsigned char>(c));
    words.push_back(std::move(parts));
    freq.push_back(static_cast<std::int64_t>(count));
  }

  const auto key = [](std::uint32_t a, std::uint32_t b) { return (std::uint64_t{a} << 32) | b; };
  std::unordered_map<std::uint64_t, std::int64_t> pair_count;
  std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> words_with;  // may hold stale entries
  const auto count_pairs = [&](std::uint32_t w, std::int64_t sign) {
    const auto& parts = words[w];
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      const std::uint64_t k = key(parts[i], parts[i + 1]);
      const std::int64_t c = (pair_count[k] += sign * freq[w]);
      if (c == 0) pair_count.erase(k);
      if (sign > 0) words_with[k].push_back(w);
    }
  };
  for (std::uint32_t w = 0; w < words.size(); ++w) count_pairs(w, +1);

  Vocab vocab = byte_vocab(symbols);
  std::vector<std::size_t> visited(words.size(), 0);
  for (std::size_t step = 1; vocab.tokens.size() < 256 + n_merges && !pair_count.empty(); ++step) {
    auto best = pair_count.begin();
    for (auto it = std::next(pair_count.begin()); it != pair_count.end(); ++it) {
      if (it->second < best->second) continue;
      if (it->second > best->second) {
        best = it;
        continue;
      }
      const auto& [l1, r1] = std::pair{text_of[it->first >> 32], text_of[it->first & 0xffffffffu]};
      const auto& [l2, r2] = std::pair{text_of[best->first >> 32], text_of[best->first & 0xffffffffu]};
      if (std::tie(l1, r1) < std::tie(l2, r2)) best = it;
    }
    const std::uint64_t best_key = best->first;
    const std::uint32_t left = static_cast<std::uint32_t>(best_key >> 32);
    const std::uint32_t right = static_cast<std::uint32_t>(best_key & 0xffffffffu);
    add_merge(vocab, text_of[left], text_of[right]);
    const std::uint32_t joined = intern(text_of[left] + text_of[right]);

    const std::vector<std::uint32_t> candidates = std::move(words_with[best_key]);
    words_with.erase(best_key);
    for (const std::uint32_t w : candidates) {
      if (visited[w] == step) continue;
      visited[w] = step;
      auto& parts = words[w];
      bool has = false;
      for (std::size_t i = 0; i + 1 < parts.size() && !has; ++i) has = parts[i] == left && parts[i + 1] == right;
      if (!has) continue;
      count_pairs(w, -1);
      std::vector<std::uint32_t> merged;
      merged.reserve(parts.size());
      for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i + 1 < parts.size() && parts[i] == left && parts[i + 1] == right) {
          merged.push_back(joined);
          ++i;
        } else {
          merged.push_back(parts[i]);
        }
      }
      parts = std::move(merged);
      count_pairs(w, +1);
    }
  }
  finish_vocab(vocab, options);
  return vocab;
}

std::string_view builtin_training_text() {
  return R"(piquant takes a language model from the checkpoint its authors published to a small file that runs well on a
small computer. The work goes in steps. First it measures how much each part of the model matters, and removes the
parts that matter least. Then it trains the model a little, so that it learns again what the removed parts knew.
Then it writes the weights in a compact form, with four or six bits where there were sixteen, and it checks at
every step how much the model has changed: the perplexity on a long text, and the divergence between the old and
the new model's predictions. At the end the model runs on a Raspberry Pi, one token after another, as fast as the
memory of the board allows.
Once upon a time there was a little girl who lived in a house by the sea. Every morning she walked down to the
water and looked for shells. She found white ones and pink ones, round ones and long ones, and she put them in a
box under her bed. One day she found a shell that sang when she held it to her ear. It sang of the wind and the
waves, of ships that sailed far away, and of the fish that swam in the deep. The girl listened all day long, and
when the sun went down she carried the shell home and put it beside her pillow, and it sang her to sleep.
The numbers tell the story: 8 billion weights at first, 7 billion after pruning, 4 gigabytes after quantization,
and a speed of about one token per second on the board. We want to do better than that, and we will measure it.
)";
}

}  // namespace piquant
