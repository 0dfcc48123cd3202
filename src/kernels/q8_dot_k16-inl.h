// Dot products of one Q2_K / Q3_K / Q6_K row with a token's Q8 activations, per Highway
// target. These K-quants have 16 sub-blocks of 16 per super-block of 256, each with its
// own integer scale. The scale is multiplied into the int16 weight codes (|code · scale|
// ≤ 4096 for Q6_K, 128 for Q3_K, 45 for Q2_K), so one int16 multiply-add per vector gives
// int32 sums that already carry the sub-block scales; the float scales (weight d times
// the activation scale) are applied once per super-block when the activations have one
// scale per 256 columns (Q8_K), else once per 32 columns. DotX4 takes 4 tokens at once
// (prompts): each weight vector is decoded once and multiplied with all 4.
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
#include "kernels/decode_prefetch.h"
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

// Keeps a sum in one register through a chain of MulAcc: otherwise GCC re-associates the
// 4 tokens' chains into trees of products that outgrow AVX2's 16 registers and spill.
HWY_INLINE void KeepChain(BlockSum& s) {
#if HWY_ARCH_X86 && (defined(__GNUC__) || defined(__clang__)) && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128
  asm("" : "+v"(s.sum0.raw));
#else
  (void)s;
#endif
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

// One super-block of each type, its scales decoded once: Codes(h, o, w) gives in w[k] the
// weight codes times their sub-block scales (int16) of the kLanes columns at
// 128h + 32k + o, k = 0..3 (the four share their packed bytes).

// Q6_K: x = d · scales[s] · (q6 - 32), q6 = 4 low bits from ql | 2 high bits from qh.
// Element 128h + 32k + l: k = 0, 2 are the low / high nibbles of ql[64h + l], k = 1, 3
// those of ql[64h + 32 + l]; qh[32h + l] bits 2k are the top bits of all four.
struct Q6Block {
  static constexpr std::size_t kBytes = sizeof(BlockQ6_K);
  static constexpr bool kHasMins = false;
  const std::uint8_t* ql;
  const std::uint8_t* qh;
  float d;
  std::int16_t scale[16];

  explicit Q6Block(const std::uint8_t* b)
      : ql(b + offsetof(BlockQ6_K, ql)), qh(b + offsetof(BlockQ6_K, qh)), d(LoadHalf(b + offsetof(BlockQ6_K, d))) {
    const auto* packed = reinterpret_cast<const std::int8_t*>(b + offsetof(BlockQ6_K, scales));
    const hn::CappedTag<std::int16_t, 16> d;
    for (std::size_t i = 0; i < 16; i += hn::Lanes(d)) {
      hn::StoreU(hn::PromoteTo(d, hn::LoadU(hn::Rebind<std::int8_t, decltype(d)>(), packed + i)), d, scale + i);
    }
  }

  HWY_INLINE void Codes(int h, std::size_t o, V16* w) const {
    const D16 d16;
    const DU16 du16;
    const VU16 low4 = hn::Set(du16, 0x0f), high2 = hn::Set(du16, 0x30);
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
      w[k] = hn::Mul(hn::Sub(hn::BitCast(d16, q[k]), hn::Set(d16, 32)), ScalesAt(o, scale[sub], scale[sub + 1]));
    }
  }
};

// Q3_K: x = d · (scale - 32) · (q3 - 4); q3's low 2 bits from qs, its bit 2 from hmask.
// Element 128h + 32k + l: low bits at qs[32h + l] bits 2k, bit 2 at hmask[l] bit 4h + k;
// a clear hmask bit means q3 - 4 = low - 4.
struct Q3Block {
  static constexpr std::size_t kBytes = sizeof(BlockQ3_K);
  static constexpr bool kHasMins = false;
  const std::uint8_t* hmask;
  const std::uint8_t* qs;
  float d;
  std::int16_t scale[16];

  explicit Q3Block(const std::uint8_t* b)
      : hmask(b + offsetof(BlockQ3_K, hmask)), qs(b + offsetof(BlockQ3_K, qs)), d(LoadHalf(b + offsetof(BlockQ3_K, d))) {
    std::uint64_t low, high;
    unpack_q3_k_scales(b + offsetof(BlockQ3_K, scales), &low, &high);
    std::uint8_t stored[16];
    std::memcpy(stored, &low, sizeof(low));
    std::memcpy(stored + 8, &high, sizeof(high));
    for (int s = 0; s < 16; ++s) scale[s] = static_cast<std::int16_t>(stored[s] - 32);
  }

  HWY_INLINE void Codes(int h, std::size_t o, V16* w) const {
    const D16 d16;
    const DU16 du16;
    const VU16 qv = LoadBytes(qs + 32 * h + o);
    // The hmask bits, inverted, moved up by 2 (16 bits keep them): bit 4h + k + 2 then
    // worth 4 after the shift below.
    const VU16 clear = hn::ShiftLeft<2>(hn::Not(LoadBytes(hmask + o)));
    for (int k = 0; k < 4; ++k) {
      const VU16 low = hn::And(hn::ShiftRightSame(qv, 2 * k), hn::Set(du16, 3));
      const VU16 minus4 = hn::And(hn::ShiftRightSame(clear, 4 * h + k), hn::Set(du16, 4));
      const int sub = 8 * h + 2 * k;
      w[k] = hn::Mul(hn::BitCast(d16, hn::Sub(low, minus4)), ScalesAt(o, scale[sub], scale[sub + 1]));
    }
  }
};

// Q2_K: x = d · scale · q - dmin · min. The mins meet only the sums of the activations
// per 16 columns: Σ min · x = Σ_sub min_sub · d_x · sums16[sub].
// Element 128h + 32k + l: q at qs[32h + l] bits 2k.
struct Q2Block {
  static constexpr std::size_t kBytes = sizeof(BlockQ2_K);
  static constexpr bool kHasMins = true;
  const std::uint8_t* packed;
  const std::uint8_t* qs;
  float d, dmin;
  std::int16_t scale[16];

  explicit Q2Block(const std::uint8_t* b)
      : packed(b + offsetof(BlockQ2_K, scales)),
        qs(b + offsetof(BlockQ2_K, qs)),
        d(LoadHalf(b + offsetof(BlockQ2_K, d))),
        dmin(LoadHalf(b + offsetof(BlockQ2_K, dmin))) {
    const hn::CappedTag<std::int16_t, 16> d;
    for (std::size_t i = 0; i < 16; i += hn::Lanes(d)) {
      const auto bytes = hn::PromoteTo(d, hn::LoadU(hn::Rebind<std::uint8_t, decltype(d)>(), packed + i));
      hn::StoreU(hn::And(bytes, hn::Set(d, 0x0f)), d, scale + i);
    }
  }

  HWY_INLINE void Codes(int h, std::size_t o, V16* w) const {
    const D16 d16;
    const DU16 du16;
    const VU16 qv = LoadBytes(qs + 32 * h + o);
    for (int k = 0; k < 4; ++k) {
      const V16 q = hn::BitCast(d16, hn::And(hn::ShiftRightSame(qv, 2 * k), hn::Set(du16, 3)));
      const int sub = 8 * h + 2 * k;
      w[k] = hn::Mul(q, ScalesAt(o, scale[sub], scale[sub + 1]));
    }
  }

  // Lanes of Σ min_sub · sums16[sub] over the 16 sub-blocks (their total is the super-
  // block's min dot), in float: each product ≤ 15 · 16 · 128 and at most 16 / Lanes of them
  // per lane, far inside float's exact integers.
  HWY_INLINE VF MinDot(const std::int32_t* sums16) const {
    const D32 d32;
    const hn::Rebind<std::uint8_t, D32> du8;
    auto total = hn::Zero(d32);
    for (std::size_t i = 0; i < 16; i += hn::Lanes(d32)) {
      const V32 m = hn::BitCast(d32, hn::ShiftRight<4>(hn::PromoteTo(hn::RebindToUnsigned<D32>(), hn::LoadU(du8, packed + i))));
      total = hn::Add(total, hn::Mul(m, hn::LoadU(d32, sums16 + i)));
    }
    return hn::ConvertTo(DF(), total);
  }

  // dmin · Σ min · x̂ of this super-block (sb) for one token, activation scales per 32 columns.
  float MinTerm(const Q8Row& x, std::int64_t sb) const {
    const std::int32_t* sums = x.sums16 + sb * (kQkK / 16);
    const float* xs = x.scales + sb * (kQkK / kQ8ActivationBlock);
    float block_mins = 0.0f;
    for (int blk = 0; blk < 8; ++blk) {
      // |min · sum16| ≤ 15 · 16 · 127: the pair fits int32 exactly.
      const std::int32_t m = (packed[2 * blk] >> 4) * sums[2 * blk] + (packed[2 * blk + 1] >> 4) * sums[2 * blk + 1];
      block_mins += xs[blk] * static_cast<float>(m);
    }
    return dmin * block_mins;
  }
};

// True when the 8 activation scales of a super-block are one value, as Q8_K activations
// (the ones llama.cpp pairs with K-quants) always are: the int32 sums of the whole
// super-block then take that scale once. |Σ code · scale · x| over 256 columns stays
// below 4096 · 128 · 256 = 2^27 (Q6_K's largest), so int32 holds it.
HWY_INLINE bool UniformScales(const float* xs) {
  const hn::CappedTag<float, 8> d8;
  for (std::size_t i = 0; i < 8; i += hn::Lanes(d8)) {
    if (!hn::AllTrue(d8, hn::Eq(hn::LoadU(d8, xs + i), hn::Set(d8, xs[0])))) return false;
  }
  return true;
}

// out[t] = row · x[t] for N tokens (1 or 4). Each code vector is decoded once and
// multiplied with the N tokens, so the loops keep only N int32 sums and N float sums
// live, few enough for AVX2's 16 registers.
template <int N, class Block>
HWY_INLINE void DotK16(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  const DF df;
  VF acc[N];
  float mins[N];
  for (int t = 0; t < N; ++t) {
    acc[t] = hn::Zero(df);
    mins[t] = 0.0f;
  }
  const std::int64_t n_blocks = cols / kQkK;
  for (std::int64_t sb = 0; sb < n_blocks; ++sb) {
    if constexpr (N == 1) prefetch_for_decode<Block::kBytes>(row + sb * static_cast<std::int64_t>(Block::kBytes));
    const Block blk(row + sb * static_cast<std::int64_t>(Block::kBytes));
    const std::int64_t scale0 = sb * (kQkK / kQ8ActivationBlock);
    bool uniform = true;
    for (int t = 0; t < N; ++t) uniform = uniform && UniformScales(x[t].scales + scale0);
    const std::int16_t* xv[N];
    for (int t = 0; t < N; ++t) xv[t] = x[t].values + sb * kQkK;
    if (uniform) {
      BlockSum s[N];
      for (int t = 0; t < N; ++t) s[t] = ZeroSum();
      for (int h = 0; h < 2; ++h) {
        // Not unrolled (nor the chains re-associated, KeepChain): GCC would otherwise gather
        // the products of several vectors into trees that spill on AVX2.
#pragma GCC unroll 1
        for (std::size_t o = 0; o < 32; o += kLanes) {
          V16 w[4];
          blk.Codes(h, o, w);
          for (int k = 0; k < 4; ++k) {
            for (int t = 0; t < N; ++t) {
              MulAcc(w[k], xv[t] + 128 * h + 32 * k + o, s[t]);
              KeepChain(s[t]);
            }
          }
        }
      }
      for (int t = 0; t < N; ++t) {
        const float xs = x[t].scales[scale0];
        acc[t] = hn::MulAdd(BlockToFloat(s[t]), hn::Set(df, blk.d * xs), acc[t]);
        if constexpr (Block::kHasMins) {
          acc[t] = hn::NegMulAdd(blk.MinDot(x[t].sums16 + 16 * sb), hn::Set(df, blk.dmin * xs), acc[t]);
        }
      }
      continue;
    }
    // Scales per 32 columns (e.g. Q8_0 activations): each block's sums take their own.
    if constexpr (Block::kHasMins) {
      for (int t = 0; t < N; ++t) mins[t] += blk.MinTerm(x[t], sb);
    }
    VF sb_acc[N];
    for (int t = 0; t < N; ++t) sb_acc[t] = hn::Zero(df);
    for (int h = 0; h < 2; ++h) {
      BlockSum s[4][N];
      for (int k = 0; k < 4; ++k) {
        for (int t = 0; t < N; ++t) s[k][t] = ZeroSum();
      }
      for (std::size_t o = 0; o < 32; o += kLanes) {
        V16 w[4];
        blk.Codes(h, o, w);
        for (int k = 0; k < 4; ++k) {
          for (int t = 0; t < N; ++t) MulAcc(w[k], xv[t] + 128 * h + 32 * k + o, s[k][t]);
        }
      }
      for (int k = 0; k < 4; ++k) {
        for (int t = 0; t < N; ++t) {
          sb_acc[t] = hn::MulAdd(BlockToFloat(s[k][t]), hn::Set(df, x[t].scales[scale0 + 4 * h + k]), sb_acc[t]);
        }
      }
    }
    for (int t = 0; t < N; ++t) acc[t] = hn::MulAdd(sb_acc[t], hn::Set(df, blk.d), acc[t]);
  }
  for (int t = 0; t < N; ++t) out[t] = hn::GetLane(hn::SumOfLanes(df, acc[t])) - mins[t];
}

template <class Block>
HWY_INLINE float Dot1(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  float out;
  DotK16<1, Block>(row, &x, cols, &out);
  return out;
}

}  // namespace q8_k16

HWY_NOINLINE float DotQ6_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return q8_k16::Dot1<q8_k16::Q6Block>(row, x, cols);
}
HWY_NOINLINE void DotQ6_Kx4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  q8_k16::DotK16<4, q8_k16::Q6Block>(row, x, cols, out);
}
HWY_NOINLINE float DotQ3_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return q8_k16::Dot1<q8_k16::Q3Block>(row, x, cols);
}
HWY_NOINLINE void DotQ3_Kx4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  q8_k16::DotK16<4, q8_k16::Q3Block>(row, x, cols, out);
}
HWY_NOINLINE float DotQ2_K(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return q8_k16::Dot1<q8_k16::Q2Block>(row, x, cols);
}
HWY_NOINLINE void DotQ2_Kx4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  q8_k16::DotK16<4, q8_k16::Q2Block>(row, x, cols, out);
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
