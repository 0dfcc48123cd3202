// rms_norm, softmax, swiglu, dot, axpy and store_row against the double-precision
// references and core/half.h, on every SIMD target this CPU has.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "kernel_test_support.h"
#include "kernels/vector_ops.h"

namespace piquant {
namespace {

using namespace kernel_test;

// Odd and even lengths around every vector width (4, 8, 16 lanes) and its multiples.
const std::int64_t kLengths[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 257, 1000, 4097};

// The longest chain of float additions inside a kernel's sum of n terms: four
// accumulators of at least 4 lanes, then the reduction across lanes.
double longest_chain(std::int64_t n) { return static_cast<double>(n) / 16.0 + 8.0; }

TEST(VectorOps, RmsNormMatchesReference) {
  std::mt19937 rng(10);
  for (const std::int64_t n : kLengths) {
    const std::vector<float> x = random_floats(static_cast<std::size_t>(n), rng, -3, 3);
    const std::vector<float> weight = random_floats(static_cast<std::size_t>(n), rng, 0.5, 2);
    std::vector<float> expected(x.size());
    reference::rms_norm(x.data(), weight.data(), n, 1e-5f, expected.data());
    // The sum of squares (positive terms) is off by at most chain·u relatively, half
    // that after the square root; then the float scale and two products: 4 roundings.
    const double relative = (4.0 + longest_chain(n) / 2.0) * kFloatRoundoff;
    for_each_simd_target([&] {
      std::vector<float> out(x.size());
      rms_norm(x.data(), weight.data(), n, 1e-5f, out.data());
      for (std::size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], expected[i], relative * std::abs(expected[i])) << "n=" << n << " i=" << i;
      std::vector<float> in_place = x;  // out may be x
      rms_norm(in_place.data(), weight.data(), n, 1e-5f, in_place.data());
      EXPECT_EQ(in_place, out);
    });
  }
}

TEST(VectorOps, RmsNormOfConstantVectorIsWeightOverRootOfOnePlusEps) {
  // x = c everywhere: mean(x²) = c², so out = c / sqrt(c² + eps) · weight.
  const std::vector<float> x(37, 2.0f), weight(37, 3.0f);
  for_each_simd_target([&] {
    std::vector<float> out(37);
    rms_norm(x.data(), weight.data(), 37, 0.25f, out.data());
    for (const float v : out) EXPECT_FLOAT_EQ(v, static_cast<float>(2.0 / std::sqrt(4.25) * 3.0));
  });
}

TEST(VectorOps, SoftmaxMatchesReference) {
  std::mt19937 rng(11);
  for (const std::int64_t n : kLengths) {
    const std::vector<float> x = random_floats(static_cast<std::size_t>(n), rng, -10, 10);
    std::vector<float> expected = x;
    reference::softmax(expected.data(), n);
    const float max = *std::max_element(x.begin(), x.end());
    for_each_simd_target([&] {
      std::vector<float> y = x;
      softmax(y.data(), n);
      for (std::size_t i = 0; i < y.size(); ++i) {
        // x - max rounds in float (relative error u·|x - max| after exp), exp is within
        // 1 ulp (2u), the sum of positive terms within chain·u, then the reciprocal and
        // one product.
        const double relative = (6.0 + longest_chain(n) + std::abs(x[i] - max)) * kFloatRoundoff;
        ASSERT_NEAR(y[i], expected[i], relative * expected[i]) << "n=" << n << " i=" << i;
      }
    });
  }
}

TEST(VectorOps, SoftmaxExpIsWithinOneMillionthOfStdExp) {
  // y[i] / y[j] = exp(x[i] - x[j]): the normalisation cancels, leaving the exp's own
  // error (plus two roundings of the final products) to compare with std::exp.
  // Multiples of 2^-10: x[i] - max is then exact in float, so only exp's error remains.
  std::mt19937 rng(12);
  std::vector<float> x = random_floats(1001, rng, -40, 40);
  for (float& v : x) v = std::round(v * 1024.0f) / 1024.0f;
  for_each_simd_target([&] {
    std::vector<float> y = x;
    softmax(y.data(), 1001);
    const std::size_t top = static_cast<std::size_t>(std::max_element(x.begin(), x.end()) - x.begin());
    for (std::size_t i = 0; i < y.size(); ++i) {
      const double expected = std::exp(static_cast<double>(x[i]) - x[top]);
      if (expected < 1e-30) continue;  // below float's normal range the ratio is no test of exp
      ASSERT_NEAR(y[i] / y[top], expected, 1e-6 * expected) << "x=" << x[i];
    }
  });
}

TEST(VectorOps, SoftmaxHandlesMaskedAndLargeInputs) {
  const float inf = std::numeric_limits<float>::infinity();
  for_each_simd_target([&] {
    // Masked attention scores are -inf: they get exactly 0, the rest share 1.
    std::vector<float> x = {1.0f, -inf, 1.0f, -inf, -inf, 1.0f, 1.0f, -inf, -inf};
    softmax(x.data(), 9);
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], i == 0 || i == 2 || i == 5 || i == 6 ? 0.25f : 0.0f);
    // Large scores must not overflow: only differences matter.
    std::vector<float> big = {1000.0f, 1001.0f};
    softmax(big.data(), 2);
    EXPECT_NEAR(big[0], 1 / (1 + std::exp(1.0)), 1e-6);
    EXPECT_NEAR(big[1], std::exp(1.0) / (1 + std::exp(1.0)), 1e-6);
    float one = -5.0f;
    softmax(&one, 1);
    EXPECT_EQ(one, 1.0f);
  });
}

TEST(VectorOps, SwigluMatchesReference) {
  std::mt19937 rng(13);
  for (const std::int64_t n : kLengths) {
    std::vector<float> gate = random_floats(static_cast<std::size_t>(n), rng, -20, 20);
    const std::vector<float> up = random_floats(static_cast<std::size_t>(n), rng, -3, 3);
    // Extremes where exp(-g) overflows a naive g / (1 + exp(-g)).
    const float extremes[] = {-200.0f, -88.0f, -30.0f, 0.0f, -0.0f, 30.0f, 200.0f};
    for (std::size_t i = 0; i < std::min<std::size_t>(gate.size(), std::size(extremes)); ++i) gate[i] = extremes[i];
    std::vector<float> expected(gate.size());
    reference::swiglu(gate.data(), up.data(), n, expected.data());
    for_each_simd_target([&] {
      std::vector<float> out(gate.size());
      swiglu(gate.data(), up.data(), n, out.data());
      // exp within 1 ulp, then a sum, a quotient and two products: ≈ 6 roundings; the
      // absolute term covers results that fall below float's normal range.
      for (std::size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], expected[i], 8 * kFloatRoundoff * std::abs(expected[i]) + 1e-37) << "gate=" << gate[i];
      std::vector<float> in_place = gate;  // out may be gate
      swiglu(in_place.data(), up.data(), n, in_place.data());
      EXPECT_EQ(in_place, out);
    });
  }
}

TEST(VectorOps, DotMatchesReferenceForEveryCacheType) {
  std::mt19937 rng(14);
  for (const GgmlType type : kKernelTypes) {
    for (const std::int64_t n : kLengths) {
      const std::vector<float> a = random_floats(static_cast<std::size_t>(n), rng);
      const std::vector<std::uint8_t> b = encode(random_floats(static_cast<std::size_t>(n), rng), type);
      const double expected = reference::dot(a.data(), b.data(), type, n);
      double magnitude = 0;
      for (std::int64_t i = 0; i < n; ++i) magnitude += std::abs(a[i] * decode(b.data(), type, static_cast<std::size_t>(i)));
      for_each_simd_target([&] {
        // The same sum as one matmul output: see the tolerance in matmul_test.cpp.
        EXPECT_NEAR(dot(a.data(), b.data(), type, n), expected,
                    (4.0 + std::sqrt(static_cast<double>(n)) / 4.0) * kFloatRoundoff * magnitude)
            << ggml_type_name(type) << " n=" << n;
      });
    }
  }
}

TEST(VectorOps, AxpyMatchesReferenceForEveryCacheType) {
  std::mt19937 rng(15);
  for (const GgmlType type : kKernelTypes) {
    for (const std::int64_t n : kLengths) {
      const std::vector<std::uint8_t> x = encode(random_floats(static_cast<std::size_t>(n), rng), type);
      const std::vector<float> y0 = random_floats(static_cast<std::size_t>(n), rng);
      std::vector<float> expected = y0;
      reference::axpy(0.37f, x.data(), type, n, expected.data());
      for_each_simd_target([&] {
        std::vector<float> y = y0;
        y.push_back(99.0f);  // guard
        axpy(0.37f, x.data(), type, n, y.data());
        for (std::int64_t i = 0; i < n; ++i) {
          // One fused multiply-add: one rounding of a value no larger than |y| + |αx|.
          const double scale = std::abs(y0[i]) + 0.37 * std::abs(decode(x.data(), type, static_cast<std::size_t>(i)));
          ASSERT_NEAR(y[i], expected[i], 2 * kFloatRoundoff * scale) << ggml_type_name(type) << " n=" << n;
        }
        EXPECT_EQ(y.back(), 99.0f);
      });
    }
  }
}

// Floats that probe every rounding decision of F32 → F16/BF16: each 16-bit value,
// the midpoints between neighbours (ties) and one float ulp either side of them,
// float subnormals, overflow, infinities, NaNs with payloads, and random bit patterns.
std::vector<float> rounding_probes() {
  std::vector<float> probes;
  for (std::uint32_t h = 0; h < 65536; ++h) {
    for (const bool bf16 : {false, true}) {
      const float f = bf16 ? bf16_to_f32(static_cast<std::uint16_t>(h)) : f16_to_f32(static_cast<std::uint16_t>(h));
      const float next = bf16 ? bf16_to_f32(static_cast<std::uint16_t>(h + 1)) : f16_to_f32(static_cast<std::uint16_t>(h + 1));
      probes.push_back(f);
      if (std::isfinite(f) && std::isfinite(next) && h != 0x7fff && h != 0xffff) {
        const float mid = static_cast<float>((static_cast<double>(f) + next) / 2);
        probes.push_back(mid);
        probes.push_back(std::nextafter(mid, 0.0f));
        probes.push_back(std::nextafter(mid, std::numeric_limits<float>::infinity()));
        probes.push_back(std::nextafter(mid, -std::numeric_limits<float>::infinity()));
      }
    }
  }
  std::mt19937 rng(16);
  for (int i = 0; i < 100000; ++i) probes.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
  for (const std::uint32_t bits : {0x00000001u, 0x807fffffu, 0x7f7fffffu, 0x477ff000u, 0x477fefffu, 0x7f800001u,
                                   0xffc12345u, 0x7fbfffffu, 0x33000000u, 0x33000001u, 0xb3800000u})
    probes.push_back(std::bit_cast<float>(bits));
  return probes;
}

TEST(VectorOps, StoreRowRoundsLikeHalfHBitForBit) {
  const std::vector<float> probes = rounding_probes();
  for_each_simd_target([&] {
    for (const GgmlType type : {GgmlType::F16, GgmlType::BF16}) {
      std::vector<std::uint16_t> out(probes.size() + 1, 0xabcd);
      store_row(probes.data(), static_cast<std::int64_t>(probes.size()), type, out.data());
      int failures = 0;
      for (std::size_t i = 0; i < probes.size() && failures < 5; ++i) {
        const std::uint16_t expected = type == GgmlType::F16 ? f32_to_f16(probes[i]) : f32_to_bf16(probes[i]);
        if (out[i] != expected) {
          ADD_FAILURE() << ggml_type_name(type) << " of float bits 0x" << std::hex << std::bit_cast<std::uint32_t>(probes[i])
                        << ": 0x" << out[i] << ", half.h gives 0x" << expected;
          ++failures;
        }
      }
      EXPECT_EQ(out.back(), 0xabcd) << "store_row wrote past its row";
    }
  });
}

TEST(VectorOps, StoreRowWritesOddLengthsToUnalignedRows) {
  std::mt19937 rng(17);
  for (const std::int64_t n : kLengths) {
    const std::vector<float> x = random_floats(static_cast<std::size_t>(n), rng, -100, 100);
    for_each_simd_target([&] {
      for (const GgmlType type : kKernelTypes) {
        const std::vector<std::uint8_t> expected = encode(x, type);
        std::vector<std::uint8_t> out(expected.size() + 3, 0x5a);
        store_row(x.data(), n, type, out.data() + 1);  // an odd address
        EXPECT_TRUE(std::equal(expected.begin(), expected.end(), out.begin() + 1)) << ggml_type_name(type) << " n=" << n;
        EXPECT_EQ(out[0], 0x5a);
        EXPECT_EQ(out[expected.size() + 1], 0x5a);
      }
    });
  }
}

TEST(VectorOps, RejectsOtherCacheTypesAndNegativeLengths) {
  float a[4] = {}, y[4] = {};
  EXPECT_THROW(dot(a, a, GgmlType::Q8_0, 4), Error);
  EXPECT_THROW(axpy(1.0f, a, GgmlType::I32, 4, y), Error);
  EXPECT_THROW(store_row(a, 4, GgmlType::Q4_0, y), Error);
  EXPECT_THROW(rms_norm(a, a, -1, 1e-5f, y), Error);
  EXPECT_THROW(softmax(a, -2), Error);
  EXPECT_EQ(dot(a, a, GgmlType::F32, 0), 0.0f);
}

}  // namespace
}  // namespace piquant
