#include "kernels/q8_activations.h"

#include "kernels/simd_config.h"
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/q8_activations.cpp"
#include "hwy/foreach_target.h"
#include "hwy/highway.h"
// clang-format on

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"

#ifndef PIQUANT_KERNELS_Q8_ACTIVATIONS_BLOCKS_
#define PIQUANT_KERNELS_Q8_ACTIVATIONS_BLOCKS_
namespace piquant::q8_detail {

constexpr std::int64_t kQ8KBlock = 256;
// Only x86's AVX-512 Q4_K kernel reads values8_interleaved: other architectures skip the
// copy (per token, per matmul).
#if defined(__x86_64__)
constexpr bool kFillInterleaved = true;
#else
constexpr bool kFillInterleaved = false;
#endif

// Where QuantizeBlocks writes block b's results (each array indexed as in Q8Activations).
struct BlockOutputs {
  std::int16_t* values;
  std::int8_t* values8;
  std::int8_t* values8_interleaved;  // null: not filled
  float* scales;
  std::int32_t* sums16;
  std::int16_t* sums16_i16;
  float* block_sums;
};

}  // namespace piquant::q8_detail
#endif

// The quantizer is plain C++ whose loops vectorize (omp simd), compiled once per Highway
// target like the kernels, so PIQUANT_SIMD chooses its code too (the x86 baseline, SSE2,
// has no 8-bit packs or masked selects and took several times longer: ~7% of a prompt's
// time). Every step is exact or one correctly rounded operation per value, so every
// target gives the same bits (q8_activations_test checks it).
HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {
namespace {

using namespace q8_detail;

// Round to nearest, ties to even (what both of llama.cpp's roundings give); NaN gives 0.
// Adding and subtracting 1.5·2^23 rounds in the FPU's default mode (ties to even) for
// |v| < 2^22, which covers every code (|v| ≤ 127 plus rounding) and keeps the loops
// free of libm calls and branches, so they vectorize (`omp simd`); anything larger is
// clamped first.
HWY_INLINE std::int16_t round_to_code(float v, float lo, float hi) {
  constexpr float kRoundingShift = 12582912.0f;  // 1.5 · 2^23
  const float finite = v == v ? v : 0.0f;
  const float clamped = std::clamp(finite, lo - 1.0f, hi + 1.0f);
  return static_cast<std::int16_t>(std::clamp((clamped + kRoundingShift) - kRoundingShift, lo, hi));
}

// max |x[i]| over n values, NaN counted as 0.
template <int n>
HWY_INLINE float max_magnitude(const float* x) {
  float amax = 0.0f;
#pragma omp simd reduction(max : amax)
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    amax = std::max(amax, a == a ? a : 0.0f);
  }
  return amax;
}

// ggml's Q8_0 activation block (its AVX quantizer): 127 / max|x| as the multiplier, the
// scale stored as f16.
// Returns the scale; *block_sum gets the Q8_1 sum f16(d · Σq) with d unrounded.
HWY_INLINE float quantize_q8_0(const float* x, std::int16_t* q, float* block_sum) {
  const float amax = max_magnitude<kQ8ActivationBlock>(x);
  const float mul = amax != 0.0f ? 127.0f / amax : 0.0f;
  int sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < kQ8ActivationBlock; ++i) {
    q[i] = round_to_code(x[i] * mul, -127.0f, 127.0f);
    sum += q[i];
  }
  const float d = amax / 127.0f;
  *block_sum = f16_to_f32(f32_to_f16(d * static_cast<float>(sum)));
  return f16_to_f32(f32_to_f16(d));
}

// ggml's Q8_K block: the signed extreme (the first value of largest magnitude) maps to
// -127; the opposite extreme may round to +127 or (clamped) beyond.
HWY_INLINE float quantize_q8_k(const float* x, std::int16_t* q) {
  const float amax = max_magnitude<kQ8KBlock>(x);
  if (amax == 0.0f) {
    std::fill(q, q + kQ8KBlock, std::int16_t{0});
    return 0.0f;
  }
  int first = kQ8KBlock;  // the first value of largest magnitude (NaN compares unequal)
#pragma omp simd reduction(min : first)
  for (int i = 0; i < kQ8KBlock; ++i) first = std::fabs(x[i]) == amax ? std::min(first, i) : first;
  const float iscale = -127.0f / (first < kQ8KBlock ? x[first] : amax);
#pragma omp simd
  for (int i = 0; i < kQ8KBlock; ++i) q[i] = round_to_code(iscale * x[i], -128.0f, 127.0f);
  return 1.0f / iscale;
}

}  // namespace

// Quantizes blocks [b_begin, b_end) of x (blocks of 32, or of 256 for Q8_K) into out.
void QuantizeBlocks(const float* x, std::int64_t b_begin, std::int64_t b_end, Q8Blocks blocks,
                    const BlockOutputs& out) {
  const std::int64_t block = blocks == Q8Blocks::Q8_K ? kQ8KBlock : kQ8ActivationBlock;
  const std::int64_t per_block = block / kQ8ActivationBlock;  // 32-column scales per block
  for (std::int64_t b = b_begin; b < b_end; ++b) {
    const float* xb = x + b * block;
    std::int16_t* q = out.values + b * block;
    float q8_1_sum = 0.0f;
    const float scale = blocks == Q8Blocks::Q8_K ? quantize_q8_k(xb, q) : quantize_q8_0(xb, q, &q8_1_sum);
    std::fill_n(out.scales + b * per_block, per_block, scale);
    std::int8_t* q8 = out.values8 + b * block;
#pragma omp simd
    for (std::int64_t i = 0; i < block; ++i) q8[i] = static_cast<std::int8_t>(q[i]);
    if (out.values8_interleaved != nullptr) {
      // Piece 4i + j (16 bytes) goes to position 4j + i.
      std::int8_t* interleaved = out.values8_interleaved + b * block;
      for (int piece = 0; piece < 16; ++piece)
        std::copy_n(q8 + 16 * piece, 16, interleaved + 16 * (4 * (piece % 4) + piece / 4));
    }
    for (std::int64_t g = 0; g < block / 16; ++g) {
      std::int32_t sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int i = 0; i < 16; ++i) sum += q[16 * g + i];
      out.sums16[b * (block / 16) + g] = sum;
      out.sums16_i16[b * (block / 16) + g] = static_cast<std::int16_t>(sum);
    }
    for (std::int64_t s = 0; s < per_block; ++s) {
      const std::int64_t i = b * per_block + s;
      out.block_sums[i] = blocks == Q8Blocks::Q8_1
                              ? q8_1_sum
                              : scale * static_cast<float>(out.sums16[2 * i] + out.sums16[2 * i + 1]);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "core/error.h"

namespace piquant {

HWY_EXPORT(QuantizeBlocks);

namespace {

using namespace q8_detail;

// The token tiles are read by x86's AVX2 and AVX-512 prompt kernels only.
constexpr bool kFillTokenTiles = kFillInterleaved;

}  // namespace

Q8Blocks q8_blocks_for(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return Q8Blocks::Q8_K;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
      return Q8Blocks::Q8_1;
    default:
      return Q8Blocks::Q8_0;
  }
}

void Q8Activations::prepare(std::int64_t n_tokens, std::int64_t cols, Q8Blocks blocks) {
  const std::int64_t block = blocks == Q8Blocks::Q8_K ? kQ8KBlock : kQ8ActivationBlock;
  if (n_tokens < 0 || cols < 0 || cols % block != 0)
    throw Error("Q8Activations: " + std::to_string(n_tokens) + " tokens of " + std::to_string(cols) +
                " columns: columns must be a non-negative multiple of " + std::to_string(block));
  n_tokens_ = n_tokens;
  cols_ = cols;
  blocks_ = blocks;
  const auto n = static_cast<std::size_t>(n_tokens * cols);
  values_.resize(n);
  values8_.resize(n);
  values8_interleaved_.resize(blocks == Q8Blocks::Q8_K && kFillInterleaved ? n : 0);
  scales_.resize(n / kQ8ActivationBlock);
  sums16_.resize(n / 16);
  sums16_i16_.resize(n / 16);
  block_sums_.resize(n / kQ8ActivationBlock);

  n_tiles_ = blocks == Q8Blocks::Q8_K && kFillTokenTiles && n_tokens >= kQ8TileTokens
                 ? (n_tokens + kQ8TileTokens - 1) / kQ8TileTokens
                 : 0;
  const auto tiled = static_cast<std::size_t>(n_tiles_ * kQ8TileTokens * cols);
  tile_values_.resize(tiled);
  tile_scales_.resize(tiled / kQ8KBlock);
  tile_block_sums_.resize(tiled / kQ8ActivationBlock);
  tile_offsets16_.resize(tiled / 16);
  if (n_tokens % kQ8TileTokens != 0 && n_tiles_ > 0) {
    // The last tile's absent tokens: zeros (never written by quantize_tokens).
    const auto last = static_cast<std::size_t>((n_tiles_ - 1) * kQ8TileTokens * cols);
    std::fill(tile_values_.begin() + static_cast<std::ptrdiff_t>(last), tile_values_.end(), std::int8_t{0});
    std::fill(tile_scales_.begin() + static_cast<std::ptrdiff_t>(last / kQ8KBlock), tile_scales_.end(), 0.0f);
    std::fill(tile_block_sums_.begin() + static_cast<std::ptrdiff_t>(last / kQ8ActivationBlock),
              tile_block_sums_.end(), 0.0f);
    std::fill(tile_offsets16_.begin() + static_cast<std::ptrdiff_t>(last / 16), tile_offsets16_.end(), 0);
  }
}

std::uint64_t Q8Activations::storage_bytes(std::uint64_t n_tokens, std::uint64_t cols) {
  const std::uint64_t padded_tokens = (n_tokens / kQ8TileTokens + 1) * kQ8TileTokens;
  std::uint64_t n, tiled;
  if (__builtin_mul_overflow(n_tokens, cols, &n) || __builtin_mul_overflow(padded_tokens, cols, &tiled))
    return UINT64_MAX;
  // Bytes per 16 values. Rows: an int16, a byte and an interleaved byte per value, two
  // sums (int32, int16) per 16, a scale and a block sum (floats) per 32. Tiles: a byte per
  // value, a 4-byte offset per 16, block sum per 32 and scale per 256 (rounded up).
  const std::uint64_t parts[] = {n / 16, tiled / 16};
  const std::uint64_t per_16[] = {4 * 16 + (4 + 2) + 8 / 2, 16 + 4 + 4 / 2 + 1};
  std::uint64_t total = 0;
  for (int i = 0; i < 2; ++i) {
    std::uint64_t bytes;
    if (__builtin_mul_overflow(parts[i] + 1, per_16[i], &bytes) || __builtin_add_overflow(total, bytes, &total))
      return UINT64_MAX;
  }
  return total;
}

std::uint64_t Q8Activations::held_bytes() const {
  const auto bytes = [](const auto& v) { return v.capacity() * sizeof(v[0]); };
  return bytes(values_) + bytes(values8_) + bytes(values8_interleaved_) + bytes(scales_) + bytes(sums16_) +
         bytes(sums16_i16_) + bytes(block_sums_) + bytes(tile_values_) + bytes(tile_scales_) + bytes(tile_block_sums_) +
         bytes(tile_offsets16_);
}

// Copies block `block` (256 columns of one token, already quantized) into its tile's lane.
void Q8Activations::fill_token_tiles(std::int64_t block) {
  const std::int64_t t = block * kQ8KBlock / cols_, c0 = block * kQ8KBlock % cols_;
  const std::int64_t tile = t / kQ8TileTokens, lane = t % kQ8TileTokens;
  const std::int64_t tile_cols = kQ8TileTokens * cols_;  // elements per tile
  const std::int8_t* q8 = values8_.data() + block * kQ8KBlock;
  std::int8_t* values = tile_values_.data() + tile * tile_cols + c0 * kQ8TileTokens + 4 * lane;
  for (std::int64_t k = 0; k < kQ8KBlock / 4; ++k) std::memcpy(values + k * 4 * kQ8TileTokens, q8 + 4 * k, 4);
  const auto at = [&](std::int64_t group, std::int64_t index) {
    return static_cast<std::size_t>(tile * tile_cols / group + (c0 / group + index) * kQ8TileTokens + lane);
  };
  tile_scales_[at(kQ8KBlock, 0)] = scales_[static_cast<std::size_t>(block * kQ8KBlock / kQ8ActivationBlock)];
  for (std::int64_t j = 0; j < kQ8KBlock / kQ8ActivationBlock; ++j)
    tile_block_sums_[at(kQ8ActivationBlock, j)] =
        block_sums_[static_cast<std::size_t>(block * kQ8KBlock / kQ8ActivationBlock + j)];
  for (std::int64_t g = 0; g < kQ8KBlock / 16; ++g)
    tile_offsets16_[at(16, g)] = -32 * sums16_[static_cast<std::size_t>(block * kQ8KBlock / 16 + g)];
}

void Q8Activations::quantize_tokens(const float* x, std::int64_t t_begin, std::int64_t t_end) {
  const std::int64_t block = blocks_ == Q8Blocks::Q8_K ? kQ8KBlock : kQ8ActivationBlock;
  const std::int64_t b_begin = t_begin * cols_ / block, b_end = t_end * cols_ / block;
  const q8_detail::BlockOutputs out{values_.data(),
                                    values8_.data(),
                                    blocks_ == Q8Blocks::Q8_K && kFillInterleaved ? values8_interleaved_.data() : nullptr,
                                    scales_.data(),
                                    sums16_.data(),
                                    sums16_i16_.data(),
                                    block_sums_.data()};
  HWY_DYNAMIC_DISPATCH(QuantizeBlocks)(x, b_begin, b_end, blocks_, out);
  if (n_tiles_ > 0)
    for (std::int64_t b = b_begin; b < b_end; ++b) fill_token_tiles(b);
}

Q8Row Q8Activations::token(std::int64_t t) const {
  const auto base = static_cast<std::size_t>(t * cols_);
  return {values_.data() + base, values8_.data() + base,
          blocks_ == Q8Blocks::Q8_K && kFillInterleaved ? values8_interleaved_.data() + base : nullptr, scales_.data() + base / kQ8ActivationBlock,
          sums16_.data() + base / 16, sums16_i16_.data() + base / 16, block_sums_.data() + base / kQ8ActivationBlock, blocks_ == Q8Blocks::Q8_K};
}

Q8TokenTile Q8Activations::token_tile(std::int64_t i) const {
  const auto base = static_cast<std::size_t>(i * kQ8TileTokens * cols_);
  return {tile_values_.data() + base, tile_scales_.data() + base / kQ8KBlock,
          tile_block_sums_.data() + base / kQ8ActivationBlock, tile_offsets16_.data() + base / 16,
          std::min(kQ8TileTokens, n_tokens_ - i * kQ8TileTokens)};
}

void Q8Activations::dequantize(std::int64_t t, float* out) const {
  const Q8Row row = token(t);
  for (std::int64_t c = 0; c < cols_; ++c) out[c] = row.scales[c / kQ8ActivationBlock] * row.values[c];
}

}  // namespace piquant
#endif  // HWY_ONCE
