#pragma once
// ggml's tensor element types: ids as stored in GGUF, block sizes and bytes per block.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace piquant {

enum class GgmlType : std::uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;         // as ggml spells it: "f32", "q4_K", ...
  std::uint32_t block_size; // elements per block
  std::uint32_t block_bytes;
};

// Info for a raw type id read from a file; nullptr when piquant does not know it.
const GgmlTypeInfo* ggml_type_info(std::uint32_t id);
const GgmlTypeInfo& ggml_type_info(GgmlType type);
std::string ggml_type_name(GgmlType type);
// Accepts ggml's names case-insensitively ("q4_k", "Q4_K", "f16").
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

// Bytes of `n_elements` consecutive elements; throws Error if not a whole number of blocks
// or if the size overflows 64 bits.
std::uint64_t ggml_nbytes(GgmlType type, std::uint64_t n_elements);

}  // namespace piquant
