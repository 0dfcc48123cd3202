// The kernels' word-at-a-time unpacking of Q4_K/Q5_K scales and mins, and of Q3_K's
// scales, agrees with the per-byte rules (unpack_k4_scale_min, unpack_q3_k_scale) for
// every bit of the 12 packed bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "quant/block_formats.h"

namespace piquant {
namespace {

TEST(BlockFormats, WordUnpackOfK4ScalesMatchesTheByteRules) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int trial = 0; trial < 2000; ++trial) {
    std::uint8_t packed[12];
    // Trials 0..95 set one bit each (every bit's destination checked alone), then random bytes.
    for (int i = 0; i < 12; ++i) packed[i] = trial < 96 ? 0 : static_cast<std::uint8_t>(byte(rng));
    if (trial < 96) packed[trial / 8] = static_cast<std::uint8_t>(1u << (trial % 8));
    std::uint64_t scales = 0, mins = 0;
    unpack_k4_scales_and_mins(packed, &scales, &mins);
    for (int sub = 0; sub < 8; ++sub) {
      int scale = 0, min = 0;
      unpack_k4_scale_min(packed, sub, &scale, &min);
      EXPECT_EQ(static_cast<int>((scales >> (8 * sub)) & 0xff), scale) << "trial " << trial << ", sub-block " << sub;
      EXPECT_EQ(static_cast<int>((mins >> (8 * sub)) & 0xff), min) << "trial " << trial << ", sub-block " << sub;
    }
  }
}

TEST(BlockFormats, WordUnpackOfQ3KScalesMatchesTheByteRules) {
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int trial = 0; trial < 2000; ++trial) {
    std::uint8_t packed[12];
    for (int i = 0; i < 12; ++i) packed[i] = trial < 96 ? 0 : static_cast<std::uint8_t>(byte(rng));
    if (trial < 96) packed[trial / 8] = static_cast<std::uint8_t>(1u << (trial % 8));
    std::uint64_t low = 0, high = 0;
    unpack_q3_k_scales(packed, &low, &high);
    for (int sub = 0; sub < 16; ++sub) {
      const std::uint64_t word = sub < 8 ? low : high;
      EXPECT_EQ(static_cast<int>((word >> (8 * (sub % 8))) & 0xff), unpack_q3_k_scale(packed, sub))
          << "trial " << trial << ", sub-block " << sub;
    }
  }
}

}  // namespace
}  // namespace piquant
