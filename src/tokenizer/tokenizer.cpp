#include "tokenizer/tokenizer.h"

#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"

namespace piquant {

std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool render_special) const {
  std::string text;
  for (const std::int32_t id : ids) text += token_to_piece(id, render_special);
  return text;
}

std::unique_ptr<Tokenizer> Tokenizer::create(Vocab vocab) {
  switch (vocab.kind) {
    case TokenizerKind::Bpe:
      return std::make_unique<BpeTokenizer>(std::move(vocab));
    case TokenizerKind::Spm:
      return std::make_unique<SpmTokenizer>(std::move(vocab));
  }
  throw Error("unknown tokenizer kind");
}

}  // namespace piquant
