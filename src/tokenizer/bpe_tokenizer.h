#pragma once
// Llama 3 byte-level BPE: pre-tokenize with the Llama 3 regex (PCRE2, Unicode
// categories), map bytes to GPT-2's printable characters, merge by rank.
#include "tokenizer/tokenizer.h"

namespace piquant {

class BpeTokenizer : public Tokenizer {
 public:
  explicit BpeTokenizer(Vocab vocab);
  ~BpeTokenizer() override;
  std::vector<std::int32_t> encode(std::string_view text, bool add_special, bool parse_special) const override;
  std::string token_to_piece(std::int32_t id, bool render_special = false) const override;
  const Vocab& vocab() const override { return vocab_; }

 private:
  struct Impl;
  Vocab vocab_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace piquant
