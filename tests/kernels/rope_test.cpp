// RoPE: against the double-precision reference and against its defining properties.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "kernel_test_support.h"
#include "kernels/rope.h"

namespace piquant {
namespace {

using namespace kernel_test;

// llama3 frequency factors as Meta's reference code defines them (apply_scaling):
// wavelengths shorter than original/high_freq_factor keep their frequency, longer than
// original/low_freq_factor are slowed by `factor`, and the band between blends the two.
std::vector<float> llama3_factors(std::int64_t head_dim, double base, double factor, double low, double high,
                                  double original) {
  std::vector<float> factors;
  for (std::int64_t i = 0; i < head_dim / 2; ++i) {
    const double freq = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    const double wavelen = 2 * std::numbers::pi / freq;
    double scaled;
    if (wavelen < original / high) {
      scaled = freq;
    } else if (wavelen > original / low) {
      scaled = freq / factor;
    } else {
      const double smooth = (original / wavelen - low) / (high - low);
      scaled = (1 - smooth) * freq / factor + smooth * freq;
    }
    factors.push_back(static_cast<float>(freq / scaled));
  }
  return factors;
}

// Indices of pair i under a pairing.
std::pair<std::int64_t, std::int64_t> pair_of(RopePairing pairing, std::int64_t head_dim, std::int64_t i) {
  return pairing == RopePairing::Interleaved ? std::pair{2 * i, 2 * i + 1} : std::pair{i, i + head_dim / 2};
}

TEST(Rope, InverseFrequenciesFollowTheDefinition) {
  const RopeTable table(128, 10000.0, {}, RopePairing::Interleaved);
  ASSERT_EQ(table.inv_freq().size(), 64u);
  EXPECT_EQ(table.inv_freq()[0], 1.0);
  EXPECT_NEAR(table.inv_freq()[1], 0.8659643233600653, 1e-15);  // 10000^(-1/64)
  const RopeTable llama3(128, 500000.0, {}, RopePairing::HalfSplit);
  EXPECT_NEAR(llama3.inv_freq()[10], 0.12868737343265052, 1e-15);  // 500000^(-20/128)
}

TEST(Rope, MatchesReference) {
  std::mt19937 rng(20);
  for (const std::int64_t head_dim : {2, 64, 96, 128}) {
    std::vector<float> factors = random_floats(static_cast<std::size_t>(head_dim / 2), rng, 1, 8);
    for (const bool with_factors : {false, true}) {
      for (const RopePairing pairing : {RopePairing::Interleaved, RopePairing::HalfSplit}) {
        const std::vector<float>& f = with_factors ? factors : std::vector<float>{};
        const RopeTable table(head_dim, 500000.0, f, pairing);
        for (const std::int64_t pos : {0, 1, 5, 1000, 131071}) {
          const std::vector<float> x = random_floats(static_cast<std::size_t>(3 * head_dim), rng, -4, 4);
          std::vector<float> got = x, expected = x;
          table.apply(got.data(), 3, pos);
          reference::rope(expected.data(), 3, head_dim, pos, 500000.0, f, pairing);
          for (std::int64_t h = 0; h < 3; ++h)
            for (std::int64_t i = 0; i < head_dim / 2; ++i) {
              const auto [p, q] = pair_of(pairing, head_dim, i);
              // float cos/sin (one rounding each), two products and a sum: a few
              // roundings of numbers no larger than |a| + |b|.
              const double scale = std::abs(x[h * head_dim + p]) + std::abs(x[h * head_dim + q]);
              ASSERT_NEAR(got[h * head_dim + p], expected[h * head_dim + p], 8 * kFloatRoundoff * scale)
                  << "head_dim " << head_dim << " pos " << pos << " pair " << i;
              ASSERT_NEAR(got[h * head_dim + q], expected[h * head_dim + q], 8 * kFloatRoundoff * scale);
            }
        }
      }
    }
  }
}

TEST(Rope, PositionZeroIsTheIdentity) {
  std::mt19937 rng(21);
  const std::vector<float> x = random_floats(4 * 128, rng);
  for (const RopePairing pairing : {RopePairing::Interleaved, RopePairing::HalfSplit}) {
    std::vector<float> y = x;
    RopeTable(128, 10000.0, {}, pairing).apply(y.data(), 4, 0);
    EXPECT_EQ(y, x);
  }
}

TEST(Rope, InterleavedAndHalfSplitAgreeAfterPermutingElements) {
  // GGUF stores pair i at (2i, 2i+1), Hugging Face at (i, i + d/2): the same rotation of
  // the same numbers, so moving the elements between layouts commutes with RoPE.
  std::mt19937 rng(22);
  const std::int64_t d = 128, heads = 2;
  const std::vector<float> factors = llama3_factors(d, 500000.0, 8, 1, 4, 8192);
  const std::vector<float> half_split = random_floats(static_cast<std::size_t>(heads * d), rng);
  std::vector<float> interleaved(half_split.size());
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < d / 2; ++i) {
      interleaved[h * d + 2 * i] = half_split[h * d + i];
      interleaved[h * d + 2 * i + 1] = half_split[h * d + i + d / 2];
    }
  std::vector<float> a = half_split, b = interleaved;
  RopeTable(d, 500000.0, factors, RopePairing::HalfSplit).apply(a.data(), heads, 777);
  RopeTable(d, 500000.0, factors, RopePairing::Interleaved).apply(b.data(), heads, 777);
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < d / 2; ++i) {
      EXPECT_EQ(b[h * d + 2 * i], a[h * d + i]);
      EXPECT_EQ(b[h * d + 2 * i + 1], a[h * d + i + d / 2]);
    }
  EXPECT_NE(a, half_split);  // it did rotate
}

TEST(Rope, RotationPreservesPairNorms) {
  std::mt19937 rng(23);
  const std::int64_t d = 64;
  const std::vector<float> x = random_floats(static_cast<std::size_t>(d), rng, -3, 3);
  for (const std::int64_t pos : {1, 17, 4096, 100000}) {
    std::vector<float> y = x;
    RopeTable(d, 10000.0, {}, RopePairing::HalfSplit).apply(y.data(), 1, pos);
    for (std::int64_t i = 0; i < d / 2; ++i) {
      const double before = std::hypot(x[i], x[i + d / 2]);
      const double after = std::hypot(y[i], y[i + d / 2]);
      EXPECT_NEAR(after, before, 1e-6 * before) << "pos " << pos << " pair " << i;
    }
  }
}

// The angle RoPE turned pair i by at `pos`, measured by rotating the unit vector (1, 0).
double measured_angle(const RopeTable& table, std::int64_t i, std::int64_t pos) {
  const std::int64_t d = table.head_dim();
  std::vector<float> x(static_cast<std::size_t>(d), 0.0f);
  const auto [p, q] = pair_of(table.pairing(), d, i);
  x[p] = 1.0f;
  table.apply(x.data(), 1, pos);
  return std::atan2(x[q], x[p]);
}

TEST(Rope, Llama3FactorsSlowTheLowFrequencyPairs) {
  // Llama 3.1 8B: head_dim 128, base 500000, factor 8, low 1, high 4, original context 8192.
  const std::int64_t d = 128;
  const std::vector<float> factors = llama3_factors(d, 500000.0, 8, 1, 4, 8192);
  const RopeTable plain(d, 500000.0, {}, RopePairing::Interleaved);
  const RopeTable scaled(d, 500000.0, factors, RopePairing::Interleaved);
  // Fast pairs (wavelength < 2048) keep their frequency; slow ones (> 8192) turn 8× slower.
  EXPECT_EQ(factors.front(), 1.0f);
  EXPECT_FLOAT_EQ(factors.back(), 8.0f);
  for (std::size_t i = 0; i < factors.size(); ++i) {
    EXPECT_LE(scaled.inv_freq()[i], plain.inv_freq()[i]);
    EXPECT_NEAR(scaled.inv_freq()[i], plain.inv_freq()[i] / factors[i], 1e-12 * plain.inv_freq()[i]);
  }
  // The rotation itself: the last pair at position 100000 turns by pos·θ/8, not pos·θ.
  const double theta_last = std::pow(500000.0, -126.0 / 128.0);
  EXPECT_NEAR(measured_angle(scaled, 63, 100000), 100000 * theta_last / 8, 1e-6);
  EXPECT_NEAR(measured_angle(plain, 63, 100000), 100000 * theta_last, 1e-6);
  EXPECT_NEAR(measured_angle(scaled, 0, 1), 1.0, 1e-6);  // the fastest pair is untouched
}

TEST(Rope, RejectsBadShapes) {
  EXPECT_THROW(RopeTable(127, 10000.0, {}, RopePairing::Interleaved), Error);
  EXPECT_THROW(RopeTable(0, 10000.0, {}, RopePairing::Interleaved), Error);
  EXPECT_THROW(RopeTable(128, 0.0, {}, RopePairing::Interleaved), Error);
  EXPECT_THROW(RopeTable(128, 10000.0, std::vector<float>(63, 1.0f), RopePairing::Interleaved), Error);
  EXPECT_THROW(RopeTable(4, 10000.0, {1.0f, 0.0f}, RopePairing::Interleaved), Error);
  const RopeTable table(4, 10000.0, {}, RopePairing::HalfSplit);
  float x[4] = {};
  EXPECT_THROW(table.apply(x, 1, -1), Error);
}

}  // namespace
}  // namespace piquant
