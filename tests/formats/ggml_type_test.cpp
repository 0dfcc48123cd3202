// ggml type table: ids, names and block layouts against ggml's block structs.
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "formats/ggml_type.h"
#include "support/test_support.h"

namespace piquant {
namespace {

// Sizes of the fields of ggml's block structs (ggml-common.h), summed per type, so a
// wrong entry in the table shows up as a disagreement with the struct it stands for.
constexpr std::uint32_t kHalf = 2;   // ggml_half
constexpr std::uint32_t kFloat = 4;  // float
constexpr std::uint32_t QK = 32;     // QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK8_1
constexpr std::uint32_t QK_K = 256;
constexpr std::uint32_t K_SCALE_SIZE = 12;

struct Expected {
  GgmlType type;
  std::uint32_t id;
  const char* name;
  std::uint32_t block_size;
  std::uint32_t block_bytes;
};

const std::vector<Expected>& expected_types() {
  static const std::vector<Expected> table = {
      {GgmlType::F32, 0, "f32", 1, 4},
      {GgmlType::F16, 1, "f16", 1, kHalf},
      // block_q4_0 { d; qs[QK/2] }
      {GgmlType::Q4_0, 2, "q4_0", QK, kHalf + QK / 2},
      // block_q4_1 { d; m; qs[QK/2] }
      {GgmlType::Q4_1, 3, "q4_1", QK, 2 * kHalf + QK / 2},
      // block_q5_0 { d; qh[4]; qs[QK/2] }
      {GgmlType::Q5_0, 6, "q5_0", QK, kHalf + 4 + QK / 2},
      // block_q5_1 { d; m; qh[4]; qs[QK/2] }
      {GgmlType::Q5_1, 7, "q5_1", QK, 2 * kHalf + 4 + QK / 2},
      // block_q8_0 { d; qs[QK] }
      {GgmlType::Q8_0, 8, "q8_0", QK, kHalf + QK},
      // block_q8_1 { d; s; qs[QK] }
      {GgmlType::Q8_1, 9, "q8_1", QK, 2 * kHalf + QK},
      // block_q2_K { scales[QK_K/16]; qs[QK_K/4]; d; dmin }
      {GgmlType::Q2_K, 10, "q2_K", QK_K, QK_K / 16 + QK_K / 4 + 2 * kHalf},
      // block_q3_K { hmask[QK_K/8]; qs[QK_K/4]; scales[12]; d }
      {GgmlType::Q3_K, 11, "q3_K", QK_K, QK_K / 8 + QK_K / 4 + 12 + kHalf},
      // block_q4_K { d; dmin; scales[K_SCALE_SIZE]; qs[QK_K/2] }
      {GgmlType::Q4_K, 12, "q4_K", QK_K, 2 * kHalf + K_SCALE_SIZE + QK_K / 2},
      // block_q5_K { d; dmin; scales[K_SCALE_SIZE]; qh[QK_K/8]; qs[QK_K/2] }
      {GgmlType::Q5_K, 13, "q5_K", QK_K, 2 * kHalf + K_SCALE_SIZE + QK_K / 8 + QK_K / 2},
      // block_q6_K { ql[QK_K/2]; qh[QK_K/4]; scales[QK_K/16]; d }
      {GgmlType::Q6_K, 14, "q6_K", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + kHalf},
      // block_q8_K { float d; qs[QK_K]; int16 bsums[QK_K/16] }
      {GgmlType::Q8_K, 15, "q8_K", QK_K, kFloat + QK_K + 2 * (QK_K / 16)},
      {GgmlType::I8, 24, "i8", 1, 1},
      {GgmlType::I16, 25, "i16", 1, 2},
      {GgmlType::I32, 26, "i32", 1, 4},
      {GgmlType::I64, 27, "i64", 1, 8},
      {GgmlType::F64, 28, "f64", 1, 8},
      {GgmlType::BF16, 30, "bf16", 1, 2},
  };
  return table;
}

TEST(GgmlType, TableMatchesGgmlBlockStructs) {
  // The well-known totals, spelled out as a cross-check of the field sums above.
  EXPECT_EQ(ggml_type_info(GgmlType::Q4_0).block_bytes, 18u);
  EXPECT_EQ(ggml_type_info(GgmlType::Q4_K).block_bytes, 144u);
  EXPECT_EQ(ggml_type_info(GgmlType::Q6_K).block_bytes, 210u);
  EXPECT_EQ(ggml_type_info(GgmlType::Q2_K).block_bytes, 84u);
  for (const Expected& e : expected_types()) {
    SCOPED_TRACE(e.name);
    EXPECT_EQ(static_cast<std::uint32_t>(e.type), e.id);
    const GgmlTypeInfo* info = ggml_type_info(e.id);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->type, e.type);
    EXPECT_STREQ(info->name, e.name);
    EXPECT_EQ(info->block_size, e.block_size);
    EXPECT_EQ(info->block_bytes, e.block_bytes);
    EXPECT_EQ(&ggml_type_info(e.type), info);
  }
}

TEST(GgmlType, UnknownIdsHaveNoInfo) {
  // 4 and 5 were Q4_2 / Q4_3 (removed); 16..23 and 29 are IQ types piquant does not handle.
  for (const std::uint32_t id : {4u, 5u, 16u, 20u, 23u, 29u, 31u, 39u, 1000u, 0xffffffffu}) {
    EXPECT_EQ(ggml_type_info(id), nullptr) << id;
  }
  EXPECT_THROW(ggml_type_info(static_cast<GgmlType>(4)), Error);
  EXPECT_EQ(ggml_type_name(static_cast<GgmlType>(99)), "type#99");
}

TEST(GgmlType, NamesRoundTripCaseInsensitively) {
  for (const Expected& e : expected_types()) {
    EXPECT_EQ(ggml_type_name(e.type), e.name);
    EXPECT_EQ(ggml_type_from_name(e.name), e.type) << e.name;
    std::string upper = e.name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(ggml_type_from_name(upper), e.type) << upper;
  }
  EXPECT_EQ(ggml_type_from_name("q4_2"), std::nullopt);
  EXPECT_EQ(ggml_type_from_name(""), std::nullopt);
  EXPECT_EQ(ggml_type_from_name("q4_k "), std::nullopt);
}

TEST(GgmlType, NbytesCountsWholeBlocks) {
  EXPECT_EQ(ggml_nbytes(GgmlType::F32, 10), 40u);
  EXPECT_EQ(ggml_nbytes(GgmlType::BF16, 3), 6u);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q4_0, 64), 36u);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q8_0, 4096 * 32), 4096u * 34u);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q4_K, 4096ull * 4096ull), 4096ull * 16ull * 144ull);
  EXPECT_EQ(ggml_nbytes(GgmlType::Q6_K, 0), 0u);
  EXPECT_THROW(ggml_nbytes(GgmlType::Q4_0, 33), Error);
  EXPECT_THROW(ggml_nbytes(GgmlType::Q4_K, 128), Error);
  EXPECT_THROW(ggml_nbytes(GgmlType::F32, std::uint64_t{1} << 62), Error);  // 2^64 bytes
  EXPECT_EQ(ggml_nbytes(GgmlType::F32, (std::uint64_t{1} << 62) - 1), ((std::uint64_t{1} << 62) - 1) * 4);
  EXPECT_THROW(ggml_nbytes(static_cast<GgmlType>(4), 32), Error);
}

}  // namespace
}  // namespace piquant
