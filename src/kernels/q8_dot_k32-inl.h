// Dot products of one Q4_K / Q5_K weight row with one token's Q8 activations. A
// super-block holds 8 sub-blocks of 32 weights, x = d·sc·q − dmin·m, and each sub-block is
// exactly one activation block (scale dx), so a sub-block contributes
//   d·sc·dx · Σ q·q_x  −  dmin·m·dx · Σ q_x,
// the first from 16-bit multiply-adds of the weight codes with the activations, the
// second from the activations' sums of 16. Included once per Highway target.
#if defined(PIQUANT_KERNELS_Q8_DOT_K32_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PIQUANT_KERNELS_Q8_DOT_K32_INL_H_
#undef PIQUANT_KERNELS_Q8_DOT_K32_INL_H_
#else
#define PIQUANT_KERNELS_Q8_DOT_K32_INL_H_
#endif

#include <algorithm>
#include <bit>
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
namespace hn = hwy::HWY_NAMESPACE;

namespace k32 {

static_assert(std::endian::native == std::endian::little, "the packed scales are read as little-endian words");

constexpr std::int64_t kSuperBlock = 256;
constexpr std::size_t kSubBlocks = 8;

// v shifted left by `bits` (right when negative); `bits` is a constant once unrolled.
template <class V>
HWY_INLINE V ShiftLeftBy(V v, int bits) {
  return bits >= 0 ? hn::ShiftLeftSame(v, bits) : hn::ShiftRightSame(v, -bits);
}

// The 6-bit scales and mins of the 8 sub-blocks, unpacked from their 12 bytes with word
// arithmetic (the per-byte rules of unpack_k4_scale_min, four bytes at a time):
// out[0..7] = scales, out[8..15] = mins.
HWY_INLINE void UnpackScalesAndMins(const std::uint8_t* packed, std::uint8_t* out) {
  std::uint32_t w[3];
  std::memcpy(w, packed, sizeof(w));
  const std::uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, bits45 = 0x30303030u;
  // Sub-blocks 4-7 take a low nibble from bytes 8-11 and their top 2 bits from bytes 0-7.
  const std::uint64_t scales = (w[0] & low6) | std::uint64_t{(w[2] & low4) | ((w[0] >> 2) & bits45)} << 32;
  const std::uint64_t mins = (w[1] & low6) | std::uint64_t{((w[2] >> 4) & low4) | ((w[1] >> 2) & bits45)} << 32;
  std::memcpy(out, &scales, sizeof(scales));
  std::memcpy(out + 8, &mins, sizeof(mins));
}

// d and dmin of a super-block as floats: the CPU's conversion where it has one.
HWY_INLINE void LoadScaleAndMinScale(const std::uint8_t* block, float* d, float* dmin) {
#if (HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2) || (HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON)
  const hn::Full64<float> d2;
  const hn::Rebind<hwy::float16_t, decltype(d2)> dh;
  alignas(8) float both[2];
  hn::Store(hn::PromoteTo(d2, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(block))), d2, both);
  *d = both[0];
  *dmin = both[1];
#else
  std::uint16_t bits[2];
  std::memcpy(bits, block, sizeof(bits));
  *d = f16_to_f32(bits[0]);
  *dmin = f16_to_f32(bits[1]);
#endif
}

// Per super-block float factors: scale[j] = d·sc_j·dx_j multiplies sub-block j's integer
// sum; the returned vector accumulates dmin·m_j·dx_j·Σ q_x (the mins, subtracted at the
// end). dx: the 8 activation scales, sums16: the 16 sums of 16 of the super-block.
template <class D8>
HWY_INLINE hn::Vec<D8> SuperBlockFactors(D8 d8, const std::uint8_t* block, const float* dx,
                                         const std::int32_t* sums16, float* scale, hn::Vec<D8> min_acc) {
  const hn::Rebind<std::int32_t, D8> di;
  const hn::Rebind<std::uint8_t, D8> du8;
  float d, dmin;
  LoadScaleAndMinScale(block, &d, &dmin);
  alignas(16) std::uint8_t scales_and_mins[2 * kSubBlocks];
  UnpackScalesAndMins(block + 4, scales_and_mins);
  const auto vd = hn::Set(d8, d), vdmin = hn::Set(d8, dmin);
  for (std::size_t k = 0; k < kSubBlocks; k += hn::Lanes(d8)) {
    const auto vdx = hn::LoadU(d8, dx + k);
    const auto sc = hn::ConvertTo(d8, hn::PromoteTo(di, hn::LoadU(du8, scales_and_mins + k)));
    const auto mn = hn::ConvertTo(d8, hn::PromoteTo(di, hn::LoadU(du8, scales_and_mins + kSubBlocks + k)));
    hn::StoreU(hn::Mul(hn::Mul(sc, vd), vdx), d8, scale + k);
    hn::Vec<decltype(di)> even, odd;
    hn::LoadInterleaved2(di, sums16 + 2 * k, even, odd);
    const auto x_sum = hn::ConvertTo(d8, hn::Add(even, odd));  // Σ q_x of sub-block k + lane
    min_acc = hn::MulAdd(hn::Mul(hn::Mul(mn, vdmin), vdx), x_sum, min_acc);
  }
  return min_acc;
}

// Super-blocks whose factors are computed ahead of their integer sums: a separate pass
// keeps the sums' loop free of scalar work, and its multiply-adds take the factors
// straight from memory as broadcasts.
constexpr std::int64_t kChunkSuperBlocks = 16;

// Q4_K (kFiveBits false) or Q5_K (true). cols is a multiple of 256 (the row's
// super-blocks); every int32 sum is over at most 32 products |q·q_x| ≤ 31·127.
template <bool kFiveBits>
HWY_INLINE float Dot(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  using D16 = hn::CappedTag<std::int16_t, 32>;  // one activation block: 1-4 vectors
  const D16 d16;
  const hn::Rebind<std::uint8_t, D16> du8;
  const hn::RebindToUnsigned<D16> du16;
  const hn::RepartitionToWide<D16> d32;
  const hn::Rebind<float, decltype(d32)> df;
  const hn::CappedTag<float, kSubBlocks> d8;
  using V16 = hn::Vec<D16>;
  using V32 = hn::Vec<decltype(d32)>;
  using VF = hn::Vec<decltype(df)>;
  const std::size_t n16 = hn::Lanes(d16);
  constexpr std::size_t kBlockBytes = kFiveBits ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  constexpr std::size_t kQsOffset = kFiveBits ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs);

  const V16 low4 = hn::Set(d16, 0x0f);
  const V16 bit4 = hn::Set(d16, 0x10);
  // Two float accumulators per chunk of qs (even and odd sub-blocks), so consecutive
  // multiply-adds do not wait on each other.
  VF acc_even = hn::Zero(df), acc_odd = hn::Zero(df), acc_even2 = hn::Zero(df), acc_odd2 = hn::Zero(df);
  auto min_acc = hn::Zero(d8);
  alignas(64) float scale[kChunkSuperBlocks * kSubBlocks];

  const std::int64_t n_super = cols / kSuperBlock;
  for (std::int64_t sb0 = 0; sb0 < n_super; sb0 += kChunkSuperBlocks) {
    const std::int64_t chunk = std::min(kChunkSuperBlocks, n_super - sb0);
    for (std::int64_t k = 0; k < chunk; ++k) {
      const std::int64_t sb = sb0 + k;
      const std::int64_t sub0 = sb * static_cast<std::int64_t>(kSubBlocks);
      min_acc = SuperBlockFactors(d8, row + static_cast<std::size_t>(sb) * kBlockBytes, x.scales + sub0,
                                  x.sums16 + 2 * sub0, scale + k * kSubBlocks, min_acc);
    }
    for (std::int64_t k = 0; k < chunk; ++k) {
      const std::int64_t sb = sb0 + k;
      const std::uint8_t* block = row + static_cast<std::size_t>(sb) * kBlockBytes;
      const std::uint8_t* qs = block + kQsOffset;
      const std::int16_t* xv = x.values + sb * kSuperBlock;
      const float* sb_scale = scale + k * kSubBlocks;
      for (std::size_t c = 0; c < kSubBlocks / 2; ++c) {
        // 32 bytes of qs hold sub-block 2c in their low nibbles, 2c + 1 in their high ones.
        V32 sum_lo = hn::Zero(d32), sum_hi = hn::Zero(d32);
        V32 sum_lo_odd = hn::Zero(d32), sum_hi_odd = hn::Zero(d32);  // used by targets without a pairwise madd
        for (std::size_t i = 0; i < 32; i += n16) {
          const V16 w = hn::BitCast(d16, hn::PromoteTo(du16, hn::LoadU(du8, qs + 32 * c + i)));
          V16 lo = hn::And(w, low4);
          V16 hi = hn::ShiftRight<4>(w);
          if constexpr (kFiveBits) {
            // Bit j of qh[l] is the 5th bit of sub-block j.
            const V16 qh = hn::BitCast(d16, hn::PromoteTo(du16, hn::LoadU(du8, block + 16 + i)));
            lo = hn::Or(lo, hn::And(ShiftLeftBy(qh, 4 - 2 * static_cast<int>(c)), bit4));
            hi = hn::Or(hi, hn::And(ShiftLeftBy(qh, 3 - 2 * static_cast<int>(c)), bit4));
          }
          const std::int16_t* x_lo = xv + 64 * c + i;
          sum_lo = hn::ReorderWidenMulAccumulate(d32, lo, hn::LoadU(d16, x_lo), sum_lo, sum_lo_odd);
          sum_hi = hn::ReorderWidenMulAccumulate(d32, hi, hn::LoadU(d16, x_lo + 32), sum_hi, sum_hi_odd);
        }
        const VF s_lo = hn::ConvertTo(df, hn::RearrangeToOddPlusEven(sum_lo, sum_lo_odd));
        const VF s_hi = hn::ConvertTo(df, hn::RearrangeToOddPlusEven(sum_hi, sum_hi_odd));
        if (c % 2 == 0) {
          acc_even = hn::MulAdd(s_lo, hn::Set(df, sb_scale[2 * c]), acc_even);
          acc_odd = hn::MulAdd(s_hi, hn::Set(df, sb_scale[2 * c + 1]), acc_odd);
        } else {
          acc_even2 = hn::MulAdd(s_lo, hn::Set(df, sb_scale[2 * c]), acc_even2);
          acc_odd2 = hn::MulAdd(s_hi, hn::Set(df, sb_scale[2 * c + 1]), acc_odd2);
        }
      }
    }
  }
  const VF acc = hn::Add(hn::Add(acc_even, acc_odd), hn::Add(acc_even2, acc_odd2));
  return hn::GetLane(hn::SumOfLanes(df, acc)) - hn::GetLane(hn::SumOfLanes(d8, min_acc));
}

}  // namespace k32

HWY_NOINLINE float DotQ4_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return k32::Dot<false>(row, x, cols);
}

HWY_NOINLINE float DotQ5_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return k32::Dot<true>(row, x, cols);
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
