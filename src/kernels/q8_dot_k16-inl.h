// Dot products of one Q2_K / Q3_K / Q6_K row with a token's Q8 activations, per Highway
// target. These K-quants have 16 sub-blocks of 16 per super-block of 256, each with its
// own integer scale. The scale is multiplied into the int16 weight codes (|code · scale|
// ≤ 4096 for Q6_K, 128 for Q3_K, 45 for Q2_K), so one int16 multiply-add per vector gives
// int32 sums that already carry the sub-block scales; the float scales (weight d times
// the activation scale of each 32 columns) are applied once per 32 columns.
// Included once per Highway target (hence no #pragma once).
#if defined(PIQUANT_KERNELS_Q8_DOT_K16_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PIQUANT_KERNELS_Q8_DOT_K16_INL_H_
#undef PIQUANT_KERNELS_Q8_DOT_K16_INL_H_
#else
#define PIQUANT_KERNELS_Q8_DOT_K16_INL_H_
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "hwy/highway.h"
#include "kernels/q8_activations.h"
#include "quant/block_formats.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {
namespace q8_k16 {
namespace hn = hwy::HWY_NAMESPACE;

// A block of 32 int16 lanes: 1 vector on AVX-512, 2 on AVX2, 4 on 128-bit targets.
using D16 = hn::CappedTag<std::int16_t, 32>;
using DU16 = hn::RebindToUnsigned<D16>;
using DU8 = hn::Rebind<std::uint8_t, D16>;
using D32 = hn::Repartition<std::int32_t, D16>;
using DF = hn::Repartition<float, D16>;
using V16 = hn::Vec<D16>;
using VU16 = hn::Vec<DU16>;
using V32 = hn::Vec<D32>;
using VF = hn::Vec<DF>;

constexpr std::size_t kLanes = hn::MaxLanes(D16());
static_assert(32 % kLanes == 0, "a block of 32 columns must be whole vectors");

// Int32 sums of one block of 32 columns. Highway's widening multiply-add may split its
// pairs over two accumulators (sum1 is unused on x86); their total is the dot product.
struct BlockSum {
  V32 sum0, sum1;
};

HWY_INLINE BlockSum ZeroSum() { return {hn::Zero(D32()), hn::Zero(D32())}; }

HWY_INLINE void MulAcc(V16 w, const std::int16_t* x, BlockSum& s) {
  s.sum0 = hn::ReorderWidenMulAccumulate(D32(), w, hn::LoadU(D16(), x), s.sum0, s.sum1);
}

HWY_INLINE VF BlockToFloat(const BlockSum& s) { return hn::ConvertTo(DF(), hn::Add(s.sum0, s.sum1)); }

// kLanes bytes widened to 16 bits.
HWY_INLINE VU16 LoadBytes(const std::uint8_t* p) { return hn::PromoteTo(DU16(), hn::LoadU(DU8(), p)); }

// Sub-block scales of the vector at offset o (0..31, a multiple of kLanes) of a block of 32
// columns whose two halves have scales lo and hi.
HWY_INLINE V16 ScalesAt(std::size_t o, std::int16_t lo, std::int16_t hi) {
  const D16 d;
  if constexpr (kLanes == 32) {
    return hn::IfThenElse(hn::FirstN(d, 16), hn::Set(d, lo), hn::Set(d, hi));
  } else {
    return hn::Set(d, o < 16 ? lo : hi);
  }
}

HWY_INLINE float LoadHalf(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return f16_to_f32(h);
}

}  // namespace q8_k16

// Q6_K: x = d · scales[s] · (q6 - 32), q6 = 4 low bits from ql | 2 high bits from qh.
HWY_INLINE float DotQ6_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  using namespace q8_k16;
  const D16 d16;
  const DU16 du16;
  const DF df;
  const VU16 low4 = hn::Set(du16, 0x0f), high2 = hn::Set(du16, 0x30);
  const V16 offset = hn::Set(d16, 32);
  VF acc = hn::Zero(df);
  const std::int64_t n_blocks = cols / kQkK;
  for (std::int64_t sb = 0; sb < n_blocks; ++sb) {
    const std::uint8_t* b = row + sb * static_cast<std::int64_t>(sizeof(BlockQ6_K));
    const std::uint8_t* ql = b + offsetof(BlockQ6_K, ql);
    const std::uint8_t* qh = b + offsetof(BlockQ6_K, qh);
    const auto* packed = reinterpret_cast<const std::int8_t*>(b + offsetof(BlockQ6_K, scales));
    std::int16_t scale[16];
    for (int s = 0; s < 16; ++s) scale[s] = packed[s];
    const float d = LoadHalf(b + offsetof(BlockQ6_K, d));
    const std::int16_t* xv = x.values + sb * kQkK;
    const float* xs = x.scales + sb * (kQkK / kQ8ActivationBlock);
    VF sb_acc[4] = {hn::Zero(df), hn::Zero(df), hn::Zero(df), hn::Zero(df)};
    for (int h = 0; h < 2; ++h) {
      // Element 128h + 32k + l: k = 0, 2 are the low / high nibbles of ql[64h + l], k = 1, 3
      // those of ql[64h + 32 + l]; qh[32h + l] bits 2k are the top bits of all four.
      BlockSum s[4] = {ZeroSum(), ZeroSum(), ZeroSum(), ZeroSum()};
      for (std::size_t o = 0; o < 32; o += kLanes) {
        const VU16 a = LoadBytes(ql + 64 * h + o);
        const VU16 c = LoadBytes(ql + 64 * h + 32 + o);
        const VU16 hb = LoadBytes(qh + 32 * h + o);
        const VU16 q[4] = {
            hn::Or(hn::And(a, low4), hn::And(hn::ShiftLeft<4>(hb), high2)),
            hn::Or(hn::And(c, low4), hn::And(hn::ShiftLeft<2>(hb), high2)),
            hn::Or(hn::ShiftRight<4>(a), hn::And(hb, high2)),
            hn::Or(hn::ShiftRight<4>(c), hn::And(hn::ShiftRight<2>(hb), high2)),
        };
        for (int k = 0; k < 4; ++k) {
          const int sub = 8 * h + 2 * k;
          const V16 w = hn::Mul(hn::Sub(hn::BitCast(d16, q[k]), offset), ScalesAt(o, scale[sub], scale[sub + 1]));
          MulAcc(w, xv + 128 * h + 32 * k + o, s[k]);
        }
      }
      for (int k = 0; k < 4; ++k) sb_acc[k] = hn::MulAdd(BlockToFloat(s[k]), hn::Set(df, xs[4 * h + k]), sb_acc[k]);
    }
    acc = hn::MulAdd(hn::Add(hn::Add(sb_acc[0], sb_acc[1]), hn::Add(sb_acc[2], sb_acc[3])), hn::Set(df, d), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

// Q3_K: x = d · (scale - 32) · (q3 - 4); q3's low 2 bits from qs, its bit 2 from hmask.
HWY_INLINE float DotQ3_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  using namespace q8_k16;
  const D16 d16;
  const DU16 du16;
  const DF df;
  const VU16 low2 = hn::Set(du16, 3), bit2 = hn::Set(du16, 4);
  VF acc = hn::Zero(df);
  const std::int64_t n_blocks = cols / kQkK;
  for (std::int64_t sb = 0; sb < n_blocks; ++sb) {
    const std::uint8_t* b = row + sb * static_cast<std::int64_t>(sizeof(BlockQ3_K));
    const std::uint8_t* hmask = b + offsetof(BlockQ3_K, hmask);
    const std::uint8_t* qs = b + offsetof(BlockQ3_K, qs);
    const std::uint8_t* packed = b + offsetof(BlockQ3_K, scales);
    const float d = LoadHalf(b + offsetof(BlockQ3_K, d));
    // Sixteen 6-bit scales, four per 32-bit word: low nibbles in bytes 0..7 (sub-blocks
    // 0..7 low, 8..15 high nibble), top 2 bits of sub-block s in byte 8 + s % 4 at bit
    // 2 · (s / 4). The masks keep every byte apart, so byte order does not matter.
    std::uint32_t words[3];
    std::memcpy(words, packed, sizeof(words));
    std::uint8_t stored[16];
    for (int k = 0; k < 4; ++k) {
      const std::uint32_t low = (words[k % 2] >> (4 * (k / 2))) & 0x0f0f0f0fu;
      const std::uint32_t high = ((words[2] >> (2 * k)) & 0x03030303u) << 4;
      const std::uint32_t four = low | high;
      std::memcpy(stored + 4 * k, &four, sizeof(four));
    }
    std::int16_t scale[16];
    for (int s = 0; s < 16; ++s) scale[s] = static_cast<std::int16_t>(stored[s] - 32);
    const std::int16_t* xv = x.values + sb * kQkK;
    const float* xs = x.scales + sb * (kQkK / kQ8ActivationBlock);
    VF sb_acc[4] = {hn::Zero(df), hn::Zero(df), hn::Zero(df), hn::Zero(df)};
    for (int h = 0; h < 2; ++h) {
      // Element 128h + 32j + l: low bits at qs[32h + l] bits 2j, bit 2 at hmask[l] bit 4h + j;
      // a clear hmask bit means q3 - 4 = low - 4.
      BlockSum s[4] = {ZeroSum(), ZeroSum(), ZeroSum(), ZeroSum()};
      for (std::size_t o = 0; o < 32; o += kLanes) {
        const VU16 qv = LoadBytes(qs + 32 * h + o);
        const VU16 clear = hn::Not(LoadBytes(hmask + o));
        for (int j = 0; j < 4; ++j) {
          const int bit = 4 * h + j;
          const VU16 low = hn::And(hn::ShiftRightSame(qv, 2 * j), low2);
          const VU16 minus4 = hn::And(bit >= 2 ? hn::ShiftRightSame(clear, bit - 2) : hn::ShiftLeftSame(clear, 2 - bit), bit2);
          const V16 q = hn::BitCast(d16, hn::Sub(low, minus4));
          const int sub = 8 * h + 2 * j;
          MulAcc(hn::Mul(q, ScalesAt(o, scale[sub], scale[sub + 1])), xv + 128 * h + 32 * j + o, s[j]);
        }
      }
      for (int j = 0; j < 4; ++j) sb_acc[j] = hn::MulAdd(BlockToFloat(s[j]), hn::Set(df, xs[4 * h + j]), sb_acc[j]);
    }
    acc = hn::MulAdd(hn::Add(hn::Add(sb_acc[0], sb_acc[1]), hn::Add(sb_acc[2], sb_acc[3])), hn::Set(df, d), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

// Q2_K: x = d · scale · q - dmin · min. The mins meet only the sums of the activations
// per 16 columns: Σ min · x = Σ_sub min_sub · d_x · sums16[sub].
HWY_INLINE float DotQ2_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  using namespace q8_k16;
  const D16 d16;
  const DU16 du16;
  const DF df;
  const VU16 low2 = hn::Set(du16, 3);
  VF acc = hn::Zero(df);
  float mins = 0.0f;
  const std::int64_t n_blocks = cols / kQkK;
  for (std::int64_t sb = 0; sb < n_blocks; ++sb) {
    const std::uint8_t* b = row + sb * static_cast<std::int64_t>(sizeof(BlockQ2_K));
    const std::uint8_t* packed = b + offsetof(BlockQ2_K, scales);
    const std::uint8_t* qs = b + offsetof(BlockQ2_K, qs);
    const float d = LoadHalf(b + offsetof(BlockQ2_K, d));
    const float dmin = LoadHalf(b + offsetof(BlockQ2_K, dmin));
    const std::int16_t* xv = x.values + sb * kQkK;
    const float* xs = x.scales + sb * (kQkK / kQ8ActivationBlock);
    VF sb_acc[4] = {hn::Zero(df), hn::Zero(df), hn::Zero(df), hn::Zero(df)};
    const std::int32_t* sums = x.sums16 + sb * (kQkK / 16);
    float block_mins = 0.0f;
    for (int blk = 0; blk < 8; ++blk) {
      // |min · sum16| ≤ 15 · 16 · 127: the pair fits int32 exactly.
      const std::int32_t m = (packed[2 * blk] >> 4) * sums[2 * blk] + (packed[2 * blk + 1] >> 4) * sums[2 * blk + 1];
      block_mins += xs[blk] * static_cast<float>(m);
    }
    mins += dmin * block_mins;
    for (int h = 0; h < 2; ++h) {
      // Element 128h + 32j + l: q at qs[32h + l] bits 2j.
      BlockSum s[4] = {ZeroSum(), ZeroSum(), ZeroSum(), ZeroSum()};
      for (std::size_t o = 0; o < 32; o += kLanes) {
        const VU16 qv = LoadBytes(qs + 32 * h + o);
        for (int j = 0; j < 4; ++j) {
          const V16 q = hn::BitCast(d16, hn::And(hn::ShiftRightSame(qv, 2 * j), low2));
          const int sub = 8 * h + 2 * j;
          const auto lo = static_cast<std::int16_t>(packed[sub] & 0x0f);
          const auto hi = static_cast<std::int16_t>(packed[sub + 1] & 0x0f);
          MulAcc(hn::Mul(q, ScalesAt(o, lo, hi)), xv + 128 * h + 32 * j + o, s[j]);
        }
      }
      for (int j = 0; j < 4; ++j) sb_acc[j] = hn::MulAdd(BlockToFloat(s[j]), hn::Set(df, xs[4 * h + j]), sb_acc[j]);
    }
    acc = hn::MulAdd(hn::Add(hn::Add(sb_acc[0], sb_acc[1]), hn::Add(sb_acc[2], sb_acc[3])), hn::Set(df, d), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc)) - mins;
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
