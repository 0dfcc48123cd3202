#include "tokenizer/byte_level_codec.h"

#include "tokenizer/unicode_utf8.h"

namespace piquant {
namespace {

bool printable_as_itself(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174); }

}  // namespace

ByteLevelCodec::ByteLevelCodec() {
  byte_of_code_point_.fill(-1);
  char32_t next_shifted = 256;
  for (unsigned b = 0; b < 256; ++b) {
    const char32_t cp = printable_as_itself(b) ? b : next_shifted++;
    std::string utf8;
    append_utf8(utf8, cp);
    lengths_[b] = static_cast<std::uint8_t>(utf8.size());
    for (std::size_t i = 0; i < utf8.size(); ++i) chars_[b][i] = utf8[i];
    byte_of_code_point_[cp] = static_cast<std::int16_t>(b);
  }
}

void ByteLevelCodec::append_encoded(std::string& out, std::uint8_t byte) const {
  out.append(chars_[byte].data(), lengths_[byte]);
}

std::string ByteLevelCodec::encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) append_encoded(out, static_cast<std::uint8_t>(c));
  return out;
}

std::string ByteLevelCodec::decode(std::string_view text) const {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto lead = static_cast<std::uint8_t>(text[pos]);
    std::size_t n = utf8_sequence_length(text, pos);
    char32_t cp = 0x110000;  // "not in the alphabet" unless decoded below
    if (n == 1) {
      cp = lead;
    } else if (n == 2) {
      cp = (static_cast<char32_t>(lead & 0x1F) << 6) | (static_cast<std::uint8_t>(text[pos + 1]) & 0x3F);
    } else if (n == 0) {
      n = 1;  // invalid byte: passed through unchanged
    }
    if (cp < byte_of_code_point_.size() && byte_of_code_point_[cp] >= 0) {
      out += static_cast<char>(byte_of_code_point_[cp]);
    } else {
      out.append(text, pos, n);
    }
    pos += n;
  }
  return out;
}

}  // namespace piquant
