#include "tokenizer/protobuf_reader.h"

#include <bit>
#include <utility>

#include "core/error.h"

namespace piquant {

namespace {

const char* wire_type_name(WireType type) {
  switch (type) {
    case WireType::Varint:
      return "varint";
    case WireType::Fixed64:
      return "64-bit";
    case WireType::LengthDelimited:
      return "length-delimited";
    case WireType::StartGroup:
      return "start-group";
    case WireType::EndGroup:
      return "end-group";
    case WireType::Fixed32:
      return "32-bit";
  }
  return "unknown";
}

}  // namespace

ProtobufReader::ProtobufReader(std::span<const std::uint8_t> data, std::string path, std::string context,
                               std::uint64_t base_offset)
    : data_(data), path_(std::move(path)), context_(std::move(context)), base_offset_(base_offset) {}

void ProtobufReader::fail(const std::string& problem) const {
  std::string where = context_;
  if (field_ != 0) where += " field " + std::to_string(field_);
  throw FormatError(path_, where, problem + " (at byte " + std::to_string(base_offset_ + field_start_) + ")");
}

std::uint64_t ProtobufReader::take_varint(const char* what) {
  std::uint64_t value = 0;
  for (int i = 0; i < 10; ++i) {
    if (pos_ >= data_.size()) fail(std::string(what) + " varint runs past the end of the data");
    const std::uint8_t byte = data_[pos_++];
    // The 10th byte may only carry the top bit of a 64-bit value.
    if (i == 9 && byte > 1) fail(std::string(what) + " varint is longer than 64 bits");
    value |= static_cast<std::uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) return value;
  }
  fail(std::string(what) + " varint is longer than 10 bytes");
}

std::span<const std::uint8_t> ProtobufReader::take(std::uint64_t n, const char* what) {
  if (n > data_.size() - pos_) {
    fail(std::string(what) + " of " + std::to_string(n) + " bytes runs past the end of the data (" +
         std::to_string(data_.size() - pos_) + " bytes left)");
  }
  const auto bytes = data_.subspan(pos_, static_cast<std::size_t>(n));
  pos_ += static_cast<std::size_t>(n);
  return bytes;
}

bool ProtobufReader::next() {
  if (pos_ >= data_.size()) return false;
  field_start_ = pos_;
  field_ = 0;
  const std::uint64_t key = take_varint("field key");
  const std::uint64_t number = key >> 3;
  const auto wire = static_cast<std::uint8_t>(key & 7);
  if (number == 0 || number > 0x1fffffff) fail("invalid field number " + std::to_string(number));
  if (wire > 5) fail("invalid wire type " + std::to_string(wire));
  field_ = static_cast<std::uint32_t>(number);
  wire_type_ = static_cast<WireType>(wire);
  if (wire_type_ == WireType::StartGroup || wire_type_ == WireType::EndGroup) {
    fail("protobuf groups are not supported");
  }
  return true;
}

void ProtobufReader::expect(WireType type, const char* what) const {
  if (wire_type_ != type) {
    fail(std::string("expected ") + what + " (" + wire_type_name(type) + " wire type), found " +
         wire_type_name(wire_type_));
  }
}

std::uint64_t ProtobufReader::read_varint() {
  expect(WireType::Varint, "an integer");
  return take_varint("value");
}

std::int32_t ProtobufReader::read_int32() {
  // Two's complement truncation, as protobuf does for int32 fields.
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(read_varint()));
}

float ProtobufReader::read_float() {
  expect(WireType::Fixed32, "a float");
  const auto bytes = take(4, "float");
  // Protobuf fixed32 is little-endian whatever the host.
  const std::uint32_t bits = static_cast<std::uint32_t>(bytes[0]) | (static_cast<std::uint32_t>(bytes[1]) << 8) |
                             (static_cast<std::uint32_t>(bytes[2]) << 16) |
                             (static_cast<std::uint32_t>(bytes[3]) << 24);
  return std::bit_cast<float>(bits);
}

std::span<const std::uint8_t> ProtobufReader::read_bytes() {
  expect(WireType::LengthDelimited, "a length-delimited value");
  const std::uint64_t length = take_varint("length");
  return take(length, "value");
}

std::string_view ProtobufReader::read_string() {
  const auto bytes = read_bytes();
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

ProtobufReader ProtobufReader::read_message(std::string context) {
  expect(WireType::LengthDelimited, "an embedded message");
  const std::uint64_t length = take_varint("length");
  const std::size_t start = pos_;
  const auto bytes = take(length, "message");
  return ProtobufReader(bytes, path_, std::move(context), base_offset_ + start);
}

void ProtobufReader::skip() {
  switch (wire_type_) {
    case WireType::Varint:
      take_varint("value");
      return;
    case WireType::Fixed64:
      take(8, "64-bit value");
      return;
    case WireType::LengthDelimited:
      take(take_varint("length"), "value");
      return;
    case WireType::Fixed32:
      take(4, "32-bit value");
      return;
    case WireType::StartGroup:
    case WireType::EndGroup:
      break;
  }
  fail("cannot skip a protobuf group");
}

}  // namespace piquant
