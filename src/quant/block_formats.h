#pragma once
// ggml's quantized block layouts, byte for byte as they appear in GGUF tensor data.
// f16 fields are raw IEEE half bits (see core/half.h). Element order inside the bit
// fields is documented per struct; dequantize.cpp is the reference reading of it.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace piquant {

inline constexpr int kQk = 32;    // elements per legacy block (Q4_0 .. Q8_0)
inline constexpr int kQkK = 256;  // elements per K-quant super-block

// x[i] = d * qs[i]
struct BlockQ8_0 {
  std::uint16_t d;
  std::int8_t qs[kQk];
};

// qs[j] low nibble = element j, high nibble = element j + 16; x = d * (q - 8)
struct BlockQ4_0 {
  std::uint16_t d;
  std::uint8_t qs[kQk / 2];
};

// nibbles as Q4_0; x = d * q + m
struct BlockQ4_1 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qs[kQk / 2];
};

// nibbles as Q4_0; bit j of the little-endian u32 qh is bit 4 of element j; x = d * (q - 16)
struct BlockQ5_0 {
  std::uint16_t d;
  std::uint8_t qh[4];
  std::uint8_t qs[kQk / 2];
};

// as Q5_0; x = d * q + m
struct BlockQ5_1 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qh[4];
  std::uint8_t qs[kQk / 2];
};

// Element e (0..255) of a K-quant below is split as e = 128*h + 32*j + 16*p + l where noted.

// 16 sub-blocks of 16. scales[s]: low nibble scale, high nibble min of sub-block s = e/16.
// 2-bit q of e at qs[32*h + 16*p + l] bits 2*j. x = d * scale * q - dmin * min.
struct BlockQ2_K {
  std::uint8_t scales[kQkK / 16];
  std::uint8_t qs[kQkK / 4];
  std::uint16_t d;
  std::uint16_t dmin;
};

// 16 sub-blocks of 16, 6-bit scales stored with offset 32: scale s low nibble is
// scales[s] low (s < 8) or scales[s-8] high (s >= 8); its top 2 bits are scales[8 + s%4]
// bits 2*(s/4). Low 2 bits of q at qs[32*h + 16*p + l] bits 2*j (as Q2_K); hmask[e % 32]
// bit e/32 set means +4. x = d * (scale - 32) * (q3 - 4).
struct BlockQ3_K {
  std::uint8_t hmask[kQkK / 8];
  std::uint8_t qs[kQkK / 4];
  std::uint8_t scales[12];
  std::uint16_t d;
};

// 8 sub-blocks of 32 with 6-bit scale and min (see pack in quantize / unpack in dequantize:
// sub-block s < 4: scale = scales[s] & 63, min = scales[s+4] & 63; s >= 4: scale =
// (scales[s+4] & 15) | (scales[s-4] >> 6) << 4, min = (scales[s+4] >> 4) | (scales[s] >> 6) << 4).
// Element e = 64*c + 32*p + l: nibble p (0 low, 1 high) of qs[32*c + l]; sub-block e/32.
// x = d * scale * q - dmin * min.
struct BlockQ4_K {
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[kQkK / 2];
};

// As Q4_K plus a 5th bit: qh[e % 32] bit e/32.
struct BlockQ5_K {
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[kQkK / 8];
  std::uint8_t qs[kQkK / 2];
};

// 16 sub-blocks of 16 with int8 scales. Element e = 128*h + 32*k + l (k 0..3, l 0..31):
// low 4 bits = nibble (k >> 1) of ql[64*h + 32*(k & 1) + l], high 2 bits = qh[32*h + l]
// bits 2*k. x = d * scales[e/16] * (q6 - 32).
struct BlockQ6_K {
  std::uint8_t ql[kQkK / 2];
  std::uint8_t qh[kQkK / 4];
  std::int8_t scales[kQkK / 16];
  std::uint16_t d;
};

// Scale and min (0..63) of sub-block `sub` (0..7) from the 12 packed bytes of Q4_K/Q5_K.
inline void unpack_k4_scale_min(const std::uint8_t* s, int sub, int* scale, int* min) {
  if (sub < 4) {
    *scale = s[sub] & 63;
    *min = s[sub + 4] & 63;
  } else {
    *scale = (s[sub + 4] & 0x0f) | (s[sub - 4] >> 6) << 4;
    *min = (s[sub + 4] >> 4) | (s[sub] >> 6) << 4;
  }
}

// All 8 scales and 8 mins of Q4_K/Q5_K at once, the rules of unpack_k4_scale_min applied
// four bytes at a time with word arithmetic (the kernels' per-super-block path): byte j
// of *scales / *mins (little-endian) is sub-block j's value.
inline void unpack_k4_scales_and_mins(const std::uint8_t* packed, std::uint64_t* scales, std::uint64_t* mins) {
  static_assert(std::endian::native == std::endian::little, "the packed scales are read as little-endian words");
  std::uint32_t w[3];
  std::memcpy(w, packed, sizeof(w));
  const std::uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, bits45 = 0x30303030u;
  // Sub-blocks 4-7 take a low nibble from bytes 8-11 and their top 2 bits from bytes 0-7.
  *scales = (w[0] & low6) | std::uint64_t{(w[2] & low4) | ((w[0] >> 2) & bits45)} << 32;
  *mins = (w[1] & low6) | std::uint64_t{((w[2] >> 4) & low4) | ((w[1] >> 2) & bits45)} << 32;
}

// Stored scale (0..63, 32 above the signed value) of sub-block `sub` (0..15) from the 12
// packed bytes of Q3_K: its low 4 bits are nibble sub / 8 of byte sub % 8, its top 2 bits
// bits 2(sub / 4) of byte 8 + sub % 4.
inline int unpack_q3_k_scale(const std::uint8_t* s, int sub) {
  const int low = sub < 8 ? (s[sub] & 0x0f) : (s[sub - 8] >> 4);
  const int high = (s[8 + sub % 4] >> (2 * (sub / 4))) & 3;
  return low | high << 4;
}

// All 16 stored scales of Q3_K at once, four bytes at a time: byte j of *low is sub-block
// j's, of *high sub-block 8 + j's (little-endian).
inline void unpack_q3_k_scales(const std::uint8_t* packed, std::uint64_t* low, std::uint64_t* high) {
  static_assert(std::endian::native == std::endian::little, "the packed scales are read as little-endian words");
  std::uint32_t w[3];
  std::memcpy(w, packed, sizeof(w));
  std::uint64_t four[4];
  for (int k = 0; k < 4; ++k)  // sub-blocks 4k .. 4k + 3
    four[k] = ((w[k % 2] >> (4 * (k / 2))) & 0x0f0f0f0fu) | (((w[2] >> (2 * k)) & 0x03030303u) << 4);
  *low = four[0] | four[1] << 32;
  *high = four[2] | four[3] << 32;
}

static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

}  // namespace piquant
