// Dot products of one Q4_K / Q5_K weight row with one token's Q8 activations, or with 4
// tokens' at once (prompts: each weight block decoded once for the 4). A
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
#include "kernels/decode_prefetch.h"
#include "kernels/q8_activations.h"
#include "quant/block_formats.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace k32 {

constexpr std::int64_t kSuperBlock = 256;
constexpr std::size_t kSubBlocks = 8;

// v shifted left by `bits` (right when negative); `bits` is a constant once unrolled.
template <class V>
HWY_INLINE V ShiftLeftBy(V v, int bits) {
  return bits >= 0 ? hn::ShiftLeftSame(v, bits) : hn::ShiftRightSame(v, -bits);
}

// The 6-bit scales and mins of the 8 sub-blocks: out[0..7] = scales, out[8..15] = mins.
HWY_INLINE void UnpackScalesAndMins(const std::uint8_t* packed, std::uint8_t* out) {
  std::uint64_t scales, mins;
  unpack_k4_scales_and_mins(packed, &scales, &mins);
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
      prefetch_for_decode<kBlockBytes>(row + static_cast<std::size_t>(sb) * kBlockBytes);
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

// Dot for 4 tokens, made for Q8_K activations (one scale dx per token and super-block,
// repeated for its 8 sub-blocks): then a sub-block's factor d·sc_j·dx splits into sc_j,
// multiplied into the weight codes once for the 4 tokens (q·sc ≤ 31·63 fits int16), and
// d·dx, applied once per super-block and token, so each token's int32 sum spans a whole
// super-block (|Σ| ≤ 256·1953·128 < 2^31). Per chunk of super-blocks, three passes keep
// the integer loop down to the codes and the 4 sums (AVX2 has 16 registers): factors and
// mins, integer sums (stored as floats), then the sums times d·dx. Returns false (out
// untouched) when some token's scales vary inside a super-block (Q8_0 activations).
template <bool kFiveBits>
HWY_INLINE bool Dot4UniformScales(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  using D16 = hn::CappedTag<std::int16_t, 32>;
  const D16 d16;
  const hn::Rebind<std::uint8_t, D16> du8;
  const hn::RebindToUnsigned<D16> du16;
  const hn::RepartitionToWide<D16> d32;
  const hn::Rebind<float, decltype(d32)> df;
  const hn::CappedTag<float, kSubBlocks> d8;
  const hn::Rebind<std::int32_t, decltype(d8)> di8;
  const hn::Rebind<std::uint8_t, decltype(d8)> du8_8;
  using V16 = hn::Vec<D16>;
  using V32 = hn::Vec<decltype(d32)>;
  using V8 = hn::Vec<decltype(d8)>;
  constexpr std::size_t kTokens = 4;
  constexpr std::size_t kMaxF = 16;  // lanes of df at most (32 int16 widen to 16)
  const std::size_t n16 = hn::Lanes(d16), nf = hn::Lanes(df);
  constexpr std::size_t kBlockBytes = kFiveBits ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  constexpr std::size_t kQsOffset = kFiveBits ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs);

  // Accumulators live in memory: they are touched once per super-block, and registers
  // are for the integer loop.
  alignas(64) float acc[kTokens][kMaxF];
  alignas(64) float min_acc[kTokens][kSubBlocks];  // lanes of d8, summed at the end
  for (std::size_t t = 0; t < kTokens; ++t) {
    hn::Store(hn::Zero(df), df, acc[t]);
    hn::Store(hn::Zero(d8), d8, min_acc[t]);
  }
  // Per super-block of a chunk: sc_j (int16), d·dx per token, each token's sums as floats.
  alignas(64) std::int16_t sub_scale[kChunkSuperBlocks][kSubBlocks];
  alignas(64) float d_dx[kChunkSuperBlocks][kTokens];
  alignas(64) float sums[kChunkSuperBlocks][kTokens][kMaxF];

  const std::int64_t n_super = cols / kSuperBlock;
  for (std::int64_t sb0 = 0; sb0 < n_super; sb0 += kChunkSuperBlocks) {
    const std::int64_t chunk = std::min(kChunkSuperBlocks, n_super - sb0);
    bool uniform = true;
    for (std::int64_t k = 0; k < chunk; ++k) {
      const std::int64_t sb = sb0 + k;
      const std::int64_t sub0 = sb * static_cast<std::int64_t>(kSubBlocks);
      const std::uint8_t* block = row + static_cast<std::size_t>(sb) * kBlockBytes;
      float d, dmin;
      LoadScaleAndMinScale(block, &d, &dmin);
      alignas(16) std::uint8_t scales_and_mins[2 * kSubBlocks];
      UnpackScalesAndMins(block + 4, scales_and_mins);
      for (std::size_t j = 0; j < kSubBlocks; ++j) sub_scale[k][j] = scales_and_mins[j];
      for (std::size_t t = 0; t < kTokens; ++t) d_dx[k][t] = d * x[t].scales[sub0];
      // The mins, dmin·m_j·dx_j·Σ q_x as in SuperBlockFactors, and the check of dx.
      const V8 vdmin = hn::Set(d8, dmin);
      for (std::size_t j = 0; j < kSubBlocks; j += hn::Lanes(d8)) {
        const V8 mn =
            hn::Mul(hn::ConvertTo(d8, hn::PromoteTo(di8, hn::LoadU(du8_8, scales_and_mins + kSubBlocks + j))), vdmin);
        for (std::size_t t = 0; t < kTokens; ++t) {
          const V8 vdx = hn::LoadU(d8, x[t].scales + sub0 + static_cast<std::int64_t>(j));
          uniform &= hn::AllTrue(d8, hn::Eq(vdx, hn::Set(d8, x[t].scales[sub0])));
          hn::Vec<decltype(di8)> even, odd;
          hn::LoadInterleaved2(di8, x[t].sums16 + 2 * (sub0 + static_cast<std::int64_t>(j)), even, odd);
          const V8 x_sum = hn::ConvertTo(d8, hn::Add(even, odd));
          hn::Store(hn::MulAdd(hn::Mul(mn, vdx), x_sum, hn::Load(d8, min_acc[t])), d8, min_acc[t]);
        }
      }
    }
    if (!uniform) return false;
    for (std::int64_t k = 0; k < chunk; ++k) {
      const std::int64_t sb = sb0 + k;
      const std::uint8_t* block = row + static_cast<std::size_t>(sb) * kBlockBytes;
      const std::uint8_t* qs = block + kQsOffset;
      const std::int64_t x0 = sb * kSuperBlock;
      V32 sum[kTokens], sum_odd[kTokens];  // sum_odd: targets without a pairwise madd
      for (std::size_t t = 0; t < kTokens; ++t) sum[t] = sum_odd[t] = hn::Zero(d32);
      for (std::size_t c = 0; c < kSubBlocks / 2; ++c) {
        const V16 sc_lo = hn::Set(d16, sub_scale[k][2 * c]), sc_hi = hn::Set(d16, sub_scale[k][2 * c + 1]);
        for (std::size_t i = 0; i < 32; i += n16) {
          const V16 w = hn::BitCast(d16, hn::PromoteTo(du16, hn::LoadU(du8, qs + 32 * c + i)));
          V16 lo = hn::And(w, hn::Set(d16, 0x0f));
          V16 hi = hn::ShiftRight<4>(w);
          if constexpr (kFiveBits) {
            const V16 bit4 = hn::Set(d16, 0x10);
            const V16 qh = hn::BitCast(d16, hn::PromoteTo(du16, hn::LoadU(du8, block + 16 + i)));
            lo = hn::Or(lo, hn::And(ShiftLeftBy(qh, 4 - 2 * static_cast<int>(c)), bit4));
            hi = hn::Or(hi, hn::And(ShiftLeftBy(qh, 3 - 2 * static_cast<int>(c)), bit4));
          }
          lo = hn::Mul(lo, sc_lo);
          hi = hn::Mul(hi, sc_hi);
          const std::int64_t at = x0 + 64 * static_cast<std::int64_t>(c) + static_cast<std::int64_t>(i);
          for (std::size_t t = 0; t < kTokens; ++t) {
            const std::int16_t* x_lo = x[t].values + at;
            sum[t] = hn::ReorderWidenMulAccumulate(d32, lo, hn::LoadU(d16, x_lo), sum[t], sum_odd[t]);
            sum[t] = hn::ReorderWidenMulAccumulate(d32, hi, hn::LoadU(d16, x_lo + 32), sum[t], sum_odd[t]);
          }
        }
      }
      for (std::size_t t = 0; t < kTokens; ++t) {
        hn::Store(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(sum[t], sum_odd[t])), df, sums[k][t]);
      }
    }
    for (std::int64_t k = 0; k < chunk; ++k) {
      for (std::size_t t = 0; t < kTokens; ++t) {
        for (std::size_t l = 0; l < nf; l += nf) {
          hn::Store(hn::MulAdd(hn::Load(df, sums[k][t] + l), hn::Set(df, d_dx[k][t]), hn::Load(df, acc[t] + l)), df,
                    acc[t] + l);
        }
      }
    }
  }
  for (std::size_t t = 0; t < kTokens; ++t) {
    out[t] = hn::GetLane(hn::SumOfLanes(df, hn::Load(df, acc[t]))) -
             hn::GetLane(hn::SumOfLanes(d8, hn::Load(d8, min_acc[t])));
  }
  return true;
}

template <bool kFiveBits>
HWY_INLINE void Dot4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  if (Dot4UniformScales<kFiveBits>(row, x, cols, out)) return;
  for (std::size_t t = 0; t < 4; ++t) out[t] = Dot<kFiveBits>(row, x[t], cols);
}

}  // namespace k32

HWY_NOINLINE float DotQ4_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return k32::Dot<false>(row, x, cols);
}

HWY_NOINLINE float DotQ5_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return k32::Dot<true>(row, x, cols);
}

HWY_NOINLINE void DotQ4_Kx4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  k32::Dot4<false>(row, x, cols, out);
}

HWY_NOINLINE void DotQ5_Kx4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  k32::Dot4<true>(row, x, cols, out);
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
