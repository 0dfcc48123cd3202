#pragma once
// GPT-2's byte-level alphabet: each of the 256 byte values is shown as one printable
// Unicode character (printable Latin-1 bytes as themselves, the rest as U+0100 + n in
// byte order), so that byte-level BPE tokens are valid text. Llama 3 uses it as is.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace piquant {

class ByteLevelCodec {
 public:
  ByteLevelCodec();

  // The byte-level text (UTF-8) for raw bytes, e.g. " the" -> "Ġthe".
  std::string encode(std::string_view bytes) const;
  void append_encoded(std::string& out, std::uint8_t byte) const;
  // UTF-8 of the character that stands for `byte`.
  std::string_view char_for(std::uint8_t byte) const { return {chars_[byte].data(), lengths_[byte]}; }

  // The raw bytes behind byte-level text. Characters outside the alphabet (which a
  // well-formed token never has) are kept as their UTF-8 bytes.
  std::string decode(std::string_view text) const;

 private:
  std::array<std::array<char, 2>, 256> chars_{};
  std::array<std::uint8_t, 256> lengths_{};
  std::array<std::int16_t, 512> byte_of_code_point_{};  // -1: not in the alphabet
};

}  // namespace piquant
