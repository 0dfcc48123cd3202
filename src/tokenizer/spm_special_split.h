#pragma once
// Splitting text at the texts of special tokens, as llama.cpp does before tokenizing:
// special tokens are taken longest first, and each one splits every text fragment left
// at all of its occurrences.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace piquant {

struct SpmFragment {
  std::int32_t token = -1;  // >= 0: a special token; -1: the text [begin, end)
  std::size_t begin = 0;
  std::size_t end = 0;
  bool is_token() const { return token >= 0; }
};

class SpmSpecialSplitter {
 public:
  // Takes the vocab's control, user-defined and unknown tokens with non-empty text.
  explicit SpmSpecialSplitter(const Vocab& vocab);

  // The fragments of `text`, in order; no text fragment is empty. User-defined tokens
  // are always recognised; control and unknown ones only when `parse_special` (as in
  // llama.cpp).
  std::vector<SpmFragment> split(std::string_view text, bool parse_special) const;

 private:
  struct Special {
    std::int32_t id;
    std::string text;
    bool always;  // user-defined: recognised even without parse_special
  };
  std::vector<Special> specials_;  // longest text first
};

}  // namespace piquant
