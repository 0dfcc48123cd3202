#pragma once
// Helpers for the kernel tests: random data, rounding to a storage type, and running a
// check once per SIMD target this CPU has.
#include <gtest/gtest.h>

#include <algorithm>
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

// Restores the SIMD target in force when it was made (the best one, or the level
// PIQUANT_SIMD forced for the whole test binary), even on a failed assertion.
struct SimdTargetReset {
  const std::string entry = simd_target();
  ~SimdTargetReset() { force_simd_target(entry); }
};

// The targets a test covers: those this CPU runs, best first, from the one in force
// down. Unforced that is all of them; under PIQUANT_SIMD=avx2 (say) AVX2 and below, what
// an AVX2 machine would run.
inline std::vector<std::string> simd_targets_in_reach() {
  const std::vector<std::string> all = simd_targets();
  const auto current = std::find(all.begin(), all.end(), simd_target());
  return {current == all.end() ? all.begin() : current, all.end()};
}

// Calls check() once per target of simd_targets_in_reach(), with dispatch restricted to it.
template <class Check>
void for_each_simd_target(Check&& check) {
  SimdTargetReset reset;
  const std::vector<std::string> targets = simd_targets_in_reach();
  ASSERT_FALSE(targets.empty());
  for (const std::string& target : targets) {
    SCOPED_TRACE("SIMD target " + target);
    force_simd_target(target);
    ASSERT_EQ(simd_target(), target);
    check();
  }
}

// Sanitizer builds (Debug, tens of times slower) run the heaviest end-to-end checks on
// the level in force only: they look for memory errors, and the Release suite runs the
// checks on every level (scripts/test.sh also runs it under each forced level).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitizedBuild = true;
#else
inline constexpr bool kSanitizedBuild = false;
#endif

// for_each_simd_target, or check() once on the level in force in a sanitizer build.
template <class Check>
void for_each_simd_target_unless_sanitized(Check&& check) {
  if (kSanitizedBuild) {
    SCOPED_TRACE("SIMD target " + simd_target() + " (sanitizer build: this level only)");
    check();
  } else {
    for_each_simd_target(check);
  }
}

inline const GgmlType kKernelTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16};

}  // namespace piquant::kernel_test
