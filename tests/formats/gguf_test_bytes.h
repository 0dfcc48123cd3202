#pragma once
// Builds GGUF bytes by hand, straight from the format's description, so tests can
// check the reader and writer against the spec rather than against each other, and
// can write the invalid files a writer would refuse to produce.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace piquant::testing {

// Passes when `text` contains `part`; on failure shows both.
inline ::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// GGUF value type ids and ggml type ids as numbers, as the spec lists them.
namespace gguf_id {
inline constexpr std::uint32_t kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5,
                               kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11,
                               kFloat64 = 12;
inline constexpr std::uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ8_0 = 8;
}  // namespace gguf_id

class GgufBytes {
 public:
  template <class T>
  GgufBytes& raw(T v) {
    char buf[sizeof v];
    std::memcpy(buf, &v, sizeof v);
    bytes_.append(buf, sizeof v);
    return *this;
  }
  GgufBytes& u8(std::uint8_t v) { return raw(v); }
  GgufBytes& u32(std::uint32_t v) { return raw(v); }
  GgufBytes& u64(std::uint64_t v) { return raw(v); }
  GgufBytes& str(std::string_view s) {
    u64(s.size());
    bytes_.append(s);
    return *this;
  }
  GgufBytes& text(std::string_view s) {
    bytes_.append(s);
    return *this;
  }
  GgufBytes& zeros(std::size_t n) {
    bytes_.append(n, '\0');
    return *this;
  }
  GgufBytes& fill(std::size_t n, char c) {
    bytes_.append(n, c);
    return *this;
  }
  GgufBytes& pad_to(std::size_t alignment) {
    while (bytes_.size() % alignment != 0) bytes_.push_back('\0');
    return *this;
  }

  // magic "GGUF", version, tensor_count, kv_count.
  GgufBytes& header(std::uint32_t version, std::uint64_t tensor_count, std::uint64_t kv_count) {
    return text("GGUF").u32(version).u64(tensor_count).u64(kv_count);
  }
  GgufBytes& kv_string(std::string_view key, std::string_view value) {
    return str(key).u32(gguf_id::kString).str(value);
  }
  GgufBytes& kv_u32(std::string_view key, std::uint32_t value) { return str(key).u32(gguf_id::kUint32).u32(value); }
  GgufBytes& tensor_info(std::string_view name, const std::vector<std::uint64_t>& dims, std::uint32_t type,
                         std::uint64_t offset) {
    str(name).u32(static_cast<std::uint32_t>(dims.size()));
    for (const std::uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }

  std::size_t size() const { return bytes_.size(); }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

}  // namespace piquant::testing
