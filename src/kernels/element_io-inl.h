// Per-target loads and stores of F32/F16/BF16 elements as float vectors, shared by the
// matmul and vector kernels. Included once per Highway target (hence no #pragma once).
#if defined(PIQUANT_KERNELS_ELEMENT_IO_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PIQUANT_KERNELS_ELEMENT_IO_INL_H_
#undef PIQUANT_KERNELS_ELEMENT_IO_INL_H_
#else
#define PIQUANT_KERNELS_ELEMENT_IO_INL_H_
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
// Most float lanes any vector of this target has: sizes stack buffers for tails.
constexpr std::size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

// F16 → F32, exact for every input. Where the CPU converts (F16C, AArch64 NEON) Highway
// uses it; its integer emulation elsewhere turns exponent 31 into 2^16·(1+m) instead of
// inf/NaN, so those lanes are patched.
template <class D>
HWY_INLINE hn::Vec<D> PromoteF16(D d, hn::Vec<hn::Rebind<hwy::float16_t, D>> h) {
#if (HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2) || (HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON)
  return hn::PromoteTo(d, h);
#else
  const hn::RebindToUnsigned<D> du;
  const hn::Rebind<std::uint16_t, D> du16;
  const auto bits = hn::PromoteTo(du, hn::BitCast(du16, h));
  const auto exp_all_ones = hn::Eq(hn::And(bits, hn::Set(du, 0x7c00u)), hn::Set(du, 0x7c00u));
  const auto special = hn::Or(hn::Or(hn::ShiftLeft<16>(hn::And(bits, hn::Set(du, 0x8000u))), hn::Set(du, 0x7f800000u)),
                              hn::ShiftLeft<13>(hn::And(bits, hn::Set(du, 0x3ffu))));
  return hn::IfThenElse(hn::RebindMask(d, exp_all_ones), hn::BitCast(d, special), hn::PromoteTo(d, h));
#endif
}

// F32 → F16 bits (in the low half of u32 lanes), round to nearest even, bit for bit
// what core/half.h's f32_to_f16 gives (canonical NaN 0x7e00 with the sign kept).
// Integer arithmetic on every target so no target's hardware rounding differs.
template <class D>
HWY_INLINE hn::Vec<hn::RebindToUnsigned<D>> DemoteF16Bits(D d, hn::Vec<D> v) {
  const hn::RebindToUnsigned<D> du;
  const hn::RebindToSigned<D> di;
  const auto u = hn::BitCast(du, v);
  const auto sign = hn::And(hn::ShiftRight<16>(u), hn::Set(du, 0x8000u));
  const auto abs = hn::And(u, hn::Set(du, 0x7fffffffu));
  const auto abs_i = hn::BitCast(di, abs);
  // Normal halves: rebias the exponent, round the 13 dropped bits to nearest even.
  const auto rebiased = hn::Sub(abs, hn::Set(du, 0x38000000u));
  const auto odd = hn::And(hn::ShiftRight<13>(rebiased), hn::Set(du, 1u));
  const auto normal = hn::ShiftRight<13>(hn::Add(rebiased, hn::Add(hn::Set(du, 0xfffu), odd)));
  // Subnormal halves: the result is round(|v|·2^24), which adding 2^23 rounds (ties to even)
  // in the float unit; the scaling by 2^24 is exact, also for float subnormals.
  const auto scaled = hn::Mul(hn::BitCast(d, abs), hn::Set(d, 16777216.0f));
  const auto rounded = hn::BitCast(du, hn::Add(scaled, hn::Set(d, 8388608.0f)));
  const auto subnormal = hn::Sub(rounded, hn::Set(du, 0x4b000000u));
  auto h = hn::IfThenElse(hn::RebindMask(du, hn::Lt(abs_i, hn::Set(di, 0x38800000))), subnormal, normal);
  h = hn::IfThenElse(hn::RebindMask(du, hn::Gt(abs_i, hn::Set(di, 0x477fefff))), hn::Set(du, 0x7c00u), h);
  h = hn::IfThenElse(hn::RebindMask(du, hn::Gt(abs_i, hn::Set(di, 0x7f800000))), hn::Set(du, 0x7e00u), h);
  return hn::Or(h, sign);
}

// F32 → BF16 bits (low half of u32 lanes), as core/half.h's f32_to_bf16: round to
// nearest even, NaN kept quiet.
template <class D>
HWY_INLINE hn::Vec<hn::RebindToUnsigned<D>> DemoteBF16Bits(D d, hn::Vec<D> v) {
  const hn::RebindToUnsigned<D> du;
  const hn::RebindToSigned<D> di;
  const auto u = hn::BitCast(du, v);
  const auto odd = hn::And(hn::ShiftRight<16>(u), hn::Set(du, 1u));
  const auto rounded = hn::ShiftRight<16>(hn::Add(u, hn::Add(hn::Set(du, 0x7fffu), odd)));
  const auto quiet_nan = hn::Or(hn::ShiftRight<16>(u), hn::Set(du, 0x40u));
  const auto abs_i = hn::BitCast(di, hn::And(u, hn::Set(du, 0x7fffffffu)));
  return hn::IfThenElse(hn::RebindMask(du, hn::Gt(abs_i, hn::Set(di, 0x7f800000))), quiet_nan, rounded);
}

// Element loaders: Lanes(d) consecutive elements from index i of raw storage, as floats,
// plus the same for a single element. Storage may be unaligned (mmapped safetensors).
struct F32Elements {
  static constexpr std::size_t kBytes = 4;
  static HWY_INLINE VF Load(DF d, const std::uint8_t* p, std::size_t i) {
    return hn::LoadU(d, reinterpret_cast<const float*>(p + i * kBytes));
  }
  static float At(const std::uint8_t* p, std::size_t i) {
    float f;
    std::memcpy(&f, p + i * kBytes, sizeof f);
    return f;
  }
};

struct F16Elements {
  static constexpr std::size_t kBytes = 2;
  static HWY_INLINE VF Load(DF d, const std::uint8_t* p, std::size_t i) {
    const hn::Rebind<hwy::float16_t, DF> dh;
    return PromoteF16(d, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p + i * kBytes)));
  }
  static float At(const std::uint8_t* p, std::size_t i) {
    std::uint16_t h;
    std::memcpy(&h, p + i * kBytes, sizeof h);
    return f16_to_f32(h);
  }
};

struct BF16Elements {
  static constexpr std::size_t kBytes = 2;
  static HWY_INLINE VF Load(DF d, const std::uint8_t* p, std::size_t i) {
    const hn::Rebind<hwy::bfloat16_t, DF> db;
    return hn::PromoteTo(d, hn::LoadU(db, reinterpret_cast<const hwy::bfloat16_t*>(p + i * kBytes)));
  }
  static float At(const std::uint8_t* p, std::size_t i) {
    std::uint16_t h;
    std::memcpy(&h, p + i * kBytes, sizeof h);
    return bf16_to_f32(h);
  }
};

// The last `count` (< Lanes) elements from index i, zero-padded to a full vector: copying
// them into a buffer keeps every tail inside its row.
template <class E>
HWY_INLINE VF LoadTail(DF d, const std::uint8_t* p, std::size_t i, std::size_t count) {
  alignas(64) std::uint8_t buffer[kMaxLanes * E::kBytes] = {};
  std::memcpy(buffer, p + i * E::kBytes, count * E::kBytes);
  return E::Load(d, buffer, 0);
}

HWY_INLINE VF LoadFloatTail(DF d, const float* p, std::size_t count, float fill = 0.0f) {
  alignas(64) float buffer[kMaxLanes];
  for (std::size_t i = 0; i < kMaxLanes; ++i) buffer[i] = i < count ? p[i] : fill;
  return hn::Load(d, buffer);
}

HWY_INLINE void StoreFloatTail(DF d, VF v, float* p, std::size_t count) {
  alignas(64) float buffer[kMaxLanes];
  hn::Store(v, d, buffer);
  std::memcpy(p, buffer, count * sizeof(float));
}

HWY_INLINE float ReduceSum(DF d, VF v) { return hn::GetLane(hn::SumOfLanes(d, v)); }

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
