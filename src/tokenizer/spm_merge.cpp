#include "tokenizer/spm_merge.h"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/error.h"

namespace piquant {

namespace {

// Bytes in the UTF-8 sequence a lead byte starts, judged by its top four bits as
// llama.cpp does: a stray continuation byte counts as one, 0xF8..0xFF as four. The
// following bytes are not checked, so any input splits (clamped at the end of text).
std::size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
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

  // Merges the characters of text[begin, end) and appends their ids.
  void encode(std::size_t begin, std::size_t end) {
    symbols_.clear();
    for (std::size_t pos = begin; pos < end;) {
      const std::size_t length =
          std::min(utf8_sequence_length(static_cast<unsigned char>(text_[pos])), end - pos);
      add_symbol(pos, length);
      pos += length;
    }
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
  }

 private:
  void add_symbol(std::size_t begin, std::size_t length) {
    if (symbols_.size() >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
      throw Error("SPM tokenizer: a run of text without spaces is too long to tokenize");
    }
    const auto index = static_cast<std::int32_t>(symbols_.size());
    symbols_.push_back(Symbol{begin, static_cast<std::uint32_t>(length), index - 1, -1});
    if (index > 0) symbols_[static_cast<std::size_t>(index - 1)].next = index;
  }

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

// Ids of chunks already encoded in this text: natural text repeats its words a lot.
class ChunkCache {
 public:
  static constexpr std::size_t kMaxEntries = 1 << 16;  // bounds memory on text with few repeats

  // Appends the cached ids of `chunk` to `out`; false if it is not cached.
  bool append(std::string_view chunk, std::vector<std::int32_t>& out) const {
    const auto it = entries_.find(chunk);
    if (it == entries_.end()) return false;
    const auto first = ids_.begin() + static_cast<std::ptrdiff_t>(it->second.first);
    out.insert(out.end(), first, first + static_cast<std::ptrdiff_t>(it->second.second));
    return true;
  }
  void store(std::string_view chunk, std::span<const std::int32_t> ids) {
    if (entries_.size() >= kMaxEntries) return;
    entries_.emplace(chunk, std::pair<std::size_t, std::size_t>{ids_.size(), ids.size()});
    ids_.insert(ids_.end(), ids.begin(), ids.end());
  }

 private:
  std::unordered_map<std::string_view, std::pair<std::size_t, std::size_t>> entries_;  // views into the text
  std::vector<std::int32_t> ids_;
};

}  // namespace

void spm_merge_encode(const SpmPieceTable& table, std::string_view escaped, std::vector<std::int32_t>& out) {
  Merger merger(table, escaped, out);
  if (!table.can_split_before_spaces()) {
    merger.encode(0, escaped.size());
    return;
  }
  // Merging chunk by chunk, each chunk starting at a run of '▁', gives the same result
  // as merging the whole text, since no piece spans the start of such a run. It keeps
  // the heap small and lets repeated words be looked up instead of merged again.
  ChunkCache cache;
  const auto encode_chunk = [&](std::size_t begin, std::size_t end) {
    const std::string_view chunk = escaped.substr(begin, end - begin);
    if (cache.append(chunk, out)) return;
    const std::size_t first = out.size();
    merger.encode(begin, end);
    cache.store(chunk, std::span<const std::int32_t>(out).subspan(first));
  };
  std::size_t chunk_start = 0;
  bool previous_was_marker = false;
  std::size_t pos = 0;
  while (pos < escaped.size()) {
    const std::size_t length =
        std::min(utf8_sequence_length(static_cast<unsigned char>(escaped[pos])), escaped.size() - pos);
    const bool is_marker = escaped.substr(pos, length) == kSpmSpaceMarker;
    if (is_marker && !previous_was_marker && pos > chunk_start) {
      encode_chunk(chunk_start, pos);
      chunk_start = pos;
    }
    previous_was_marker = is_marker;
    pos += length;
  }
  if (pos > chunk_start) encode_chunk(chunk_start, pos);
}

}  // namespace piquant
