#pragma once
// Token text -> id for a whole vocabulary, built fast (an open-addressing table of ids
// over the vocabulary's own strings, no copies): Llama 3 has 128k tokens and 280k
// merges to resolve every time a vocab is loaded or a tokenizer is built.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace piquant {

class BpeTokenLookup {
 public:
  // Views `tokens`, which must outlive the lookup. Of equal texts the later id wins (as llama.cpp maps them).
  explicit BpeTokenLookup(std::span<const std::string> tokens);

  std::int32_t find(std::string_view text) const;  // -1 if no token has this text
  bool contains(std::string_view text) const { return find(text) >= 0; }

 private:
  struct Slot {
    std::uint32_t tag = 0;  // high hash bits, to skip most string compares
    std::int32_t id = -1;   // -1: empty
  };
  std::span<const std::string> tokens_;
  std::vector<Slot> slots_;
  std::uint64_t mask_ = 0;
};

}  // namespace piquant
