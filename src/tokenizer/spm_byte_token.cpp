#include "tokenizer/spm_byte_token.h"

namespace piquant {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::optional<std::uint8_t> parse_byte_token(std::string_view text) {
  if (text.size() != 6 || !text.starts_with("<0x") || text[5] != '>') return std::nullopt;
  const int hi = hex_value(text[3]);
  const int lo = hex_value(text[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<std::uint8_t>(hi * 16 + lo);
}

std::string byte_token_text(std::uint8_t byte) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string text = "<0x";
  text += kHex[byte >> 4];
  text += kHex[byte & 15];
  text += '>';
  return text;
}

}  // namespace piquant
