#include "formats/ggml_type.h"

#include <array>
#include <cctype>
#include <limits>

#include "core/error.h"

namespace piquant {
namespace {

constexpr std::array<GgmlTypeInfo, 20> kTypes{{
    {GgmlType::F32, "f32", 1, 4},
    {GgmlType::F16, "f16", 1, 2},
    {GgmlType::Q4_0, "q4_0", 32, 18},
    {GgmlType::Q4_1, "q4_1", 32, 20},
    {GgmlType::Q5_0, "q5_0", 32, 22},
    {GgmlType::Q5_1, "q5_1", 32, 24},
    {GgmlType::Q8_0, "q8_0", 32, 34},
    {GgmlType::Q8_1, "q8_1", 32, 36},
    {GgmlType::Q2_K, "q2_K", 256, 84},
    {GgmlType::Q3_K, "q3_K", 256, 110},
    {GgmlType::Q4_K, "q4_K", 256, 144},
    {GgmlType::Q5_K, "q5_K", 256, 176},
    {GgmlType::Q6_K, "q6_K", 256, 210},
    {GgmlType::Q8_K, "q8_K", 256, 292},
    {GgmlType::I8, "i8", 1, 1},
    {GgmlType::I16, "i16", 1, 2},
    {GgmlType::I32, "i32", 1, 4},
    {GgmlType::I64, "i64", 1, 8},
    {GgmlType::F64, "f64", 1, 8},
    {GgmlType::BF16, "bf16", 1, 2},
}};

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

}  // namespace

const GgmlTypeInfo* ggml_type_info(std::uint32_t id) {
  for (const auto& t : kTypes) {
    if (static_cast<std::uint32_t>(t.type) == id) return &t;
  }
  return nullptr;
}

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<std::uint32_t>(type));
  if (info == nullptr) throw Error("unknown ggml type id " + std::to_string(static_cast<std::uint32_t>(type)));
  return *info;
}

std::string ggml_type_name(GgmlType type) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<std::uint32_t>(type));
  return info ? info->name : "type#" + std::to_string(static_cast<std::uint32_t>(type));
}

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  for (const auto& t : kTypes) {
    if (iequal(t.name, name)) return t.type;
  }
  return std::nullopt;
}

std::uint64_t ggml_nbytes(GgmlType type, std::uint64_t n_elements) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  if (n_elements % info.block_size != 0) {
    throw Error(std::to_string(n_elements) + " elements is not a whole number of " + info.name + " blocks of " +
                std::to_string(info.block_size));
  }
  const std::uint64_t blocks = n_elements / info.block_size;
  if (blocks > std::numeric_limits<std::uint64_t>::max() / info.block_bytes) {
    throw Error(std::string("size of ") + std::to_string(n_elements) + " " + info.name + " elements overflows");
  }
  return blocks * info.block_bytes;
}

}  // namespace piquant
