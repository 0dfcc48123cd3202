#pragma once
// A minimal reader for the protobuf wire format, enough to walk a SentencePiece
// ModelProto without the protobuf library. Every length and varint is checked
// against the buffer; problems throw FormatError(path, context, ...), where the
// context names the message being read (e.g. "pieces[12]") and the byte offset.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace piquant {

enum class WireType : std::uint8_t {
  Varint = 0,
  Fixed64 = 1,
  LengthDelimited = 2,
  StartGroup = 3,  // deprecated groups: rejected
  EndGroup = 4,
  Fixed32 = 5,
};

class ProtobufReader {
 public:
  // `base_offset` is where `data` starts in the file, so errors report file offsets.
  ProtobufReader(std::span<const std::uint8_t> data, std::string path, std::string context,
                 std::uint64_t base_offset = 0);

  // Reads the next field's key; false at the end of the message.
  bool next();
  std::uint32_t field() const { return field_; }
  WireType wire_type() const { return wire_type_; }

  // Value readers for the current field; each checks the wire type first.
  std::uint64_t read_varint();
  bool read_bool() { return read_varint() != 0; }
  std::int32_t read_int32();  // int32 / enum: negative values arrive sign-extended to 64 bits
  float read_float();         // Fixed32
  std::span<const std::uint8_t> read_bytes();
  std::string_view read_string();
  // The current field as an embedded message.
  ProtobufReader read_message(std::string context);
  // Skips the current field's value, whatever its wire type.
  void skip();

  [[noreturn]] void fail(const std::string& problem) const;

 private:
  void expect(WireType type, const char* what) const;
  std::uint64_t take_varint(const char* what);
  std::span<const std::uint8_t> take(std::uint64_t n, const char* what);

  std::span<const std::uint8_t> data_;
  std::string path_;
  std::string context_;
  std::uint64_t base_offset_;
  std::size_t pos_ = 0;
  std::size_t field_start_ = 0;
  std::uint32_t field_ = 0;
  WireType wire_type_ = WireType::Varint;
};

}  // namespace piquant
