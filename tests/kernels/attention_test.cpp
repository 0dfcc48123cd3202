// attend() against the double-precision reference on every SIMD target this CPU has:
// F32/F16/BF16 caches, head sizes 64, 128 and 40 (not a multiple of any vector), blocks of
// 1..16 queries with different causal limits; a query gives the same bits alone as in a
// block; bad arguments are errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernel_test_support.h"
#include "kernels/attention.h"

namespace piquant {
namespace {

using namespace kernel_test;

const std::int64_t kHeadDims[] = {64, 128, 40};

// A KV cache of n_rows positions whose rows hold 3 heads; the head under test is the middle one,
// so the kernel must follow the row stride and stay inside its head.
struct Cache {
  std::int64_t head_dim, n_rows;
  GgmlType type;
  std::vector<std::uint8_t> k, v;
  std::size_t stride() const { return static_cast<std::size_t>(3 * head_dim) * element_bytes(type); }
  const std::uint8_t* k_head() const { return k.data() + static_cast<std::size_t>(head_dim) * element_bytes(type); }
  const std::uint8_t* v_head() const { return v.data() + static_cast<std::size_t>(head_dim) * element_bytes(type); }
  double k_at(std::int64_t j, std::int64_t i) const { return decode(k_head() + j * stride(), type, static_cast<std::size_t>(i)); }
  double v_at(std::int64_t j, std::int64_t i) const { return decode(v_head() + j * stride(), type, static_cast<std::size_t>(i)); }
};

Cache random_cache(std::int64_t head_dim, std::int64_t n_rows, GgmlType type, std::mt19937& rng) {
  const auto n = static_cast<std::size_t>(3 * head_dim * n_rows);
  return Cache{head_dim, n_rows, type, encode(random_floats(n, rng, -2, 2), type), encode(random_floats(n, rng, -2, 2), type)};
}

// Runs attend() on queries qs (head_dim floats each) and returns the outputs, one vector per query.
std::vector<std::vector<float>> run_attend(const Cache& c, const std::vector<std::vector<float>>& qs,
                                           const std::vector<std::int64_t>& n_visible, float scale) {
  std::vector<const float*> q;
  std::vector<std::vector<float>> out(qs.size(), std::vector<float>(static_cast<std::size_t>(c.head_dim)));
  std::vector<float*> out_rows;
  for (std::size_t b = 0; b < qs.size(); ++b) {
    q.push_back(qs[b].data());
    out_rows.push_back(out[b].data());
  }
  const auto n_q = static_cast<std::int64_t>(qs.size());
  const std::int64_t max_visible = *std::max_element(n_visible.begin(), n_visible.end());
  std::vector<float> scratch(attend_scratch_floats(n_q, max_visible, c.head_dim), std::nanf(""));
  attend(q.data(), n_visible.data(), n_q, c.k_head(), c.v_head(), c.stride(), c.type, c.head_dim, scale, scratch.data(),
         scratch.size(), out_rows.data());
  return out;
}

// How far attend() may be from the exact result at element i of query q (u = 2^-24):
// - each score is a chain of at most D + 8 float operations (any vector width, then the
//   lanes added) on products of magnitude sum S_j = scale·Σ_i |q_i·k_ji|, plus the scale
//   product: off by δ_j ≤ (D + 9)·u·A with A = max_j S_j, which bounds every |score|;
// - shifting every score by at most δ moves each probability by a factor within e^{±2δ},
//   ≤ 2.1·δ relatively; softmax's own error is (14 + n/16 + |x - max|)·u relatively
//   (see vector_ops_test), |x - max| ≤ 2A;
// - the weighted sum is an n-term chain of fused multiply-adds: n·u relatively to
//   Σ_j p_j·|v_ji| ≤ max_j |v_ji|, and one final rounding.
double tolerance(const Cache& c, const std::vector<float>& q, std::int64_t n, float scale, std::int64_t i) {
  double a = 0, v_max = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (std::int64_t e = 0; e < c.head_dim; ++e) s += std::abs(q[static_cast<std::size_t>(e)] * c.k_at(j, e));
    a = std::max(a, s * scale);
    v_max = std::max(v_max, std::abs(c.v_at(j, i)));
  }
  const double relative = 2.1 * static_cast<double>(c.head_dim + 9) * a + 14.0 + static_cast<double>(n) / 16.0 + 2.0 * a +
                          static_cast<double>(n) + 1.0;
  return relative * kFloatRoundoff * v_max;
}

void expect_matches_reference(const Cache& c, const std::vector<std::vector<float>>& qs, const std::vector<std::int64_t>& n_visible,
                              float scale, const std::vector<std::vector<float>>& got) {
  for (std::size_t b = 0; b < qs.size(); ++b) {
    std::vector<float> expected(static_cast<std::size_t>(c.head_dim));
    const float* q = qs[b].data();
    float* e = expected.data();
    reference::attend(&q, &n_visible[b], 1, c.k_head(), c.v_head(), c.stride(), c.type, c.head_dim, scale, &e);
    for (std::int64_t i = 0; i < c.head_dim; ++i) {
      const auto at = static_cast<std::size_t>(i);
      ASSERT_NEAR(got[b][at], expected[at], tolerance(c, qs[b], n_visible[b], scale, i))
          << "query " << b << " of " << qs.size() << ", n_visible " << n_visible[b] << ", element " << i;
    }
  }
}

TEST(Attention, MatchesReferenceForEveryBlockSize) {
  std::mt19937 rng(40);
  const std::int64_t n_rows = 70;  // several chunks of rows
  for (const std::int64_t head_dim : kHeadDims) {
    for (const GgmlType type : kKernelTypes) {
      SCOPED_TRACE("head_dim " + std::to_string(head_dim) + ", " + ggml_type_name(type));
      const Cache c = random_cache(head_dim, n_rows, type, rng);
      const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      for (std::int64_t n_q = 1; n_q <= 16; ++n_q) {
        std::vector<std::vector<float>> qs;
        std::vector<std::int64_t> n_visible;
        std::uniform_int_distribution<std::int64_t> visible(1, n_rows);
        for (std::int64_t b = 0; b < n_q; ++b) {
          qs.push_back(random_floats(static_cast<std::size_t>(head_dim), rng, -2, 2));
          // Mixed limits, including 1 and the whole cache.
          n_visible.push_back(b == 0 ? 1 : b == 1 ? n_rows : visible(rng));
        }
        std::shuffle(n_visible.begin(), n_visible.end(), rng);
        for_each_simd_target([&] {
          const auto got = run_attend(c, qs, n_visible, scale);
          expect_matches_reference(c, qs, n_visible, scale, got);
        });
      }
    }
  }
}

TEST(Attention, QueryAloneEqualsQueryInBlock) {
  // The forward pass's blocks: 4 tokens × a group of 4 heads, token t seeing p0 + t + 1 keys.
  std::mt19937 rng(41);
  for (const std::int64_t head_dim : kHeadDims) {
    for (const GgmlType type : kKernelTypes) {
      SCOPED_TRACE("head_dim " + std::to_string(head_dim) + ", " + ggml_type_name(type));
      const Cache c = random_cache(head_dim, 40, type, rng);
      std::vector<std::vector<float>> qs;
      std::vector<std::int64_t> n_visible;
      for (std::int64_t t = 0; t < 4; ++t) {
        for (std::int64_t h = 0; h < 4; ++h) {
          qs.push_back(random_floats(static_cast<std::size_t>(head_dim), rng, -2, 2));
          n_visible.push_back(33 + t);
        }
      }
      const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));  // not a power of two: rounds
      for_each_simd_target([&] {
        const auto block = run_attend(c, qs, n_visible, scale);
        expect_matches_reference(c, qs, n_visible, scale, block);
        for (std::size_t b = 0; b < qs.size(); ++b) {
          const auto alone = run_attend(c, {qs[b]}, {n_visible[b]}, scale);
          EXPECT_EQ(alone[0], block[b]) << "query " << b;
        }
        // The same queries in reverse order (other tiles, other causal edges) give the same bits.
        std::vector<std::vector<float>> reversed_q(qs.rbegin(), qs.rend());
        std::vector<std::int64_t> reversed_n(n_visible.rbegin(), n_visible.rend());
        const auto reversed = run_attend(c, reversed_q, reversed_n, scale);
        for (std::size_t b = 0; b < qs.size(); ++b) EXPECT_EQ(reversed[qs.size() - 1 - b], block[b]) << "query " << b;
      });
    }
  }
}

TEST(Attention, OneVisibleKeyGivesItsValueExactly) {
  // softmax of one score is exactly 1, so the output is value row 0 as stored.
  std::mt19937 rng(42);
  for (const GgmlType type : kKernelTypes) {
    const Cache c = random_cache(40, 3, type, rng);
    const std::vector<std::vector<float>> qs = {random_floats(40, rng), random_floats(40, rng)};
    for_each_simd_target([&] {
      const auto got = run_attend(c, qs, {1, 1}, 0.5f);
      for (const auto& out : got)
        for (std::int64_t i = 0; i < 40; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], static_cast<float>(c.v_at(0, i)));
    });
  }
}

TEST(Attention, BadArgumentsAreErrors) {
  std::mt19937 rng(43);
  const Cache c = random_cache(64, 8, GgmlType::F16, rng);
  const std::vector<float> q_row = random_floats(64, rng);
  std::vector<float> out_row(64), scratch(attend_scratch_floats(1, 8, 64));
  const float* q = q_row.data();
  float* out = out_row.data();
  const std::int64_t eight = 8, zero = 0;
  const auto call = [&](const std::int64_t* n_visible, std::int64_t n_q, std::size_t stride, GgmlType type, std::int64_t head_dim,
                        std::size_t scratch_floats) {
    attend(&q, n_visible, n_q, c.k_head(), c.v_head(), stride, type, head_dim, 0.125f, scratch.data(), scratch_floats, &out);
  };
  EXPECT_NO_THROW(call(&eight, 1, c.stride(), GgmlType::F16, 64, scratch.size()));
  EXPECT_THROW(call(&eight, -1, c.stride(), GgmlType::F16, 64, scratch.size()), Error);
  EXPECT_THROW(call(&zero, 1, c.stride(), GgmlType::F16, 64, scratch.size()), Error);
  EXPECT_THROW(call(&eight, 1, c.stride(), GgmlType::Q8_0, 64, scratch.size()), Error);
  EXPECT_THROW(call(&eight, 1, c.stride(), GgmlType::F16, 0, scratch.size()), Error);
  EXPECT_THROW(call(&eight, 1, 64, GgmlType::F16, 64, scratch.size()), Error);  // 64 bytes < 64 halves
  EXPECT_THROW(call(&eight, 1, c.stride(), GgmlType::F16, 64, scratch.size() - 1), Error);
  EXPECT_THROW(attend(&q, &eight, 1, nullptr, c.v_head(), c.stride(), GgmlType::F16, 64, 0.125f, scratch.data(), scratch.size(), &out),
               Error);
  EXPECT_THROW(reference::attend(&q, &zero, 1, c.k_head(), c.v_head(), c.stride(), GgmlType::F16, 64, 0.125f, &out), Error);
  EXPECT_THROW(attend_scratch_floats(-1, 8, 64), Error);
}

}  // namespace
}  // namespace piquant
