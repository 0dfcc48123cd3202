#pragma once
// The text of SentencePiece byte-fallback tokens: "<0xNN>", two hex digits.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace piquant {

// "<0x41>" -> 0x41; nullopt for any other text. Either hex case is accepted on input.
std::optional<std::uint8_t> parse_byte_token(std::string_view text);

// 0x41 -> "<0x41>" (upper-case hex, as SentencePiece names them).
std::string byte_token_text(std::uint8_t byte);

}  // namespace piquant
