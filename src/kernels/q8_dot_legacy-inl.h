// Per-target dot products of one legacy-quantized weight row (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1: blocks of 32 with one f16 scale, Q4_1/Q5_1 also an f16 min) with one token's Q8
// activations (DotX), or with 4 tokens' at once (DotXx4, prompts: each block decoded once). A weight block covers exactly one activation block, so each block is an
// int16 × int16 → int32 multiply-add of its codes (offset already removed) against the
// activations, scaled once by d_w · d_x in float. Included once per Highway target.
#if defined(PIQUANT_KERNELS_Q8_DOT_LEGACY_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PIQUANT_KERNELS_Q8_DOT_LEGACY_INL_H_
#undef PIQUANT_KERNELS_Q8_DOT_LEGACY_INL_H_
#else
#define PIQUANT_KERNELS_Q8_DOT_LEGACY_INL_H_
#endif

#include <cstddef>
#include <cstdint>

#include "hwy/highway.h"
#include "kernels/decode_prefetch.h"
#include "kernels/element_io-inl.h"
#include "kernels/q8_activations.h"
#include "quant/block_formats.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {
namespace legacy_q8 {

// At most 32 int16 lanes: one block per vector on AVX-512, two on AVX2, four on SSE4/NEON.
using D16 = hn::CappedTag<std::int16_t, kQk>;
using V16 = hn::Vec<D16>;
using D32 = hn::Repartition<std::int32_t, D16>;
using DF32 = hn::Repartition<float, D16>;
using VF32 = hn::Vec<DF32>;
constexpr std::size_t kLanes16 = hn::MaxLanes(D16());

// The f16 at p (unaligned), through the CPU's converter where it has one.
HWY_INLINE float F16At(const std::uint8_t* p) {
  const hn::CappedTag<float, 1> d1;
  const hn::Rebind<hwy::float16_t, decltype(d1)> dh1;
  return hn::GetLane(PromoteF16(d1, hn::LoadU(dh1, reinterpret_cast<const hwy::float16_t*>(p))));
}

// Calls f(e0, codes) for each int16 vector of a block's 4-bit codes (0..15), where codes
// holds elements [e0, e0 + kLanes16). Byte j holds element j (low nibble) and j + 16 (high).
template <class F>
HWY_INLINE void ForEachNibbleVector(const std::uint8_t* qs, F&& f) {
  const D16 d16;
#if HWY_TARGET != HWY_SCALAR  // which has no Combine
  if constexpr (kLanes16 >= static_cast<std::size_t>(kQk)) {
    // The whole block in one vector: low nibbles below, high nibbles above.
    const hn::Half<D16> dh;
    const hn::Rebind<std::uint8_t, decltype(dh)> du8;
    const auto bytes = hn::PromoteTo(dh, hn::LoadU(du8, qs));
    f(std::size_t{0}, hn::Combine(d16, hn::ShiftRight<4>(bytes), hn::And(bytes, hn::Set(dh, 0x0f))));
  } else  // NOLINT: the branch below is the else of the constexpr if
#endif
  {
    const hn::Rebind<std::uint8_t, D16> du8;
    for (std::size_t j = 0; j < static_cast<std::size_t>(kQk / 2); j += kLanes16) {
      const V16 bytes = hn::PromoteTo(d16, hn::LoadU(du8, qs + j));
      f(j, hn::And(bytes, hn::Set(d16, 0x0f)));
      f(j + kQk / 2, hn::ShiftRight<4>(bytes));
    }
  }
}

// Mask of the lanes of elements [e0, e0 + kLanes16) whose 5th bit is set in the
// little-endian 32-bit qh (bit e = element e). e0 is a multiple of 8 (or kLanes16 is 1).
HWY_INLINE hn::Mask<D16> HighBits(const std::uint8_t* qh, std::size_t e0) {
  const D16 d16;
  if constexpr (kLanes16 >= 8) {
    return hn::LoadMaskBits(d16, qh + e0 / 8);
  } else {
    // Fewer than 8 lanes (HWY_SCALAR): test each element's bit directly.
    const hn::RebindToUnsigned<D16> du16;
    const auto bit = hn::Set(du16, static_cast<std::uint16_t>((qh[e0 / 8] >> (e0 % 8)) & 1u));
    return hn::RebindMask(d16, hn::Ne(bit, hn::Zero(du16)));
  }
}

// Each type: block size in bytes, where its f16 scale and min are, and
// ForEachCode(block, f) calling f(e0, codes) with the int16 codes of elements
// [e0, e0 + kLanes16) such that the decoded value is d · code (+ m).
struct Q8_0Codes {
  static constexpr std::size_t kBlockBytes = sizeof(BlockQ8_0);
  static constexpr bool kHasMin = false;
  template <class F>
  static HWY_INLINE void ForEachCode(const std::uint8_t* block, F&& f) {
    const D16 d16;
    const hn::Rebind<std::int8_t, D16> di8;
    const auto* qs = reinterpret_cast<const std::int8_t*>(block + offsetof(BlockQ8_0, qs));
    for (std::size_t e0 = 0; e0 < static_cast<std::size_t>(kQk); e0 += kLanes16) f(e0, hn::PromoteTo(d16, hn::LoadU(di8, qs + e0)));
  }
};

struct Q4_0Codes {
  static constexpr std::size_t kBlockBytes = sizeof(BlockQ4_0);
  static constexpr bool kHasMin = false;
  template <class F>
  static HWY_INLINE void ForEachCode(const std::uint8_t* block, F&& f) {
    const V16 eight = hn::Set(D16(), 8);
    ForEachNibbleVector(block + offsetof(BlockQ4_0, qs), [&](std::size_t e0, V16 q) { f(e0, hn::Sub(q, eight)); });
  }
};

struct Q4_1Codes {
  static constexpr std::size_t kBlockBytes = sizeof(BlockQ4_1);
  static constexpr bool kHasMin = true;
  static constexpr std::size_t kMinOffset = offsetof(BlockQ4_1, m);
  template <class F>
  static HWY_INLINE void ForEachCode(const std::uint8_t* block, F&& f) {
    ForEachNibbleVector(block + offsetof(BlockQ4_1, qs), f);
  }
};

struct Q5_0Codes {
  static constexpr std::size_t kBlockBytes = sizeof(BlockQ5_0);
  static constexpr bool kHasMin = false;
  template <class F>
  static HWY_INLINE void ForEachCode(const std::uint8_t* block, F&& f) {
    // q - 16 = nibble - 16 where the 5th bit is clear, the nibble itself where it is set.
    const V16 sixteen = hn::Set(D16(), 16);
    const std::uint8_t* qh = block + offsetof(BlockQ5_0, qh);
    ForEachNibbleVector(block + offsetof(BlockQ5_0, qs), [&](std::size_t e0, V16 q) {
      f(e0, hn::Sub(q, hn::IfThenZeroElse(HighBits(qh, e0), sixteen)));
    });
  }
};

struct Q5_1Codes {
  static constexpr std::size_t kBlockBytes = sizeof(BlockQ5_1);
  static constexpr bool kHasMin = true;
  static constexpr std::size_t kMinOffset = offsetof(BlockQ5_1, m);
  template <class F>
  static HWY_INLINE void ForEachCode(const std::uint8_t* block, F&& f) {
    const V16 sixteen = hn::Set(D16(), 16);
    const std::uint8_t* qh = block + offsetof(BlockQ5_1, qh);
    ForEachNibbleVector(block + offsetof(BlockQ5_1, qs), [&](std::size_t e0, V16 q) {
      f(e0, hn::Or(q, hn::IfThenElseZero(HighBits(qh, e0), sixteen)));
    });
  }
};

// acc + (Σ code · x) · d_w · d_x for block b; a min m adds m · d_x · Σ x to min_acc.
// The int32 sums cannot overflow: |code| ≤ 128 and |x| ≤ 127, 32 products per block.
template <class Codes>
HWY_INLINE VF32 AddBlock(const std::uint8_t* block, const Q8Row& x, std::int64_t b, VF32 acc, float& min_acc) {
  const D16 d16;
  const D32 d32;
  const DF32 df;
  const std::int16_t* xb = x.values + b * kQk;
  auto sum0 = hn::Zero(d32), sum1 = hn::Zero(d32);
  Codes::ForEachCode(block, [&](std::size_t e0, V16 codes) {
    sum0 = hn::ReorderWidenMulAccumulate(d32, codes, hn::LoadU(d16, xb + e0), sum0, sum1);
  });
  const float dx = x.scales[b];
  if constexpr (Codes::kHasMin) {
    // The block's Σ x̂ as llama.cpp's Q8_1 blocks store it (f16), for the same numbers.
    min_acc += F16At(block + Codes::kMinOffset) * x.block_sums[b];
  }
  const float scale = F16At(block) * dx;  // every legacy block starts with its f16 d
  return hn::MulAdd(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(sum0, sum1)), hn::Set(df, scale), acc);
}

// Σ over the row's cols / 32 blocks; two accumulator sets hide the FMA latency.
template <class Codes>
HWY_INLINE float DotLegacy(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  const DF32 df;
  const std::int64_t blocks = cols / kQk;
  VF32 acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  float min0 = 0.0f, min1 = 0.0f;
  std::int64_t b = 0;
  for (; b + 2 <= blocks; b += 2) {
    const std::uint8_t* block = row + static_cast<std::size_t>(b) * Codes::kBlockBytes;
    prefetch_for_decode<2 * Codes::kBlockBytes>(block);
    acc0 = AddBlock<Codes>(block, x, b, acc0, min0);
    acc1 = AddBlock<Codes>(block + Codes::kBlockBytes, x, b + 1, acc1, min1);
  }
  if (b < blocks) acc0 = AddBlock<Codes>(row + static_cast<std::size_t>(b) * Codes::kBlockBytes, x, b, acc0, min0);
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1))) + (min0 + min1);
}

// The 4-token form of AddBlock: the block's codes are decoded once and multiplied with
// each token's activations, acc[i] and min_acc[i] collecting token i. 4 int32 sums
// (sum1 stays zero on x86, where the multiply-add pairs lanes itself), 4 float
// accumulators and the codes fit AVX2's 16 registers. The float side (convert, scale,
// accumulate) is per token; each token's scale is broadcast straight from memory and
// d_w applied in the FMA, which keeps it to 3 vector operations per token.
template <class Codes>
HWY_INLINE void AddBlock4(const std::uint8_t* block, const Q8Row* x, std::int64_t b, VF32* acc, float* min_acc) {
  const D16 d16;
  const D32 d32;
  const DF32 df;
  const std::int64_t offset = b * kQk;
  auto sum0_0 = hn::Zero(d32), sum1_0 = hn::Zero(d32), sum0_1 = hn::Zero(d32), sum1_1 = hn::Zero(d32);
  auto sum0_2 = hn::Zero(d32), sum1_2 = hn::Zero(d32), sum0_3 = hn::Zero(d32), sum1_3 = hn::Zero(d32);
  Codes::ForEachCode(block, [&](std::size_t e0, V16 codes) {
    sum0_0 = hn::ReorderWidenMulAccumulate(d32, codes, hn::LoadU(d16, x[0].values + offset + e0), sum0_0, sum1_0);
    sum0_1 = hn::ReorderWidenMulAccumulate(d32, codes, hn::LoadU(d16, x[1].values + offset + e0), sum0_1, sum1_1);
    sum0_2 = hn::ReorderWidenMulAccumulate(d32, codes, hn::LoadU(d16, x[2].values + offset + e0), sum0_2, sum1_2);
    sum0_3 = hn::ReorderWidenMulAccumulate(d32, codes, hn::LoadU(d16, x[3].values + offset + e0), sum0_3, sum1_3);
  });
  if constexpr (Codes::kHasMin) {
    const float m = F16At(block + Codes::kMinOffset);
    for (int i = 0; i < 4; ++i) min_acc[i] += m * x[i].block_sums[b];
  }
  const VF32 dw = hn::Set(df, F16At(block));
  acc[0] = hn::MulAdd(hn::Mul(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(sum0_0, sum1_0)), hn::Set(df, x[0].scales[b])), dw, acc[0]);
  acc[1] = hn::MulAdd(hn::Mul(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(sum0_1, sum1_1)), hn::Set(df, x[1].scales[b])), dw, acc[1]);
  acc[2] = hn::MulAdd(hn::Mul(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(sum0_2, sum1_2)), hn::Set(df, x[2].scales[b])), dw, acc[2]);
  acc[3] = hn::MulAdd(hn::Mul(hn::ConvertTo(df, hn::RearrangeToOddPlusEven(sum0_3, sum1_3)), hn::Set(df, x[3].scales[b])), dw, acc[3]);
}

// out[i] = DotLegacy(row, x[i], cols) for 4 tokens; the 4 independent accumulators
// already hide the FMA latency, so one block per step.
template <class Codes>
HWY_INLINE void DotLegacy4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  const DF32 df;
  const std::int64_t blocks = cols / kQk;
  VF32 acc[4] = {hn::Zero(df), hn::Zero(df), hn::Zero(df), hn::Zero(df)};
  float min_acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (std::int64_t b = 0; b < blocks; ++b) {
    AddBlock4<Codes>(row + static_cast<std::size_t>(b) * Codes::kBlockBytes, x, b, acc, min_acc);
  }
  for (int i = 0; i < 4; ++i) out[i] = hn::GetLane(hn::SumOfLanes(df, acc[i])) + min_acc[i];
}

}  // namespace legacy_q8

HWY_INLINE float DotQ8_0(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return legacy_q8::DotLegacy<legacy_q8::Q8_0Codes>(row, x, cols);
}
HWY_INLINE float DotQ4_0(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return legacy_q8::DotLegacy<legacy_q8::Q4_0Codes>(row, x, cols);
}
HWY_INLINE float DotQ4_1(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return legacy_q8::DotLegacy<legacy_q8::Q4_1Codes>(row, x, cols);
}
HWY_INLINE float DotQ5_0(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return legacy_q8::DotLegacy<legacy_q8::Q5_0Codes>(row, x, cols);
}
HWY_INLINE float DotQ5_1(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return legacy_q8::DotLegacy<legacy_q8::Q5_1Codes>(row, x, cols);
}

// 4 tokens at once (prompts). Static: Q8MatmulRowsLoop tests the Dot4 pointer against
// nullptr at compile time, which GCC cannot do for an extern inline function under
// -fsanitize=undefined.
static HWY_INLINE void DotQ8_0x4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  legacy_q8::DotLegacy4<legacy_q8::Q8_0Codes>(row, x, cols, out);
}
static HWY_INLINE void DotQ4_0x4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  legacy_q8::DotLegacy4<legacy_q8::Q4_0Codes>(row, x, cols, out);
}
static HWY_INLINE void DotQ4_1x4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  legacy_q8::DotLegacy4<legacy_q8::Q4_1Codes>(row, x, cols, out);
}
static HWY_INLINE void DotQ5_0x4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  legacy_q8::DotLegacy4<legacy_q8::Q5_0Codes>(row, x, cols, out);
}
static HWY_INLINE void DotQ5_1x4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  legacy_q8::DotLegacy4<legacy_q8::Q5_1Codes>(row, x, cols, out);
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
