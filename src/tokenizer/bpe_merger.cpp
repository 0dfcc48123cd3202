#include "tokenizer/bpe_merger.h"

#include <algorithm>
#include <bit>

#include "core/error.h"
#include "tokenizer/bpe_merge_text.h"

namespace piquant {
namespace {

std::uint64_t mix(std::uint64_t key) {
  // A 64-bit finaliser (xor-shift-multiply) so that consecutive ids spread over the table.
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  key *= 0xc4ceb9fe1a85ec53ULL;
  key ^= key >> 33;
  return key;
}

bool heap_after(const BpeMerger::Scratch::Candidate& a, const BpeMerger::Scratch::Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
}

}  // namespace

BpeMerger::BpeMerger(std::span<const std::string> merges, const BpeTokenLookup& tokens) {
  const std::size_t capacity = std::bit_ceil(std::max<std::size_t>(16, merges.size() * 2));
  table_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  const auto id_of = [&](std::string_view text, std::size_t rank, std::string_view merge) {
    const std::int32_t id = tokens.find(text);
    if (id < 0) {
      throw Error("BPE merge " + std::to_string(rank) + " '" + std::string(merge) + "': '" + std::string(text) +
                  "' is not a token");
    }
    return id;
  };
  std::string joined;
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto pair = split_bpe_merge(merges[rank]);
    if (!pair) throw Error("BPE merge " + std::to_string(rank) + " '" + merges[rank] + "' is not two tokens");
    const std::int32_t left = id_of(pair->first, rank, merges[rank]);
    const std::int32_t right = id_of(pair->second, rank, merges[rank]);
    joined.assign(pair->first).append(pair->second);
    const std::int32_t merged = id_of(joined, rank, merges[rank]);
    const std::uint64_t key = key_of(left, right);
    std::uint64_t slot = mix(key) & mask_;
    while (table_[slot].key != kEmpty && table_[slot].key != key) slot = (slot + 1) & mask_;
    if (table_[slot].key == key) continue;  // a repeated merge keeps its first (best) rank
    table_[slot] = {key, static_cast<std::int32_t>(rank), merged};
  }
}

const BpeMerger::Slot* BpeMerger::find(std::int32_t left, std::int32_t right) const {
  const std::uint64_t key = key_of(left, right);
  for (std::uint64_t slot = mix(key) & mask_;; slot = (slot + 1) & mask_) {
    const Slot& s = table_[slot];
    if (s.key == key) return &s;
    if (s.key == kEmpty) return nullptr;
  }
}

void BpeMerger::push_candidate(Scratch& scratch, std::int32_t left) const {
  const auto& symbols = scratch.symbols;
  const std::int32_t right = symbols[left].next;
  if (right < 0) return;
  const std::int32_t left_id = symbols[left].id;
  const std::int32_t right_id = symbols[right].id;
  if (left_id < 0 || right_id < 0) return;
  const Slot* slot = find(left_id, right_id);
  if (slot == nullptr) return;
  scratch.heap.push_back({slot->rank, left, left_id, right_id});
  std::push_heap(scratch.heap.begin(), scratch.heap.end(), heap_after);
}

void BpeMerger::merge(std::span<const std::int32_t> initial, std::vector<std::int32_t>& out,
                      Scratch& scratch) const {
  auto& symbols = scratch.symbols;
  auto& heap = scratch.heap;
  symbols.clear();
  heap.clear();
  const auto n = static_cast<std::int32_t>(initial.size());
  for (std::int32_t i = 0; i < n; ++i) symbols.push_back({initial[i], i - 1, i + 1 < n ? i + 1 : -1});
  for (std::int32_t i = 0; i + 1 < n; ++i) push_candidate(scratch, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), heap_after);
    const Scratch::Candidate best = heap.back();
    heap.pop_back();
    auto& left = symbols[best.left];
    // Stale candidates: either side has merged since. A position's id only ever grows
    // into a longer token, so comparing ids is enough to detect that.
    if (left.id != best.left_id || left.next < 0 || symbols[left.next].id != best.right_id) continue;
    const Slot* slot = find(best.left_id, best.right_id);
    const std::int32_t removed = left.next;
    left.id = slot->merged;
    left.next = symbols[removed].next;
    if (left.next >= 0) symbols[left.next].prev = best.left;
    symbols[removed].id = -2;  // gone
    if (left.prev >= 0) push_candidate(scratch, left.prev);
    push_candidate(scratch, best.left);
  }
  for (std::int32_t i = n > 0 ? 0 : -1; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) out.push_back(symbols[i].id);
  }
}

}  // namespace piquant
