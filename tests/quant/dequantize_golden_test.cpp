// Hand-built blocks: bytes set from ggml's documented layouts, expected values worked out
// by hand per element, compared with dequantize_row.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "formats/ggml_type.h"
#include "quant/dequantize.h"
#include "support/test_support.h"

namespace piquant {
namespace {

constexpr std::uint16_t kHalfOne = 0x3C00;   // 1.0
constexpr std::uint16_t kHalfHalf = 0x3800;  // 0.5
constexpr std::uint16_t kHalfTwo = 0x4000;   // 2.0
constexpr std::uint16_t kHalfMinusTwo = 0xC000;

void put_half(std::vector<std::uint8_t>& b, std::size_t offset, std::uint16_t h) {
  b[offset] = static_cast<std::uint8_t>(h & 0xff);
  b[offset + 1] = static_cast<std::uint8_t>(h >> 8);
}

std::vector<float> decode(GgmlType type, const std::vector<std::uint8_t>& bytes, int n) {
  EXPECT_EQ(bytes.size(), ggml_nbytes(type, static_cast<std::uint64_t>(n)));
  std::vector<float> out(static_cast<std::size_t>(n));
  dequantize_row(type, bytes.data(), out.data(), n);
  return out;
}

TEST(DequantizeGolden, Q8_0) {
  std::vector<std::uint8_t> b(34);
  put_half(b, 0, kHalfHalf);
  for (int i = 0; i < 32; ++i) b[2 + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(i - 16));
  const auto y = decode(GgmlType::Q8_0, b, 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 0.5f * static_cast<float>(i - 16)) << i;
}

TEST(DequantizeGolden, Q4_0) {
  // d = 2; byte j holds element j in the low nibble (value j) and element j+16 high (15-j).
  std::vector<std::uint8_t> b(18);
  put_half(b, 0, kHalfTwo);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<std::uint8_t>(j | (15 - j) << 4);
  const auto y = decode(GgmlType::Q4_0, b, 32);
  EXPECT_EQ(y[0], -16.0f);   // (0 - 8) * 2
  EXPECT_EQ(y[16], 14.0f);   // (15 - 8) * 2
  EXPECT_EQ(y[31], -16.0f);  // byte 15 high nibble 0
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 2.0f * static_cast<float>(j - 8)) << j;
    EXPECT_EQ(y[j + 16], 2.0f * static_cast<float>(7 - j)) << j;
  }
}

TEST(DequantizeGolden, Q4_1) {
  std::vector<std::uint8_t> b(20);
  put_half(b, 0, kHalfOne);
  put_half(b, 2, kHalfMinusTwo);
  for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<std::uint8_t>(j | (15 - j) << 4);
  const auto y = decode(GgmlType::Q4_1, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], static_cast<float>(j) - 2.0f) << j;
    EXPECT_EQ(y[j + 16], static_cast<float>(15 - j) - 2.0f) << j;
  }
}

// qh bytes {0x0F, 0x00, 0xF0, 0xFF}: the u32 is 0xFFF0000F, so elements 0..3 and 20..31
// carry the fifth bit (+16).
bool q5_high_bit(int e) { return e < 4 || e >= 20; }

TEST(DequantizeGolden, Q5_0) {
  std::vector<std::uint8_t> b(22);
  put_half(b, 0, kHalfOne);
  const std::uint8_t qh[4] = {0x0F, 0x00, 0xF0, 0xFF};
  std::memcpy(&b[2], qh, 4);
  for (int j = 0; j < 16; ++j) b[6 + j] = static_cast<std::uint8_t>(j | (15 - j) << 4);
  const auto y = decode(GgmlType::Q5_0, b, 32);
  EXPECT_EQ(y[0], 0.0f);    // 0 + 16 - 16
  EXPECT_EQ(y[4], -12.0f);  // 4 - 16
  EXPECT_EQ(y[19], -4.0f);  // element 19: high nibble of byte 3 = 12, no fifth bit
  EXPECT_EQ(y[20], 11.0f);  // element 20: high nibble of byte 4 = 11, + 16 - 16
  for (int e = 0; e < 32; ++e) {
    const int low = e < 16 ? e : 15 - (e - 16);
    EXPECT_EQ(y[e], static_cast<float>(low + (q5_high_bit(e) ? 16 : 0) - 16)) << e;
  }
}

TEST(DequantizeGolden, Q5_1) {
  std::vector<std::uint8_t> b(24);
  put_half(b, 0, kHalfHalf);
  put_half(b, 2, kHalfOne);
  const std::uint8_t qh[4] = {0x0F, 0x00, 0xF0, 0xFF};
  std::memcpy(&b[4], qh, 4);
  for (int j = 0; j < 16; ++j) b[8 + j] = static_cast<std::uint8_t>(j | (15 - j) << 4);
  const auto y = decode(GgmlType::Q5_1, b, 32);
  EXPECT_EQ(y[3], 0.5f * 19.0f + 1.0f);
  EXPECT_EQ(y[31], 0.5f * (0.0f + 16.0f) + 1.0f);
  for (int e = 0; e < 32; ++e) {
    const int low = e < 16 ? e : 15 - (e - 16);
    EXPECT_EQ(y[e], 0.5f * static_cast<float>(low + (q5_high_bit(e) ? 16 : 0)) + 1.0f) << e;
  }
}

TEST(DequantizeGolden, Q2_K) {
  // scales[s] = s | (15 - s) << 4; every qs byte 0xE4 holds 0,1,2,3 at shifts 0,2,4,6, so
  // element e reads q = (e / 32) % 4 — except byte 53 (second half, second 16-group, l = 5)
  // which is zero: elements 149, 181, 213, 245 read q = 0.
  std::vector<std::uint8_t> b(84);
  for (int s = 0; s < 16; ++s) b[s] = static_cast<std::uint8_t>(s | (15 - s) << 4);
  for (int i = 0; i < 64; ++i) b[16 + i] = 0xE4;
  b[16 + 53] = 0x00;
  put_half(b, 80, kHalfOne);
  put_half(b, 82, kHalfHalf);
  const auto y = decode(GgmlType::Q2_K, b, 256);
  EXPECT_EQ(y[0], 0.0f * 0.0f - 0.5f * 15.0f);
  EXPECT_EQ(y[100], 6.0f * 3.0f - 0.5f * 9.0f);  // sub-block 6, q = 3
  EXPECT_EQ(y[149], -0.5f * 6.0f);               // sub-block 9, zeroed byte
  for (int e = 0; e < 256; ++e) {
    const bool zeroed = e == 149 || e == 181 || e == 213 || e == 245;
    const int q = zeroed ? 0 : (e / 32) % 4;
    const int s = e / 16;
    EXPECT_EQ(y[e], static_cast<float>(s) * static_cast<float>(q) - 0.5f * static_cast<float>(15 - s)) << e;
  }
}

TEST(DequantizeGolden, Q3_K) {
  // Scale bytes worked by hand: scales[0] = 0x21, scales[4] = 0x5A, scales[8] = 0xE4, rest 0.
  //   s0: low 1, high bits 0 -> 1 - 32 = -31      s4: low 0xA, high 1 -> 26 - 32 = -6
  //   s8: low 2, high 2 -> 34 - 32 = 2            s12: low 5, high 3 -> 53 - 32 = 21
  //   every other sub-block: 0 - 32 = -32.
  // qs all 0xE4 -> low bits (e / 32) % 4; hmask all 0xFF (+4 cancels the -4) except byte 7,
  // so elements with e % 32 == 7 read q - 4.
  std::vector<std::uint8_t> b(110);
  for (int i = 0; i < 32; ++i) b[i] = 0xFF;
  b[7] = 0x00;
  for (int i = 0; i < 64; ++i) b[32 + i] = 0xE4;
  b[96 + 0] = 0x21;
  b[96 + 4] = 0x5A;
  b[96 + 8] = 0xE4;
  put_half(b, 108, kHalfOne);
  const auto y = decode(GgmlType::Q3_K, b, 256);
  const auto scale_of = [](int s) {
    switch (s) {
      case 0: return -31;
      case 4: return -6;
      case 8: return 2;
      case 12: return 21;
      default: return -32;
    }
  };
  EXPECT_EQ(y[7], -31.0f * -4.0f);
  EXPECT_EQ(y[200], 21.0f * 2.0f);  // sub-block 12, (200 / 32) % 4 = 2
  for (int e = 0; e < 256; ++e) {
    const int q = (e / 32) % 4 - (e % 32 == 7 ? 4 : 0);
    EXPECT_EQ(y[e], static_cast<float>(scale_of(e / 16)) * static_cast<float>(q)) << e;
  }
}

// Q4_K/Q5_K scale bytes and the (scale, min) pairs they encode, worked by hand.
const std::uint8_t kK4Scales[12] = {0x41, 0x02, 0x83, 0xC4, 0x05, 0x46, 0x07, 0x08, 0x21, 0x43, 0x65, 0x87};
const int kK4Scale[8] = {1, 2, 3, 4, 17, 3, 37, 55};
const int kK4Min[8] = {5, 6, 7, 8, 2, 20, 6, 8};

TEST(DequantizeGolden, Q4_K) {
  // qs all 0x5A: even sub-blocks read the low nibble 10, odd ones the high nibble 5.
  // qs[67] = 0xF0: element 131 (sub-block 4, low) reads 0, element 163 (sub-block 5) reads 15.
  std::vector<std::uint8_t> b(144);
  put_half(b, 0, kHalfOne);
  put_half(b, 2, kHalfHalf);
  std::memcpy(&b[4], kK4Scales, 12);
  for (int i = 0; i < 128; ++i) b[16 + i] = 0x5A;
  b[16 + 67] = 0xF0;
  const auto y = decode(GgmlType::Q4_K, b, 256);
  EXPECT_EQ(y[131], 0.0f - 0.5f * 2.0f);
  EXPECT_EQ(y[163], 3.0f * 15.0f - 0.5f * 20.0f);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    int q = s % 2 == 0 ? 10 : 5;
    if (e == 131) q = 0;
    if (e == 163) q = 15;
    EXPECT_EQ(y[e], static_cast<float>(kK4Scale[s]) * static_cast<float>(q) - 0.5f * static_cast<float>(kK4Min[s])) << e;
  }
}

TEST(DequantizeGolden, Q5_K) {
  // As Q4_K (without the 0xF0 byte) plus qh[9] = 0x81: elements 9 and 233 get +16.
  std::vector<std::uint8_t> b(176);
  put_half(b, 0, kHalfOne);
  put_half(b, 2, kHalfHalf);
  std::memcpy(&b[4], kK4Scales, 12);
  b[16 + 9] = 0x81;
  for (int i = 0; i < 128; ++i) b[48 + i] = 0x5A;
  const auto y = decode(GgmlType::Q5_K, b, 256);
  EXPECT_EQ(y[9], 1.0f * 26.0f - 2.5f);
  EXPECT_EQ(y[233], 55.0f * 21.0f - 4.0f);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    const int q = (s % 2 == 0 ? 10 : 5) + ((e == 9 || e == 233) ? 16 : 0);
    EXPECT_EQ(y[e], static_cast<float>(kK4Scale[s]) * static_cast<float>(q) - 0.5f * static_cast<float>(kK4Min[s])) << e;
  }
}

TEST(DequantizeGolden, Q6_K) {
  // d = 0.5, scales[s] = s - 8. ql all 0x21 (low nibble 1, high 2), qh all 0xE4 (2-bit
  // fields 0,1,2,3). Within each 128-half, 32-group k reads the low nibble of ql[0..31] (k=0),
  // of ql[32..63] (k=1), high nibbles (k=2,3), with high bits k: q6 = {1, 17, 34, 50}.
  // ql[100] = 0xF0 (second half, byte 36): element 164 (k=1) reads 0 | 16 = 16 and
  // element 228 (k=3) reads 15 | 48 = 63.
  std::vector<std::uint8_t> b(210);
  for (int i = 0; i < 128; ++i) b[i] = 0x21;
  b[100] = 0xF0;
  for (int i = 0; i < 64; ++i) b[128 + i] = 0xE4;
  for (int s = 0; s < 16; ++s) b[192 + s] = static_cast<std::uint8_t>(static_cast<std::int8_t>(s - 8));
  put_half(b, 208, kHalfHalf);
  const auto y = decode(GgmlType::Q6_K, b, 256);
  const int q6_of_group[4] = {1, 17, 34, 50};
  EXPECT_EQ(y[164], 0.5f * 2.0f * -16.0f);
  EXPECT_EQ(y[228], 0.5f * 6.0f * 31.0f);
  for (int e = 0; e < 256; ++e) {
    int q6 = q6_of_group[(e / 32) % 4];
    if (e == 164) q6 = 16;
    if (e == 228) q6 = 63;
    EXPECT_EQ(y[e], 0.5f * static_cast<float>(e / 16 - 8) * static_cast<float>(q6 - 32)) << e;
  }
}

TEST(DequantizeGolden, MultipleBlocksAreDecodedInOrder) {
  std::vector<std::uint8_t> b(36);
  put_half(b, 0, kHalfOne);
  put_half(b, 18, kHalfTwo);
  for (int j = 0; j < 16; ++j) {
    b[2 + j] = 0x99;   // 1, 1
    b[20 + j] = 0x00;  // -8, -8
  }
  std::vector<float> y(64);
  dequantize_row(GgmlType::Q4_0, b.data(), y.data(), 64);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[31], 1.0f);
  EXPECT_EQ(y[32], -16.0f);
  EXPECT_EQ(y[63], -16.0f);
}

}  // namespace
}  // namespace piquant
