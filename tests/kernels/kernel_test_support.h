#pragma once
// Helpers for the kernel tests: random data, rounding to a storage type, and running a
// check once per SIMD target this CPU has.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "formats/ggml_type.h"
#include "kernels/simd_target.h"

namespace piquant::kernel_test {

// float's unit roundoff, 2^-24: the relative error of one rounding.
constexpr double kFloatRoundoff = 1.0 / 16777216.0;

inline std::vector<float> random_floats(std::size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

inline std::size_t element_bytes(GgmlType type) { return type == GgmlType::F32 ? 4 : 2; }

// Floats stored as `type` (the test's own encoding through core/half.h).
inline std::vector<std::uint8_t> encode(const std::vector<float>& values, GgmlType type) {
  std::vector<std::uint8_t> bytes(values.size() * element_bytes(type));
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (type == GgmlType::F32) {
      std::memcpy(&bytes[4 * i], &values[i], 4);
    } else {
      const std::uint16_t h = type == GgmlType::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
      std::memcpy(&bytes[2 * i], &h, 2);
    }
  }
  return bytes;
}

inline double decode(const std::uint8_t* bytes, GgmlType type, std::size_t i) {
  if (type == GgmlType::F32) {
    float f;
    std::memcpy(&f, bytes + 4 * i, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, bytes + 2 * i, 2);
  return type == GgmlType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// Restores Highway's own target choice when a test ends, even on a failed assertion.
struct SimdTargetReset {
  ~SimdTargetReset() { force_simd_target(""); }
};

// Calls check() once per SIMD target this CPU runs, with dispatch restricted to it.
template <class Check>
void for_each_simd_target(Check&& check) {
  SimdTargetReset reset;
  const std::vector<std::string> targets = simd_targets();
  ASSERT_FALSE(targets.empty());
  for (const std::string& target : targets) {
    SCOPED_TRACE("SIMD target " + target);
    force_simd_target(target);
    ASSERT_EQ(simd_target(), target);
    check();
  }
}

inline const GgmlType kKernelTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16};

}  // namespace piquant::kernel_test
