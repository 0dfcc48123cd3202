#include "tokenizer/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/byte_level_codec.h"

namespace piquant {
namespace {

// Words as GPT-2-style pre-tokens: an optional leading space plus a run of letters,
// digits (up to 3) or other symbols. Merges never cross these boundaries.
std::vector<std::string> split_words(std::string_view text) {
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

}  // namespace

Vocab train_byte_level_bpe(std::string_view text, const BpeTrainerOptions& options) {
  if (options.special_tokens > kSpecials.size()) throw Error("bpe trainer: at most 8 special tokens");
  if (options.vocab_size < 256 + options.special_tokens) throw Error("bpe trainer: vocab_size too small for 256 bytes");
  const std::size_t n_merges = options.vocab_size - 256 - options.special_tokens;
  const ByteLevelCodec codec;
  std::array<std::string, 256> symbols;
  for (int b = 0; b < 256; ++b) symbols[static_cast<std::size_t>(b)] = std::string(codec.char_for(static_cast<std::uint8_t>(b)));

  // Each distinct word once, as a list of symbols, with its count.
  std::map<std::string, std::size_t> counts;
  for (const auto& w : split_words(text)) ++counts[w];
  std::vector<std::vector<std::string>> words;
  std::vector<std::size_t> freq;
  for (const auto& [word, count] : counts) {
    std::vector<std::string> parts;
    for (const char c : word) parts.push_back(symbols[static_cast<unsigned char>(c)]);
    words.push_back(std::move(parts));
    freq.push_back(count);
  }

  Vocab vocab;
  vocab.kind = TokenizerKind::Bpe;
  vocab.pre = "llama-bpe";
  for (const auto& s : symbols) vocab.tokens.push_back(s);
  while (vocab.tokens.size() < 256 + n_merges) {
    std::map<std::pair<std::string, std::string>, std::size_t> pairs;
    for (std::size_t w = 0; w < words.size(); ++w) {
      for (std::size_t i = 0; i + 1 < words[w].size(); ++i) pairs[{words[w][i], words[w][i + 1]}] += freq[w];
    }
    if (pairs.empty()) break;
    // Most frequent pair; the map's order breaks ties deterministically.
    const auto best = std::max_element(pairs.begin(), pairs.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
    const auto [left, right] = best->first;
    vocab.merges.push_back(left + " " + right);
    // Two merge paths can build the same text ("ab"+"c", "a"+"bc"): one token serves both.
    if (std::find(vocab.tokens.begin(), vocab.tokens.end(), left + right) == vocab.tokens.end()) {
      vocab.tokens.push_back(left + right);
    }
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
  vocab.types.assign(vocab.tokens.size(), TokenType::Normal);
  // Fill up to vocab_size with reserved specials if the text ran out of pairs.
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
