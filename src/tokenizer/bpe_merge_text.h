#pragma once
// A BPE merge as GGUF and old tokenizer.json files store it: "left right". Byte-level
// tokens never hold a plain space, but a left token may *be* a space in other
// vocabularies, so the separator is the first space after the first byte (as llama.cpp reads it).
#include <optional>
#include <string_view>
#include <utility>

namespace piquant {

inline std::optional<std::pair<std::string_view, std::string_view>> split_bpe_merge(std::string_view merge) {
  const std::size_t space = merge.size() > 1 ? merge.find(' ', 1) : std::string_view::npos;
  if (space == std::string_view::npos || space + 1 >= merge.size()) return std::nullopt;
  return std::pair{merge.substr(0, space), merge.substr(space + 1)};
}

}  // namespace piquant
