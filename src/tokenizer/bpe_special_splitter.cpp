#include "tokenizer/bpe_special_splitter.h"

#include <algorithm>

namespace piquant {

void BpeSpecialSplitter::add(std::string text, std::int32_t id, bool always) {
  if (text.empty()) return;  // an empty text can never be found
  entries_.push_back({std::move(text), id, always});
}

void BpeSpecialSplitter::finish() {
  std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    if (a.text.size() != b.text.size()) return a.text.size() > b.text.size();
    return a.id < b.id;
  });
  for (auto& list : by_first_byte_) list.clear();
  for (auto& set : second_bytes_) set.reset();
  for (std::uint32_t i = 0; i < entries_.size(); ++i) {
    const std::string& text = entries_[i].text;
    const auto first = static_cast<unsigned char>(text[0]);
    by_first_byte_[first].push_back(i);
    second_bytes_[first].set(text.size() > 1 ? static_cast<unsigned char>(text[1]) : 256);
  }
}

std::vector<TextFragment> BpeSpecialSplitter::split(std::string_view text, bool parse_special) const {
  struct Occurrence {
    std::uint32_t entry;
    std::size_t offset;
  };
  std::vector<Occurrence> found;
  if (!entries_.empty()) {
    for (std::size_t pos = 0; pos < text.size(); ++pos) {
      const auto first = static_cast<unsigned char>(text[pos]);
      const auto& candidates = by_first_byte_[first];
      if (candidates.empty()) continue;
      const bool second_possible = pos + 1 < text.size() && second_bytes_[first].test(static_cast<unsigned char>(text[pos + 1]));
      if (!second_possible && !second_bytes_[first].test(256)) continue;
      for (const std::uint32_t e : candidates) {
        const Entry& entry = entries_[e];
        if (!parse_special && !entry.always) continue;
        if (text.compare(pos, entry.text.size(), entry.text) == 0) found.push_back({e, pos});
      }
    }
  }
  std::vector<TextFragment> fragments;
  if (found.empty()) {
    if (!text.empty()) fragments.push_back({0, text.size(), -1});
    return fragments;
  }
  // Highest-priority entry first, each entry's occurrences left to right.
  std::sort(found.begin(), found.end(), [](const Occurrence& a, const Occurrence& b) {
    return a.entry != b.entry ? a.entry < b.entry : a.offset < b.offset;
  });
  std::vector<bool> taken(text.size(), false);
  std::vector<TextFragment> chosen;
  for (const Occurrence& occ : found) {
    const Entry& entry = entries_[occ.entry];
    const auto begin = taken.begin() + static_cast<std::ptrdiff_t>(occ.offset);
    const auto end = begin + static_cast<std::ptrdiff_t>(entry.text.size());
    if (std::find(begin, end, true) != end) continue;
    std::fill(begin, end, true);
    chosen.push_back({occ.offset, entry.text.size(), entry.id});
  }
  std::sort(chosen.begin(), chosen.end(), [](const TextFragment& a, const TextFragment& b) { return a.offset < b.offset; });
  std::size_t pos = 0;
  for (const TextFragment& special : chosen) {
    if (special.offset > pos) fragments.push_back({pos, special.offset - pos, -1});
    fragments.push_back(special);
    pos = special.offset + special.length;
  }
  if (pos < text.size()) fragments.push_back({pos, text.size() - pos, -1});
  return fragments;
}

}  // namespace piquant
