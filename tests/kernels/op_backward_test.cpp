// The backward of rms_norm, swiglu and RoPE: each double-precision reference backward
// against central finite differences of its double-precision reference forward, then the
// float kernels against those references on every SIMD target this CPU has (RoPE has one
// scalar implementation), within error bounds stated at each test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "gradient_check.h"
#include "kernel_test_support.h"
#include "kernels/rope.h"
#include "kernels/vector_ops.h"

namespace piquant {
namespace {

using namespace kernel_test;

// Odd and even lengths around every vector width (4, 8, 16 lanes) and its multiples.
const std::int64_t kLengths[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 257, 1000, 4097};

// The longest chain of float additions inside a kernel's sum of n terms: four
// accumulators of at least 4 lanes, then the reduction across lanes.
double longest_chain(std::int64_t n) { return static_cast<double>(n) / 16.0 + 8.0; }

// ---- rms_norm -------------------------------------------------------------------------

// rms_norm_rstd's relative error in units of u: the sum of squares (positive terms) is off by
// at most chain·u relatively, half that after the square root, then one rounding to float.
double rstd_error(std::int64_t n) { return longest_chain(n) / 2.0 + 1.0; }

TEST(OpBackward, RmsNormIsXTimesRstdTimesWeightBitForBit) {
  std::mt19937 rng(130);
  for (const std::int64_t n : kLengths) {
    const std::vector<float> x = random_floats(static_cast<std::size_t>(n), rng, -3, 3);
    const std::vector<float> weight = random_floats(static_cast<std::size_t>(n), rng, 0.5, 2);
    const double expected_rstd = reference::rms_norm_rstd(to_double(x).data(), n, 1e-5f);
    for_each_simd_target([&] {
      const float rstd = rms_norm_rstd(x.data(), n, 1e-5f);
      ASSERT_NEAR(rstd, expected_rstd, rstd_error(n) * kFloatRoundoff * expected_rstd) << "n=" << n;
      std::vector<float> out(x.size());
      rms_norm(x.data(), weight.data(), n, 1e-5f, out.data());
      for (std::size_t i = 0; i < out.size(); ++i) {
        const float product = x[i] * rstd;  // what the backward assumes the forward computed
        ASSERT_EQ(out[i], product * weight[i]) << "n=" << n << " i=" << i;
      }
    });
  }
  const float one = 1.0f;
  EXPECT_THROW(rms_norm_rstd(&one, 0, 1e-5f), Error);
}

TEST(OpBackward, RmsNormReferenceBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(131);
  for (const std::int64_t n : {1, 2, 5, 17}) {
    const auto size = static_cast<std::size_t>(n);
    std::vector<double> x = random_doubles(size, rng, -2, 2), weight = random_doubles(size, rng, 0.5, 2);
    const std::vector<double> dy = random_doubles(size, rng, -1, 1);
    const double eps = 0.01;  // large enough to matter for n = 1
    std::vector<double> dx(size, 0.0), dweight(size, 0.0), y(size);
    reference::rms_norm_backward(x.data(), weight.data(), eps, dy.data(), n, dx.data(), dweight.data());
    const auto loss = [&] {
      reference::rms_norm(x.data(), weight.data(), n, eps, y.data());
      return dot(dy, y);
    };
    for (std::size_t k = 0; k < size; ++k) {
      EXPECT_NEAR(central_difference(x, k, loss), dx[k], finite_difference_tolerance(dx[k])) << "n=" << n << " dx " << k;
      EXPECT_NEAR(central_difference(weight, k, loss), dweight[k], finite_difference_tolerance(dweight[k]))
          << "n=" << n << " dweight " << k;
    }
  }
}

TEST(OpBackward, RmsNormBackwardMatchesReference) {
  std::mt19937 rng(132);
  const float eps = 1e-5f;
  for (const std::int64_t n : kLengths) {
    const auto size = static_cast<std::size_t>(n);
    const std::vector<float> x = random_floats(size, rng, -3, 3), weight = random_floats(size, rng, 0.5, 2);
    const std::vector<float> dy = random_floats(size, rng, -1, 1);
    // Both gradients are added to what the buffers hold.
    const std::vector<float> dx0 = random_floats(size, rng, -1, 1), dweight0 = random_floats(size, rng, -1, 1);
    const std::vector<double> xd = to_double(x), wd = to_double(weight), dyd = to_double(dy);
    std::vector<double> expected_dx = to_double(dx0), expected_dweight = to_double(dweight0);
    reference::rms_norm_backward(xd.data(), wd.data(), eps, dyd.data(), n, expected_dx.data(), expected_dweight.data());
    // Error bound, in units of u: with r = rstd (relative error e_r), S = Σ|dy·w·x| (the sum
    // off by (chain + 1)·S·u), c = r²·S/n is off by (2e_r + chain + 2) relatively; the term
    // r·dy·w by e_r + 2 (the product dy·w, then the fused x·c subtraction); r·x·c by one more
    // e_r and a rounding. So |dx error| ≤ (3e_r + chain + 4)·u·M_k, M_k = r|dy·w| + |x|·r³·S/n,
    // plus one rounding of the accumulated result. dweight: (dy·x)·r is off by e_r + 1.
    const double r = reference::rms_norm_rstd(xd.data(), n, eps);
    double s_abs = 0;
    for (std::size_t i = 0; i < size; ++i) s_abs += std::abs(dyd[i] * wd[i] * xd[i]);
    const double e_r = rstd_error(n), dx_units = 3 * e_r + longest_chain(n) + 4;
    for_each_simd_target([&] {
      const float rstd = rms_norm_rstd(x.data(), n, eps);
      std::vector<float> dx = dx0, dweight = dweight0;
      rms_norm_backward(x.data(), weight.data(), rstd, dy.data(), n, dx.data(), dweight.data());
      for (std::size_t k = 0; k < size; ++k) {
        const double m = r * std::abs(dyd[k] * wd[k]) + std::abs(xd[k]) * r * r * r * s_abs / static_cast<double>(n);
        ASSERT_NEAR(dx[k], expected_dx[k], dx_units * kFloatRoundoff * m + kFloatRoundoff * std::abs(expected_dx[k]))
            << "n=" << n << " dx " << k;
        ASSERT_NEAR(dweight[k], expected_dweight[k],
                    (e_r + 1) * kFloatRoundoff * std::abs(dyd[k] * xd[k] * r) + kFloatRoundoff * std::abs(expected_dweight[k]))
            << "n=" << n << " dweight " << k;
      }
      // Without dweight, dx is the same.
      std::vector<float> dx_alone = dx0;
      rms_norm_backward(x.data(), weight.data(), rstd, dy.data(), n, dx_alone.data(), nullptr);
      EXPECT_EQ(dx_alone, dx);
    });
  }
}

// ---- swiglu ---------------------------------------------------------------------------

TEST(OpBackward, SwigluReferenceBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(133);
  for (const std::int64_t n : {1, 4, 13}) {
    const auto size = static_cast<std::size_t>(n);
    std::vector<double> gate = random_doubles(size, rng, -8, 8), up = random_doubles(size, rng, -2, 2);
    gate[0] = -1.2785;  // near silu's minimum, where ∂/∂gate crosses zero
    const std::vector<double> dout = random_doubles(size, rng, -1, 1);
    std::vector<double> dgate(size), dup(size), out(size);
    reference::swiglu_backward(gate.data(), up.data(), dout.data(), n, dgate.data(), dup.data());
    const auto loss = [&] {
      reference::swiglu(gate.data(), up.data(), n, out.data());
      return dot(dout, out);
    };
    for (std::size_t k = 0; k < size; ++k) {
      EXPECT_NEAR(central_difference(gate, k, loss), dgate[k], finite_difference_tolerance(dgate[k])) << "dgate " << k;
      EXPECT_NEAR(central_difference(up, k, loss), dup[k], finite_difference_tolerance(dup[k])) << "dup " << k;
    }
  }
}

TEST(OpBackward, SwigluBackwardMatchesReference) {
  std::mt19937 rng(134);
  for (const std::int64_t n : kLengths) {
    const auto size = static_cast<std::size_t>(n);
    std::vector<float> gate = random_floats(size, rng, -20, 20);
    const std::vector<float> up = random_floats(size, rng, -3, 3), dout = random_floats(size, rng, -3, 3);
    // Extremes where exp(-g) overflows a naive form, zeros, and silu's minimum.
    const float extremes[] = {-200.0f, -88.0f, -30.0f, 0.0f, -0.0f, 30.0f, 200.0f, -1.2785f};
    for (std::size_t i = 0; i < std::min(size, std::size(extremes)); ++i) gate[i] = extremes[i];
    const std::vector<double> gd = to_double(gate), ud = to_double(up), dod = to_double(dout);
    std::vector<double> expected_dgate(size), expected_dup(size);
    reference::swiglu_backward(gd.data(), ud.data(), dod.data(), n, expected_dgate.data(), expected_dup.data());
    for_each_simd_target([&] {
      std::vector<float> dgate(size, std::nanf("")), dup(size, std::nanf(""));  // written, not added to
      swiglu_backward(gate.data(), up.data(), dout.data(), n, dgate.data(), dup.data());
      for (std::size_t i = 0; i < size; ++i) {
        // dgate error bound: e = exp(−|g|) within 2u; 1 + e, σ and 1 − σ within 5u each;
        // 1 + g·(1 − σ) (fused) off by 6u·(1 + |g|·(1 − σ)), where it may cancel; times σ,
        // dout·up and the last product: 14u of the magnitude |dout·up|·σ·(1 + |g|·(1 − σ)).
        // The absolute term covers results below float's normal range.
        const double g = gd[i], sigmoid = 1.0 / (1.0 + std::exp(-g));
        const double magnitude = std::abs(dod[i] * ud[i]) * sigmoid * (1.0 + std::abs(g) * (1.0 - sigmoid));
        ASSERT_NEAR(dgate[i], expected_dgate[i], 14 * kFloatRoundoff * magnitude + 1e-37) << "n=" << n << " gate=" << g;
        // dup = silu(g)·dout as the forward forms silu (see vector_ops_test): 8 roundings.
        ASSERT_NEAR(dup[i], expected_dup[i], 8 * kFloatRoundoff * std::abs(expected_dup[i]) + 1e-37) << "gate=" << g;
      }
      // dup is the forward applied to (gate, dout), bit for bit.
      std::vector<float> forward(size);
      swiglu(gate.data(), dout.data(), n, forward.data());
      EXPECT_EQ(forward, dup);
      // Outputs may be the same arrays as inputs: the same bits.
      std::vector<float> g_in = gate, u_in = up, d_in = dout;
      swiglu_backward(g_in.data(), u_in.data(), d_in.data(), n, d_in.data(), u_in.data());  // dgate = dout, dup = up
      EXPECT_EQ(d_in, dgate);
      EXPECT_EQ(u_in, dup);
      g_in = gate, u_in = up, d_in = dout;
      swiglu_backward(g_in.data(), u_in.data(), d_in.data(), n, g_in.data(), d_in.data());  // dgate = gate, dup = dout
      EXPECT_EQ(g_in, dgate);
      EXPECT_EQ(d_in, dup);
    });
  }
  float a = 1.0f, b = 1.0f, c = 1.0f, d = 0.0f;
  EXPECT_THROW(swiglu_backward(&a, &b, &c, 1, &d, &d), Error);
  EXPECT_THROW(swiglu_backward(&a, &b, &c, -1, &d, &a), Error);
}

// ---- RoPE -----------------------------------------------------------------------------

constexpr double kRopeBase = 500000.0;

struct RopeCase {
  std::int64_t head_dim;
  bool with_factors;
  RopePairing pairing;
};

std::vector<RopeCase> rope_cases() {
  std::vector<RopeCase> cases;
  for (const std::int64_t head_dim : {2, 8, 64, 96})
    for (const bool with_factors : {false, true})
      for (const RopePairing pairing : {RopePairing::Interleaved, RopePairing::HalfSplit})
        cases.push_back({head_dim, with_factors, pairing});
  return cases;
}

const std::int64_t kPositions[] = {0, 1, 5, 1000, 131071};

// |a| + |b| of the pair holding element e of each head: the scale of a rotated pair's error.
std::vector<double> pair_magnitudes(const std::vector<float>& x, std::int64_t head_dim, RopePairing pairing) {
  std::vector<double> m(x.size());
  for (std::size_t h = 0; h < x.size() / static_cast<std::size_t>(head_dim); ++h)
    for (std::int64_t i = 0; i < head_dim / 2; ++i) {
      const std::int64_t p = pairing == RopePairing::Interleaved ? 2 * i : i;
      const std::int64_t q = pairing == RopePairing::Interleaved ? 2 * i + 1 : i + head_dim / 2;
      const std::size_t base = h * static_cast<std::size_t>(head_dim);
      const double s = std::abs(x[base + static_cast<std::size_t>(p)]) + std::abs(x[base + static_cast<std::size_t>(q)]);
      m[base + static_cast<std::size_t>(p)] = m[base + static_cast<std::size_t>(q)] = s;
    }
  return m;
}

TEST(OpBackward, RopeApplyInverseUndoesApply) {
  std::mt19937 rng(135);
  for (const RopeCase& c : rope_cases()) {
    const std::vector<float> factors = random_floats(static_cast<std::size_t>(c.head_dim / 2), rng, 1, 8);
    const RopeTable table(c.head_dim, kRopeBase, c.with_factors ? factors : std::vector<float>{}, c.pairing);
    for (const std::int64_t pos : kPositions) {
      const std::vector<float> x = random_floats(static_cast<std::size_t>(3 * c.head_dim), rng, -4, 4);
      std::vector<float> y = x;
      table.apply(y.data(), 3, pos);
      table.apply_inverse(y.data(), 3, pos);
      // Float cos c̃ and sin s̃ (one rounding each) make c̃² + s̃² = 1 within 2u; each rotation
      // adds two roundings of numbers no larger than |a| + |b|: within 8u of |a| + |b|.
      const std::vector<double> m = pair_magnitudes(x, c.head_dim, c.pairing);
      for (std::size_t e = 0; e < x.size(); ++e)
        ASSERT_NEAR(y[e], x[e], 8 * kFloatRoundoff * m[e]) << "head_dim " << c.head_dim << " pos " << pos << " e " << e;
    }
  }
  const RopeTable table(8, kRopeBase, {}, RopePairing::HalfSplit);
  float x[8] = {};
  EXPECT_THROW(table.apply_inverse(x, 1, -1), Error);
  EXPECT_THROW(table.apply_inverse(x, -1, 0), Error);
}

TEST(OpBackward, RopeReferenceInverseIsTheBackwardByFiniteDifferences) {
  std::mt19937 rng(136);
  for (const RopeCase& c : rope_cases()) {
    if (c.head_dim > 8) continue;  // tiny shapes: one difference per element
    const std::vector<float> factors = random_floats(static_cast<std::size_t>(c.head_dim / 2), rng, 1, 8);
    const std::vector<float>& f = c.with_factors ? factors : std::vector<float>{};
    for (const std::int64_t pos : {1, 7, 1000}) {
      const auto size = static_cast<std::size_t>(2 * c.head_dim);
      std::vector<double> x = random_doubles(size, rng, -2, 2);
      const std::vector<double> dy = random_doubles(size, rng, -1, 1);
      std::vector<double> dx = dy, y(size);
      reference::rope_inverse(dx.data(), 2, c.head_dim, pos, kRopeBase, f, c.pairing);
      const auto loss = [&] {
        y = x;
        reference::rope(y.data(), 2, c.head_dim, pos, kRopeBase, f, c.pairing);
        return dot(dy, y);
      };
      for (std::size_t k = 0; k < size; ++k)
        ASSERT_NEAR(central_difference(x, k, loss), dx[k], finite_difference_tolerance(dx[k]))
            << "head_dim " << c.head_dim << " pos " << pos << " element " << k;
    }
  }
}

TEST(OpBackward, RopeApplyInverseMatchesReference) {
  std::mt19937 rng(137);
  for (const RopeCase& c : rope_cases()) {
    const std::vector<float> factors = random_floats(static_cast<std::size_t>(c.head_dim / 2), rng, 1, 8);
    const std::vector<float>& f = c.with_factors ? factors : std::vector<float>{};
    const RopeTable table(c.head_dim, kRopeBase, f, c.pairing);
    for (const std::int64_t pos : kPositions) {
      const std::vector<float> dy = random_floats(static_cast<std::size_t>(3 * c.head_dim), rng, -4, 4);
      std::vector<float> got = dy;
      table.apply_inverse(got.data(), 3, pos);
      std::vector<double> expected = to_double(dy);
      reference::rope_inverse(expected.data(), 3, c.head_dim, pos, kRopeBase, f, c.pairing);
      // As apply() against reference::rope (rope_test): float cos/sin, two products and a
      // sum, a few roundings of numbers no larger than |a| + |b|.
      const std::vector<double> m = pair_magnitudes(dy, c.head_dim, c.pairing);
      for (std::size_t e = 0; e < dy.size(); ++e)
        ASSERT_NEAR(got[e], expected[e], 8 * kFloatRoundoff * m[e]) << "head_dim " << c.head_dim << " pos " << pos << " e " << e;
    }
  }
}

}  // namespace
}  // namespace piquant
