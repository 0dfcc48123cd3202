#pragma once
// Text <-> token ids. One interface, one implementation per TokenizerKind.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace piquant {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // add_special: prepend BOS if the vocab says so (and append EOS if it says so).
  // parse_special: recognise control token texts such as "<|eot_id|>" in the input;
  // otherwise they are tokenized as plain text. User-defined tokens are always
  // recognised (as llama.cpp and Hugging Face do).
  virtual std::vector<std::int32_t> encode(std::string_view text, bool add_special, bool parse_special) const = 0;

  // The bytes a token stands for (byte-level / byte-fallback tokens decoded to raw bytes;
  // SPM '▁' as ' '). Control tokens decode to "" unless `render_special`.
  virtual std::string token_to_piece(std::int32_t id, bool render_special = false) const = 0;

  // Concatenated pieces; for SPM the leading space added by add_space_prefix is dropped.
  virtual std::string decode(std::span<const std::int32_t> ids, bool render_special = false) const;

  virtual const Vocab& vocab() const = 0;

  // The implementation for vocab.kind; throws Error for an unusable vocab.
  static std::unique_ptr<Tokenizer> create(Vocab vocab);
};

}  // namespace piquant
