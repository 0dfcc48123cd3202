// Edge cases of the Q4_K / Q5_K integer kernels, with blocks built byte by byte: extreme
// codes and scales, every packed-scale bit pattern, rows of one super-block and rows of
// many, and one block whose result is worked out by hand from the format's definition.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "kernel_test_support.h"
#include "kernels/q8_activations.h"
#include "kernels/q8_matmul.h"
#include "quant/block_formats.h"
#include "quant/dequantize.h"

namespace piquant {
namespace {

using namespace kernel_test;

constexpr std::int64_t kSuper = 256;

std::size_t block_bytes(GgmlType type) { return type == GgmlType::Q4_K ? sizeof(BlockQ4_K) : sizeof(BlockQ5_K); }

// A row of super-blocks; fill(block_index, bytes) writes each block's bytes.
template <class Fill>
std::vector<std::uint8_t> make_row(GgmlType type, std::int64_t cols, Fill&& fill) {
  const std::size_t bytes = block_bytes(type);
  std::vector<std::uint8_t> row(static_cast<std::size_t>(cols / kSuper) * bytes);
  for (std::size_t b = 0; b * bytes < row.size(); ++b) fill(b, row.data() + b * bytes);
  return row;
}

void put_f16(std::uint8_t* at, float v) {
  const std::uint16_t h = f32_to_f16(v);
  std::memcpy(at, &h, 2);
}

// Runs the kernel on one row and one token on every SIMD target and compares with the
// dequantized weights times the dequantized activations, summed in double.
void expect_matches_reference(GgmlType type, const std::vector<std::uint8_t>& row, const std::vector<float>& x) {
  const auto cols = static_cast<std::int64_t>(x.size());
  Q8Activations q;
  q.quantize(x.data(), 1, cols);
  std::vector<float> w(x.size()), xq(x.size());
  dequantize_row(type, row.data(), w.data(), cols);
  q.dequantize(0, xq.data());
  double ref = 0, magnitude = 0;
  for (std::size_t c = 0; c < x.size(); ++c) {
    ref += static_cast<double>(w[c]) * xq[c];
    magnitude += std::fabs(static_cast<double>(w[c]) * xq[c]);
  }
  const MatrixView view{type, row.data(), 1, cols, row.size()};
  for_each_simd_target([&] {
    const Q8MatmulRows kernel = find_q8_matmul_k32(type);
    ASSERT_NE(kernel, nullptr);
    float y = NAN;
    kernel(view, q, &y, 0, 1);
    EXPECT_NEAR(y, ref, 1e-5 * magnitude + 1e-30) << ggml_type_name(type) << " cols " << cols;
  });
}

std::vector<float> random_activations(std::int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(cols));
  for (float& v : x) v = normal(rng);
  return x;
}

class Q8K32Edge : public testing::TestWithParam<GgmlType> {};

TEST_P(Q8K32Edge, LargestCodesScalesAndMins) {
  const GgmlType type = GetParam();
  // Every code at its maximum (15 or 31), every 6-bit scale and min 63, large f16 scales.
  const auto row = make_row(type, kSuper, [&](std::size_t, std::uint8_t* b) {
    std::memset(b, 0xff, block_bytes(type));
    put_f16(b, 60000.0f);
    put_f16(b + 2, 30000.0f);
  });
  std::vector<float> plus(kSuper, 3.0f), alternating(kSuper);
  for (std::size_t i = 0; i < alternating.size(); ++i) alternating[i] = i % 2 ? -2.0f : 2.0f;
  expect_matches_reference(type, row, plus);
  expect_matches_reference(type, row, alternating);
}

TEST_P(Q8K32Edge, ZeroCodesLeaveOnlyTheMins) {
  const GgmlType type = GetParam();
  const auto row = make_row(type, 2 * kSuper, [&](std::size_t i, std::uint8_t* b) {
    std::memset(b, 0, block_bytes(type));
    put_f16(b, 0.5f);
    put_f16(b + 2, 0.25f + static_cast<float>(i));
    for (int k = 4; k < 16; ++k) b[k] = static_cast<std::uint8_t>(0x35 + 17 * k);  // nonzero mins everywhere
  });
  std::mt19937 rng(3);
  expect_matches_reference(type, row, random_activations(2 * kSuper, rng));
}

TEST_P(Q8K32Edge, EveryBytePatternWithFiniteScales) {
  // Random bytes everywhere but d and dmin: all bit patterns of the packed scales and
  // mins (including their top two bits), codes and Q5_K high bits.
  const GgmlType type = GetParam();
  std::mt19937 rng(11);
  for (int trial = 0; trial < 8; ++trial) {
    const auto row = make_row(type, 3 * kSuper, [&](std::size_t, std::uint8_t* b) {
      for (std::size_t k = 0; k < block_bytes(type); ++k) b[k] = static_cast<std::uint8_t>(rng());
      put_f16(b, std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f, -static_cast<int>(rng() % 20)));
      put_f16(b + 2, std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f, -static_cast<int>(rng() % 20)));
    });
    expect_matches_reference(type, row, random_activations(3 * kSuper, rng));
  }
}

TEST_P(Q8K32Edge, SingleSuperBlockAndLongRows) {
  const GgmlType type = GetParam();
  std::mt19937 rng(5);
  // 14336 columns: 56 super-blocks, more than one chunk of factors and a partial one.
  for (const std::int64_t cols : {kSuper, std::int64_t{14336}}) {
    const auto row = make_row(type, cols, [&](std::size_t, std::uint8_t* b) {
      for (std::size_t k = 0; k < block_bytes(type); ++k) b[k] = static_cast<std::uint8_t>(rng());
      put_f16(b, 0.01f);
      put_f16(b + 2, 0.003f);
    });
    expect_matches_reference(type, row, random_activations(cols, rng));
  }
}

TEST_P(Q8K32Edge, HandWorkedBlock) {
  // Only sub-block 5 is non-zero: scale 33 = 0b100001 (low nibble in byte 9, top bits in
  // byte 1) and min 18 = 0b010010 (high nibble of byte 9, top bits in byte 5). Sub-block
  // 5 is the high nibbles of qs[64..96). Activations of block 5 have max |x| = 127, so
  // their scale is 1 and the Q8 values are the activations themselves.
  const GgmlType type = GetParam();
  const bool five = type == GgmlType::Q5_K;
  const auto row = make_row(type, kSuper, [&](std::size_t, std::uint8_t* b) {
    std::memset(b, 0, block_bytes(type));
    put_f16(b, 1.0f);
    put_f16(b + 2, 0.5f);
    b[4 + 1] = 0x80;
    b[4 + 5] = 0x40;
    b[4 + 9] = 0x21;
    std::uint8_t* qs = b + (five ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs));
    for (int l = 0; l < 32; ++l) qs[64 + l] = static_cast<std::uint8_t>((l % 16) << 4 | 0x0f);  // low nibbles: sub-block 4, scale 0
    if (five)
      for (int l = 0; l < 32; l += 2) b[offsetof(BlockQ5_K, qh) + l] = 1 << 5;  // 5th bit of sub-block 5, even l
  });
  std::vector<float> x(kSuper, 0.0f);
  double expected = 0;
  for (int l = 0; l < 32; ++l) {
    const int xv = l == 7 ? 127 : (l % 7) - 3;
    x[160 + l] = static_cast<float>(xv);
    const int q = (l % 16) + (five && l % 2 == 0 ? 16 : 0);
    expected += (1.0 * 33 * q - 0.5 * 18) * xv;
  }
  Q8Activations a;
  a.quantize(x.data(), 1, kSuper);
  ASSERT_EQ(a.token(0).scales[5], 1.0f);
  const MatrixView view{type, row.data(), 1, kSuper, row.size()};
  for_each_simd_target([&] {
    float y = NAN;
    find_q8_matmul_k32(type)(view, a, &y, 0, 1);
    EXPECT_EQ(y, expected);
  });
}

// Prompts: tokens go through the kernel in groups (4, or 8 on AVX-512; each weight block
// decoded once per group) and the leftovers one by one. Every token of every row must match its own
// reference, so a mixed-up token, scale or min term shows.
void expect_tokens_match_reference(GgmlType type, const std::vector<std::uint8_t>& rows, std::int64_t n_rows,
                                   const std::vector<std::vector<float>>& tokens, Q8Blocks blocks) {
  const auto cols = static_cast<std::int64_t>(tokens[0].size());
  const auto n_tokens = static_cast<std::int64_t>(tokens.size());
  std::vector<float> x;
  for (const auto& t : tokens) x.insert(x.end(), t.begin(), t.end());
  Q8Activations q;
  q.quantize(x.data(), n_tokens, cols, blocks);
  const std::size_t row_bytes = rows.size() / static_cast<std::size_t>(n_rows);
  std::vector<double> ref(static_cast<std::size_t>(n_tokens * n_rows)), magnitude(ref.size());
  std::vector<float> w(static_cast<std::size_t>(cols)), xq(w.size());
  for (std::int64_t r = 0; r < n_rows; ++r) {
    dequantize_row(type, rows.data() + r * row_bytes, w.data(), cols);
    for (std::int64_t t = 0; t < n_tokens; ++t) {
      q.dequantize(t, xq.data());
      const auto at = static_cast<std::size_t>(t * n_rows + r);
      for (std::size_t c = 0; c < w.size(); ++c) {
        ref[at] += static_cast<double>(w[c]) * xq[c];
        magnitude[at] += std::fabs(static_cast<double>(w[c]) * xq[c]);
      }
    }
  }
  const MatrixView view{type, rows.data(), n_rows, cols, row_bytes};
  for_each_simd_target([&] {
    std::vector<float> y(ref.size(), NAN);
    find_q8_matmul_k32(type)(view, q, y.data(), 0, n_rows);
    for (std::size_t i = 0; i < y.size(); ++i) {
      EXPECT_NEAR(y[i], ref[i], 1e-5 * magnitude[i] + 1e-30)
          << ggml_type_name(type) << " token " << i / n_rows << " row " << i % n_rows;
    }
  });
}

TEST_P(Q8K32Edge, FourTokensAtOnceAndLeftovers) {
  const GgmlType type = GetParam();
  std::mt19937 rng(17);
  const std::int64_t cols = 5 * kSuper, n_rows = 3;
  // Row 0: every code, scale and min at its largest; rows 1-2: random bytes.
  std::vector<std::uint8_t> rows;
  for (std::int64_t r = 0; r < n_rows; ++r) {
    const auto row = make_row(type, cols, [&](std::size_t, std::uint8_t* b) {
      if (r == 0) {
        std::memset(b, 0xff, block_bytes(type));
      } else {
        for (std::size_t k = 0; k < block_bytes(type); ++k) b[k] = static_cast<std::uint8_t>(rng());
      }
      put_f16(b, r == 0 ? 60000.0f : 0.02f);
      put_f16(b + 2, r == 0 ? 30000.0f : 0.005f);
    });
    rows.insert(rows.end(), row.begin(), row.end());
  }
  // Tokens 0-3 go through the 4-token kernel, 4-6 one by one: random, all zeros (must
  // stay exactly 0 next to the others), one constant (every code ±127), alternating signs,
  // one spike that rounds the rest of its block to 0, random again.
  const auto n = static_cast<std::size_t>(cols);
  std::vector<float> zeros(n, 0.0f), constant(n, -3.0f), alternating(n), spike = random_activations(cols, rng);
  for (std::size_t i = 0; i < n; ++i) alternating[i] = i % 2 ? -2.0f : 2.0f;
  spike[300] = 1e4f;
  const std::vector<std::vector<float>> tokens = {random_activations(cols, rng), zeros, constant, alternating,
                                                  spike, random_activations(cols, rng), zeros};
  expect_tokens_match_reference(type, rows, n_rows, tokens, Q8Blocks::Q8_K);
  // The same tokens in another order: the all-zero token in the last slot of a group of 4.
  expect_tokens_match_reference(type, rows, n_rows, {spike, constant, alternating, zeros, tokens[0]}, Q8Blocks::Q8_K);
  // Q8_0 activations (a scale per 32 columns rather than per 256): the 4-token kernel
  // splits d·sc·dx only where dx is the same over a super-block, so these take its other path.
  expect_tokens_match_reference(type, rows, n_rows, tokens, Q8Blocks::Q8_0);
  // 14 tokens: a group of 8 (AVX-512's group kernel, rows 0-1 as a pair, row 2 alone) or
  // groups of 4 elsewhere, then leftovers.
  std::vector<std::vector<float>> twice = tokens;
  twice.insert(twice.end(), tokens.begin(), tokens.end());
  expect_tokens_match_reference(type, rows, n_rows, twice, Q8Blocks::Q8_K);
  expect_tokens_match_reference(type, rows, n_rows, twice, Q8Blocks::Q8_0);
}

TEST_P(Q8K32Edge, FourTokensOverLongRows) {
  // 14336 columns: more than one chunk of factors (16 super-blocks) and a partial one, for
  // 8 tokens (two groups of 4).
  const GgmlType type = GetParam();
  std::mt19937 rng(23);
  const std::int64_t cols = 14336;
  const auto row = make_row(type, cols, [&](std::size_t, std::uint8_t* b) {
    for (std::size_t k = 0; k < block_bytes(type); ++k) b[k] = static_cast<std::uint8_t>(rng());
    put_f16(b, 0.01f);
    put_f16(b + 2, 0.003f);
  });
  std::vector<std::vector<float>> tokens;
  for (int t = 0; t < 8; ++t) tokens.push_back(random_activations(cols, rng));
  expect_tokens_match_reference(type, row, 1, tokens, Q8Blocks::Q8_K);
  // Two such rows: AVX-512 takes them as a pair.
  std::vector<std::uint8_t> two_rows = row;
  const auto other = make_row(type, cols, [&](std::size_t, std::uint8_t* b) {
    for (std::size_t k = 0; k < block_bytes(type); ++k) b[k] = static_cast<std::uint8_t>(rng());
    put_f16(b, 0.02f);
    put_f16(b + 2, 0.001f);
  });
  two_rows.insert(two_rows.end(), other.begin(), other.end());
  expect_tokens_match_reference(type, two_rows, 2, tokens, Q8Blocks::Q8_K);
  // Q8_0 activations whose scales are all equal over the first chunk of 16 super-blocks
  // (values ±2) and vary after it: the kernel changes path in the middle of the row.
  for (std::size_t t = 0; t < tokens.size(); ++t)
    for (std::size_t i = 0; i < 16 * kSuper; ++i) tokens[t][i] = (i * 7 + t) % 3 ? 2.0f : -2.0f;
  expect_tokens_match_reference(type, row, 1, tokens, Q8Blocks::Q8_0);
}

TEST(Q8K32, OtherTypesHaveNoKernelHere) {
  EXPECT_EQ(find_q8_matmul_k32(GgmlType::Q6_K), nullptr);
  EXPECT_EQ(find_q8_matmul_k32(GgmlType::Q4_0), nullptr);
  EXPECT_EQ(find_q8_matmul_k32(GgmlType::F32), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Types, Q8K32Edge, testing::Values(GgmlType::Q4_K, GgmlType::Q5_K),
                         [](const testing::TestParamInfo<GgmlType>& info) { return ggml_type_name(info.param); });

}  // namespace
}  // namespace piquant
