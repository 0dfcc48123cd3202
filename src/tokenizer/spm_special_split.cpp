#include "tokenizer/spm_special_split.h"

#include <algorithm>

namespace piquant {

SpmSpecialSplitter::SpmSpecialSplitter(const Vocab& vocab) {
  for (std::size_t id = 0; id < vocab.tokens.size() && id < vocab.types.size(); ++id) {
    const TokenType type = vocab.types[id];
    if (type != TokenType::Control && type != TokenType::UserDefined && type != TokenType::Unknown) continue;
    if (vocab.tokens[id].empty()) continue;
    specials_.push_back(Special{static_cast<std::int32_t>(id), vocab.tokens[id], type == TokenType::UserDefined});
  }
  // Longest first; equal lengths in id order so the result does not depend on sort details.
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const Special& a, const Special& b) { return a.text.size() > b.text.size(); });
}

std::vector<SpmFragment> SpmSpecialSplitter::split(std::string_view text, bool parse_special) const {
  std::vector<SpmFragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back(SpmFragment{-1, 0, text.size()});
  std::vector<SpmFragment> next;
  for (const Special& special : specials_) {
    if (!special.always && !parse_special) continue;
    next.clear();
    bool found = false;
    for (const SpmFragment& fragment : fragments) {
      if (fragment.is_token()) {
        next.push_back(fragment);
        continue;
      }
      std::size_t start = fragment.begin;
      while (start < fragment.end) {
        const std::size_t hit = text.substr(0, fragment.end).find(special.text, start);
        if (hit == std::string_view::npos) break;
        found = true;
        if (hit > start) next.push_back(SpmFragment{-1, start, hit});
        next.push_back(SpmFragment{special.id, hit, hit + special.text.size()});
        start = hit + special.text.size();
      }
      if (start < fragment.end) next.push_back(SpmFragment{-1, start, fragment.end});
    }
    if (found) fragments.swap(next);
  }
  return fragments;
}

}  // namespace piquant
