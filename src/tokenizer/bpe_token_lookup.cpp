#include "tokenizer/bpe_token_lookup.h"

#include <algorithm>
#include <bit>
#include <functional>

namespace piquant {

BpeTokenLookup::BpeTokenLookup(std::span<const std::string> tokens) : tokens_(tokens) {
  const std::size_t capacity = std::bit_ceil(std::max<std::size_t>(16, tokens.size() * 2));
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    const std::uint64_t hash = std::hash<std::string_view>{}(tokens[id]);
    const auto tag = static_cast<std::uint32_t>(hash >> 32);
    for (std::uint64_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.id < 0 || (slot.tag == tag && tokens_[slot.id] == tokens[id])) {
        slot = {tag, static_cast<std::int32_t>(id)};
        break;
      }
    }
  }
}

std::int32_t BpeTokenLookup::find(std::string_view text) const {
  const std::uint64_t hash = std::hash<std::string_view>{}(text);
  const auto tag = static_cast<std::uint32_t>(hash >> 32);
  for (std::uint64_t i = hash & mask_;; i = (i + 1) & mask_) {
    const Slot& slot = slots_[i];
    if (slot.id < 0) return -1;
    if (slot.tag == tag && tokens_[slot.id] == text) return slot.id;
  }
}

}  // namespace piquant
