#pragma once
// GGUF encoding facts shared by the reader and the writer (not a public interface).
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "formats/gguf.h"

namespace piquant::gguf_wire {

static_assert(std::endian::native == std::endian::little, "GGUF is read and written as little-endian bytes");

inline constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr std::uint32_t kVersion = 3;
inline constexpr std::uint64_t kDefaultAlignment = 32;
inline constexpr std::uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
inline constexpr std::size_t kMaxTensorNameBytes = 63;  // ggml's name buffer is 64 bytes with the NUL
// GGUF allows arrays of arrays; a bound keeps a hostile file from recursing the stack away.
inline constexpr int kMaxArrayDepth = 16;
inline constexpr std::string_view kAlignmentKey = "general.alignment";

inline bool is_valid_type(std::uint32_t raw) { return raw <= static_cast<std::uint32_t>(GgufType::FLOAT64); }

// Bytes of one scalar value; 0 for STRING and ARRAY.
std::size_t scalar_size(GgufType type);
// The fewest bytes any encoded value of this type can take (counts are checked against it).
std::size_t min_encoded_size(GgufType type);

inline bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
// Round up to a multiple of a power-of-two alignment; callers keep `v` far below 2^64.
inline std::uint64_t align_up(std::uint64_t v, std::uint64_t alignment) { return (v + alignment - 1) & ~(alignment - 1); }

// A name as it may appear in an error message: printable ASCII kept, other bytes as \xNN,
// long names cut short, so a corrupt file cannot fill a terminal with garbage.
std::string printable(std::string_view name);

}  // namespace piquant::gguf_wire
