#pragma once
// Names shared by the tokenizer.json reader and writer: Llama 3's special tokens, found
// by text, and llama.cpp's converter's filler for ids that no token uses.
#include <cstddef>
#include <string>

namespace piquant {

inline constexpr const char* kBeginOfText = "<|begin_of_text|>";
inline constexpr const char* kEndOfText = "<|end_of_text|>";
inline constexpr const char* kEndOfTurn = "<|eot_id|>";
inline constexpr const char* kEndOfMessage = "<|eom_id|>";

inline std::string pad_token_text(std::size_t id) { return "[PAD" + std::to_string(id) + "]"; }

}  // namespace piquant
