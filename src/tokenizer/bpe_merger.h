#pragma once
// The merge step of byte-level BPE: starting from one token per byte, repeatedly merge
// the adjacent pair with the best (lowest) rank, leftmost first on ties, until no pair
// has a rank. Symbols live in a linked list and candidate pairs in a min-heap, so a
// word of n bytes costs O(n log n).
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe_token_lookup.h"

namespace piquant {

class BpeMerger {
 public:
  // `merges` are "left right" texts, best first. Throws Error for a merge whose parts or
  // result are not tokens.
  BpeMerger(std::span<const std::string> merges, const BpeTokenLookup& tokens);

  // Reused between calls so that merging allocates nothing once warm.
  struct Scratch {
    struct Symbol {
      std::int32_t id;
      std::int32_t prev;
      std::int32_t next;
    };
    struct Candidate {
      std::int32_t rank;
      std::int32_t left;  // symbol index
      std::int32_t left_id;
      std::int32_t right_id;
    };
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
  };

  // Merges the initial token ids (one per byte; -1 for a byte with no token, which
  // never merges and is dropped) and appends the result to `out`.
  void merge(std::span<const std::int32_t> initial, std::vector<std::int32_t>& out, Scratch& scratch) const;

 private:
  struct Slot {
    std::uint64_t key = kEmpty;
    std::int32_t rank = 0;
    std::int32_t merged = 0;
  };
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
  static std::uint64_t key_of(std::int32_t left, std::int32_t right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }
  const Slot* find(std::int32_t left, std::int32_t right) const;
  void push_candidate(Scratch& scratch, std::int32_t left) const;

  std::vector<Slot> table_;  // open addressing, linear probing; size a power of two
  std::uint64_t mask_ = 0;
};

}  // namespace piquant
