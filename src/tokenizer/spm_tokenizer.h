#pragma once
// SentencePiece-style BPE as llama.cpp runs it for model "llama": spaces become
// '▁', an optional leading space is added, adjacent symbols merge by highest score,
// and text not in the vocab falls back to <0xNN> byte tokens.
#include "tokenizer/tokenizer.h"

namespace piquant {

class SpmTokenizer : public Tokenizer {
 public:
  explicit SpmTokenizer(Vocab vocab);
  ~SpmTokenizer() override;
  std::vector<std::int32_t> encode(std::string_view text, bool add_special, bool parse_special) const override;
  std::string token_to_piece(std::int32_t id, bool render_special = false) const override;
  std::string decode(std::span<const std::int32_t> ids, bool render_special = false) const override;
  const Vocab& vocab() const override { return vocab_; }

 private:
  struct Impl;
  Vocab vocab_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace piquant
