#include "quant/dequantize.h"

#include <cstring>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "quant/block_formats.h"

namespace piquant {
namespace {

// Blocks sit in tensor data at any byte offset; copying each one out keeps reads aligned.
template <typename Block>
Block load_block(const std::uint8_t* src, std::int64_t index) {
  Block b;
  std::memcpy(&b, src + index * static_cast<std::int64_t>(sizeof(Block)), sizeof(Block));
  return b;
}

std::uint32_t load_u32_le(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

void decode_q8_0(const BlockQ8_0& b, float* y) {
  const float d = f16_to_f32(b.d);
  for (int i = 0; i < kQk; ++i) y[i] = d * static_cast<float>(b.qs[i]);
}

void decode_q4_0(const BlockQ4_0& b, float* y) {
  const float d = f16_to_f32(b.d);
  for (int j = 0; j < kQk / 2; ++j) {
    y[j] = d * static_cast<float>((b.qs[j] & 0x0f) - 8);
    y[j + kQk / 2] = d * static_cast<float>((b.qs[j] >> 4) - 8);
  }
}

void decode_q4_1(const BlockQ4_1& b, float* y) {
  const float d = f16_to_f32(b.d);
  const float m = f16_to_f32(b.m);
  for (int j = 0; j < kQk / 2; ++j) {
    y[j] = d * static_cast<float>(b.qs[j] & 0x0f) + m;
    y[j + kQk / 2] = d * static_cast<float>(b.qs[j] >> 4) + m;
  }
}

// The 5-bit values of a Q5 block, 0..31.
void unpack_q5(const std::uint8_t* qh_bytes, const std::uint8_t* qs, int* q) {
  const std::uint32_t qh = load_u32_le(qh_bytes);
  for (int j = 0; j < kQk / 2; ++j) {
    q[j] = (qs[j] & 0x0f) | static_cast<int>((qh >> j) & 1u) << 4;
    q[j + kQk / 2] = (qs[j] >> 4) | static_cast<int>((qh >> (j + kQk / 2)) & 1u) << 4;
  }
}

void decode_q5_0(const BlockQ5_0& b, float* y) {
  int q[kQk];
  unpack_q5(b.qh, b.qs, q);
  const float d = f16_to_f32(b.d);
  for (int i = 0; i < kQk; ++i) y[i] = d * static_cast<float>(q[i] - 16);
}

void decode_q5_1(const BlockQ5_1& b, float* y) {
  int q[kQk];
  unpack_q5(b.qh, b.qs, q);
  const float d = f16_to_f32(b.d);
  const float m = f16_to_f32(b.m);
  for (int i = 0; i < kQk; ++i) y[i] = d * static_cast<float>(q[i]) + m;
}

void decode_q2_k(const BlockQ2_K& b, float* y) {
  const float d = f16_to_f32(b.d);
  const float dmin = f16_to_f32(b.dmin);
  for (int e = 0; e < kQkK; ++e) {
    const int h = e / 128, j = (e / 32) % 4, p = (e / 16) % 2, l = e % 16;
    const int q = (b.qs[32 * h + 16 * p + l] >> (2 * j)) & 3;
    const std::uint8_t sm = b.scales[e / 16];
    y[e] = d * static_cast<float>(sm & 0x0f) * static_cast<float>(q) - dmin * static_cast<float>(sm >> 4);
  }
}

// Q3_K's sixteen 6-bit scales, offset removed (-32..31).
void unpack_q3_k_scales(const std::uint8_t* s, int* scale) {
  for (int i = 0; i < 16; ++i) scale[i] = unpack_q3_k_scale(s, i) - 32;
}

void decode_q3_k(const BlockQ3_K& b, float* y) {
  int scale[16];
  unpack_q3_k_scales(b.scales, scale);
  const float d = f16_to_f32(b.d);
  for (int e = 0; e < kQkK; ++e) {
    const int h = e / 128, j = (e / 32) % 4, p = (e / 16) % 2, l = e % 16;
    const int low = (b.qs[32 * h + 16 * p + l] >> (2 * j)) & 3;
    const int high = (b.hmask[e % 32] >> (e / 32)) & 1;
    y[e] = d * static_cast<float>(scale[e / 16]) * static_cast<float>((low | high << 2) - 4);
  }
}

void decode_q4_k(const BlockQ4_K& b, float* y) {
  const float d = f16_to_f32(b.d);
  const float dmin = f16_to_f32(b.dmin);
  for (int e = 0; e < kQkK; ++e) {
    const int c = e / 64, p = (e / 32) % 2, l = e % 32;
    int sc = 0, mn = 0;
    unpack_k4_scale_min(b.scales, e / 32, &sc, &mn);
    const int q = (b.qs[32 * c + l] >> (4 * p)) & 0x0f;
    y[e] = d * static_cast<float>(sc) * static_cast<float>(q) - dmin * static_cast<float>(mn);
  }
}

void decode_q5_k(const BlockQ5_K& b, float* y) {
  const float d = f16_to_f32(b.d);
  const float dmin = f16_to_f32(b.dmin);
  for (int e = 0; e < kQkK; ++e) {
    const int c = e / 64, p = (e / 32) % 2, l = e % 32;
    int sc = 0, mn = 0;
    unpack_k4_scale_min(b.scales, e / 32, &sc, &mn);
    const int q = ((b.qs[32 * c + l] >> (4 * p)) & 0x0f) | ((b.qh[e % 32] >> (e / 32)) & 1) << 4;
    y[e] = d * static_cast<float>(sc) * static_cast<float>(q) - dmin * static_cast<float>(mn);
  }
}

void decode_q6_k(const BlockQ6_K& b, float* y) {
  const float d = f16_to_f32(b.d);
  for (int e = 0; e < kQkK; ++e) {
    const int h = e / 128, k = (e / 32) % 4, l = e % 32;
    const int low = (b.ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0x0f;
    const int high = (b.qh[32 * h + l] >> (2 * k)) & 3;
    y[e] = d * static_cast<float>(b.scales[e / 16]) * static_cast<float>((low | high << 4) - 32);
  }
}

template <typename Block, int kElems>
void decode_blocks(const void* src, float* out, std::int64_t n, void (*decode)(const Block&, float*)) {
  const auto* bytes = static_cast<const std::uint8_t*>(src);
  for (std::int64_t i = 0; i < n / kElems; ++i) decode(load_block<Block>(bytes, i), out + i * kElems);
}

}  // namespace

bool dequantize_supports(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

void dequantize_row(GgmlType type, const void* blocks, float* out, std::int64_t n) {
  if (!dequantize_supports(type)) throw Error("dequantize: type " + ggml_type_name(type) + " has no decoder");
  if (n < 0) throw Error("dequantize " + ggml_type_name(type) + ": negative element count " + std::to_string(n));
  const std::int64_t block = ggml_type_info(type).block_size;
  if (n % block != 0) {
    throw Error("dequantize " + ggml_type_name(type) + ": row of " + std::to_string(n) +
                " elements is not a multiple of the block size " + std::to_string(block));
  }
  const auto* bytes = static_cast<const std::uint8_t*>(blocks);
  switch (type) {
    case GgmlType::F32:
      std::memcpy(out, blocks, static_cast<std::size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t h = 0;
        std::memcpy(&h, bytes + 2 * i, 2);
        out[i] = type == GgmlType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    case GgmlType::Q8_0: return decode_blocks<BlockQ8_0, kQk>(blocks, out, n, decode_q8_0);
    case GgmlType::Q4_0: return decode_blocks<BlockQ4_0, kQk>(blocks, out, n, decode_q4_0);
    case GgmlType::Q4_1: return decode_blocks<BlockQ4_1, kQk>(blocks, out, n, decode_q4_1);
    case GgmlType::Q5_0: return decode_blocks<BlockQ5_0, kQk>(blocks, out, n, decode_q5_0);
    case GgmlType::Q5_1: return decode_blocks<BlockQ5_1, kQk>(blocks, out, n, decode_q5_1);
    case GgmlType::Q2_K: return decode_blocks<BlockQ2_K, kQkK>(blocks, out, n, decode_q2_k);
    case GgmlType::Q3_K: return decode_blocks<BlockQ3_K, kQkK>(blocks, out, n, decode_q3_k);
    case GgmlType::Q4_K: return decode_blocks<BlockQ4_K, kQkK>(blocks, out, n, decode_q4_k);
    case GgmlType::Q5_K: return decode_blocks<BlockQ5_K, kQkK>(blocks, out, n, decode_q5_k);
    case GgmlType::Q6_K: return decode_blocks<BlockQ6_K, kQkK>(blocks, out, n, decode_q6_k);
    default:
      throw Error("dequantize: type " + ggml_type_name(type) + " has no decoder");
  }
}

}  // namespace piquant
