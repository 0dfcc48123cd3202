// F16 / BF16 conversions against the hardware's own conversion (F16C via
// _Float16 where the compiler has it) and exhaustive round trips.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "core/half.h"

namespace piquant {
namespace {

TEST(Half, EveryF16RoundTripsThroughF32) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
      continue;
    }
    EXPECT_EQ(f32_to_f16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(Half, F16KnownValues) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(f32_to_f16(1e-8f), 0x0000);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // exactly half the smallest subnormal: ties to even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -26)), 0x0001);  // 0.75 of the smallest subnormal rounds up
}

// The compiler's own IEEE half: _Float16 where C++ has it (GCC 12 on x86); on aarch64
// GCC 12 offers only __fp16 in C++ (IEEE format there, converted by the FPU).
#if defined(__aarch64__)
#define PIQUANT_COMPILER_HALF __fp16
#elif defined(__FLT16_MAX__)
#define PIQUANT_COMPILER_HALF _Float16
#endif

#if defined(PIQUANT_COMPILER_HALF)
TEST(Half, F16MatchesCompilerConversionOnRandomFloats) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    const float f = std::bit_cast<float>(bits(rng));
    if (std::isnan(f)) continue;
    const PIQUANT_COMPILER_HALF ref = static_cast<PIQUANT_COMPILER_HALF>(f);
    ASSERT_EQ(f32_to_f16(f), std::bit_cast<std::uint16_t>(ref)) << f;
  }
}
#endif

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 lies exactly between two bf16 values: ties to even (down to 1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3*2^-8 lies between 0x3f81 and 0x3f82: ties to even (up).
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<std::uint16_t>(h));
    if (!std::isnan(f)) {
      EXPECT_EQ(f32_to_bf16(f), h);
    }
  }
}

}  // namespace
}  // namespace piquant
