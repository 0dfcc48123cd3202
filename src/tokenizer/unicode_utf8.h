#pragma once
// UTF-8 helpers for the tokenizers: strict validation (what PCRE2's UTF mode
// accepts) and a repair that replaces every byte of an invalid sequence with U+FFFD,
// the way llama.cpp's tokenizer treats bad input.
#include <cstddef>
#include <string>
#include <string_view>

namespace piquant {

// Length of the valid UTF-8 sequence starting at text[pos], or 0 if the bytes there
// are not one (overlong forms, surrogates, code points above U+10FFFF, truncation).
std::size_t utf8_sequence_length(std::string_view text, std::size_t pos);

bool is_valid_utf8(std::string_view text);

// `text` with each byte that does not belong to a valid sequence replaced by U+FFFD.
std::string replace_invalid_utf8(std::string_view text);

void append_utf8(std::string& out, char32_t code_point);

}  // namespace piquant
