#include "tokenizer/spm_merge.h"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <string>

#include "core/error.h"

namespace piquant {

namespace {

// Bytes in the UTF-8 sequence a lead byte starts. Stray continuation bytes and invalid
// leads count as one byte, so any input splits into symbols (clamped at the end of text).
std::size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

// One symbol of the text being merged: a byte range, linked to its live neighbours.
// A symbol merged into its left neighbour keeps length 0.
struct Symbol {
  std::size_t begin;
  std::uint32_t length;
  std::int32_t prev;
  std::int32_t next;
};

// A possible merge of two adjacent symbols into the piece of `length` bytes.
struct Candidate {
  float score;
  std::int32_t left;
  std::int32_t right;
  std::uint32_t length;
};

// Heap order: the best candidate (highest score, then leftmost) on top.
struct WorseCandidate {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

class Merger {
 public:
  Merger(const SpmPieceTable& table, std::string_view text, std::vector<std::int32_t>& out)
      : table_(table), text_(text), out_(out) {}

  void add_symbol(std::size_t begin, std::size_t length) {
    if (symbols_.size() >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
      throw Error("SPM tokenizer: a run of text without spaces is too long to tokenize");
    }
    const auto index = static_cast<std::int32_t>(symbols_.size());
    symbols_.push_back(Symbol{begin, static_cast<std::uint32_t>(length), index - 1, -1});
    if (index > 0) symbols_[static_cast<std::size_t>(index - 1)].next = index;
  }

  bool empty() const { return symbols_.empty(); }

  // Merges the symbols added so far, emits their ids, and starts a new chunk.
  void flush() {
    for (std::size_t i = 1; i < symbols_.size(); ++i) {
      consider(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));
    }
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end(), WorseCandidate{});
      const Candidate best = heap_.back();
      heap_.pop_back();
      Symbol& left = symbols_[static_cast<std::size_t>(best.left)];
      Symbol& right = symbols_[static_cast<std::size_t>(best.right)];
      // Symbols only grow or vanish, so a candidate is current exactly when both sides
      // are alive and still add up to its length.
      if (left.length == 0 || right.length == 0 || left.length + right.length != best.length) continue;
      left.length += right.length;
      right.length = 0;
      left.next = right.next;
      if (right.next >= 0) symbols_[static_cast<std::size_t>(right.next)].prev = best.left;
      consider(left.prev, best.left);
      consider(best.left, left.next);
    }
    for (std::int32_t i = symbols_.empty() ? -1 : 0; i >= 0; i = symbols_[static_cast<std::size_t>(i)].next) {
      emit(symbols_[static_cast<std::size_t>(i)]);
    }
    symbols_.clear();
  }

 private:
  void consider(std::int32_t left, std::int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols_[static_cast<std::size_t>(left)];
    const Symbol& r = symbols_[static_cast<std::size_t>(right)];
    const std::uint32_t length = l.length + r.length;
    const std::int32_t id = table_.find(text_.substr(l.begin, length));
    if (id < 0) return;
    heap_.push_back(Candidate{table_.score(id), left, right, length});
    std::push_heap(heap_.begin(), heap_.end(), WorseCandidate{});
  }

  void emit(const Symbol& symbol) {
    const std::string_view piece = text_.substr(symbol.begin, symbol.length);
    if (const std::int32_t id = table_.find(piece); id >= 0) {
      out_.push_back(id);
      return;
    }
    for (const char c : piece) {
      const auto byte = static_cast<std::uint8_t>(c);
      const std::int32_t id = table_.byte_fallback(byte);
      if (id < 0) {
        static constexpr char kHex[] = "0123456789ABCDEF";
        throw Error(std::string("SPM tokenizer: byte 0x") + kHex[byte >> 4] + kHex[byte & 15] +
                    " is not in the vocab and there is no byte-fallback or <unk> token");
      }
      out_.push_back(id);
    }
  }

  const SpmPieceTable& table_;
  std::string_view text_;
  std::vector<std::int32_t>& out_;
  std::vector<Symbol> symbols_;
  std::vector<Candidate> heap_;
};

}  // namespace

void spm_merge_encode(const SpmPieceTable& table, std::string_view escaped, std::vector<std::int32_t>& out) {
  Merger merger(table, escaped, out);
  const bool split = table.can_split_before_spaces();
  bool previous_was_marker = false;
  std::size_t pos = 0;
  while (pos < escaped.size()) {
    const std::size_t length =
        std::min(utf8_sequence_length(static_cast<unsigned char>(escaped[pos])), escaped.size() - pos);
    const bool is_marker = escaped.substr(pos, length) == kSpmSpaceMarker;
    // Merging chunk by chunk gives the same result as merging the whole text, since no
    // piece spans the start of a '▁' run; it keeps the heap small and in cache.
    if (split && is_marker && !previous_was_marker && !merger.empty()) merger.flush();
    merger.add_symbol(pos, length);
    previous_was_marker = is_marker;
    pos += length;
  }
  merger.flush();
}

}  // namespace piquant
