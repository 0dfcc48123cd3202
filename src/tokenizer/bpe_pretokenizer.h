#pragma once
// Splits text into the pieces ("words") that byte-level BPE merges within, with the
// regex a vocabulary's tokenizer.ggml.pre names, compiled by PCRE2 in UTF + UCP mode
// (JIT-compiled where the platform supports it). Pieces cover the text exactly: the
// regex matches and any text between them are kept, in order.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace piquant {

// Llama 3's pre-tokenizer regex exactly as Hugging Face's tokenizer.json spells it.
inline constexpr std::string_view kLlama3SplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2's (tokenizers' ByteLevel pre-tokenizer with use_regex).
inline constexpr std::string_view kGpt2SplitRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// tokenizer.ggml.pre values: Llama 3's, and GPT-2's as llama.cpp names it.
inline constexpr std::string_view kPreLlama3 = "llama-bpe";
inline constexpr std::string_view kPreGpt2 = "gpt-2";

bool is_llama3_pre(std::string_view pre);  // "llama-bpe" and llama.cpp's aliases "llama3", "llama-v3"

class BpePreTokenizer {
 public:
  // Throws Error if `pre` names a pre-tokenizer this project does not implement.
  explicit BpePreTokenizer(const std::string& pre);
  ~BpePreTokenizer();
  BpePreTokenizer(const BpePreTokenizer&) = delete;
  BpePreTokenizer& operator=(const BpePreTokenizer&) = delete;

  // Appends the pieces of `text` (which must be valid UTF-8) to `pieces`; they view `text`.
  // Safe to call from several threads at once.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct Regex;
  std::unique_ptr<Regex> regex_;
};

}  // namespace piquant
