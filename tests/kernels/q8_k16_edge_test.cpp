// Edge cases of the Q8 integer kernels for Q2_K, Q3_K and Q6_K, on every SIMD target:
// blocks built byte by byte with extreme codes (every bit set, every bit clear, Q6_K
// scales of -128, Q3_K scales at both ends of their offset range), arbitrary bytes, a
// row of a single super-block and rows of 14336 columns; each against 5 different tokens
// (the 4-token kernel and the 1-token one) quantized as Q8_K and as Q8_0. The reference
// is the scalar decoder (dequantize_row) times the dequantized activations, summed in
// double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
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

constexpr std::size_t kQ2Bytes = sizeof(BlockQ2_K), kQ3Bytes = sizeof(BlockQ3_K), kQ6Bytes = sizeof(BlockQ6_K);

std::size_t block_bytes(GgmlType type) {
  return type == GgmlType::Q2_K ? kQ2Bytes : type == GgmlType::Q3_K ? kQ3Bytes : kQ6Bytes;
}

void put_half(std::uint8_t* p, float v) {
  const std::uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, sizeof(h));
}

// Fills the super-block at p: every byte `fill` except the f16 scales (d, and dmin for
// Q2_K), which are set to finite values; `patch` then edits single fields.
using Patch = std::function<void(std::uint8_t* block)>;

void fill_block(GgmlType type, std::uint8_t* p, std::uint8_t fill, float d, const Patch& patch) {
  std::memset(p, fill, block_bytes(type));
  if (patch) patch(p);
  switch (type) {
    case GgmlType::Q2_K:
      put_half(p + offsetof(BlockQ2_K, d), d);
      put_half(p + offsetof(BlockQ2_K, dmin), d * 0.75f);
      break;
    case GgmlType::Q3_K: put_half(p + offsetof(BlockQ3_K, d), d); break;
    default: put_half(p + offsetof(BlockQ6_K, d), d); break;
  }
}

struct Row {
  GgmlType type;
  std::int64_t cols;
  std::vector<std::uint8_t> bytes;
};

Row uniform_row(GgmlType type, std::int64_t cols, std::uint8_t fill, const Patch& patch = {}) {
  Row r{type, cols, std::vector<std::uint8_t>(static_cast<std::size_t>(cols / kQkK) * block_bytes(type))};
  for (std::int64_t b = 0; b < cols / kQkK; ++b)
    fill_block(type, r.bytes.data() + b * block_bytes(type), fill, 0.5f + 0.125f * static_cast<float>(b % 7), patch);
  return r;
}

// Arbitrary bytes everywhere but the f16 scales: every bit pattern a file can hold.
Row random_row(GgmlType type, std::int64_t cols, std::mt19937& rng) {
  Row r = uniform_row(type, cols, 0);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-2.0f, 2.0f);
  for (std::int64_t b = 0; b < cols / kQkK; ++b) {
    std::uint8_t* p = r.bytes.data() + b * block_bytes(type);
    fill_block(type, p, 0, scale(rng), [&](std::uint8_t* q) {
      for (std::size_t i = 0; i < block_bytes(type); ++i) q[i] = static_cast<std::uint8_t>(byte(rng));
    });
  }
  return r;
}

// Q2_K's two terms can cancel: bound the error by the size of each term separately, read
// off the decoder with the mins or the scales zeroed.
std::vector<double> term_magnitudes(const Row& r) {
  std::vector<float> w(static_cast<std::size_t>(r.cols));
  dequantize_row(r.type, r.bytes.data(), w.data(), r.cols);
  std::vector<double> m(w.begin(), w.end());
  for (double& v : m) v = std::fabs(v);
  if (r.type == GgmlType::Q2_K) {
    for (const std::uint8_t keep : {0x0f, 0xf0}) {
      std::vector<std::uint8_t> part = r.bytes;
      for (std::size_t b = 0; b < part.size(); b += kQ2Bytes)
        for (int s = 0; s < 16; ++s) part[b + offsetof(BlockQ2_K, scales) + s] &= keep;
      dequantize_row(r.type, part.data(), w.data(), r.cols);
      for (std::size_t i = 0; i < m.size(); ++i) m[i] += std::fabs(w[i]);
    }
  }
  return m;
}

// Every token of `tokens` (n × cols floats) against the reference, with activations
// quantized both ways a kernel may see them: Q8_K (one scale per 256 columns, what
// llama.cpp pairs with these types) and Q8_0 (a scale per 32 columns). Whole groups of
// tokens (4, or 8 on AVX-512) go through the group kernel, the rest through the 1-token one.
void expect_tokens_match_reference(const Row& r, const std::vector<float>& tokens) {
  const std::int64_t n = static_cast<std::int64_t>(tokens.size()) / r.cols;
  std::vector<float> w(static_cast<std::size_t>(r.cols)), xq(static_cast<std::size_t>(r.cols));
  dequantize_row(r.type, r.bytes.data(), w.data(), r.cols);
  const std::vector<double> magnitude = term_magnitudes(r);
  const MatrixView view{r.type, r.bytes.data(), 1, r.cols, r.bytes.size()};
  for (const Q8Blocks blocks : {Q8Blocks::Q8_K, Q8Blocks::Q8_0}) {
    SCOPED_TRACE(blocks == Q8Blocks::Q8_K ? "Q8_K activations" : "Q8_0 activations");
    Q8Activations q;
    q.quantize(tokens.data(), n, r.cols, blocks);
    std::vector<double> ref(static_cast<std::size_t>(n)), bound(static_cast<std::size_t>(n));
    for (std::int64_t t = 0; t < n; ++t) {
      q.dequantize(t, xq.data());
      for (std::size_t i = 0; i < w.size(); ++i) {
        ref[t] += static_cast<double>(w[i]) * xq[i];
        bound[t] += magnitude[i] * std::fabs(xq[i]);
      }
    }
    for_each_simd_target([&] {
      const Q8MatmulRows kernel = find_q8_matmul_k16(r.type);
      ASSERT_NE(kernel, nullptr);
      std::vector<float> y(static_cast<std::size_t>(n), -1.0f);
      kernel(view, q, y.data(), 0, 1);
      for (std::int64_t t = 0; t < n; ++t) {
        EXPECT_NEAR(y[t], ref[t], 1e-5 * bound[t] + 1e-30) << ggml_type_name(r.type) << " cols " << r.cols << " token " << t;
      }
    });
  }
}

// x as 5 tokens, each with its own scales: x, all zeros, -2.5x, x times 1, 2 or 3 per
// block of 32 with every fourth block zeroed (Q8_0 scales that differ per block and from
// the other tokens'), and x again; then the 5 once more. The 10 tokens pass through each
// target's group kernel (groups of 4, or 8 on AVX-512) and the 1-token kernel.
void expect_matches_reference(const Row& r, const std::vector<float>& x) {
  std::vector<float> tokens;
  tokens.insert(tokens.end(), x.begin(), x.end());
  tokens.insert(tokens.end(), x.size(), 0.0f);
  for (const float v : x) tokens.push_back(-2.5f * v);
  for (std::size_t i = 0; i < x.size(); ++i) {
    tokens.push_back((i / 32) % 4 == 3 ? 0.0f : x[i] * static_cast<float>(1 + (i / 32) % 3));
  }
  tokens.insert(tokens.end(), x.begin(), x.end());
  const std::vector<float> five = tokens;
  tokens.insert(tokens.end(), five.begin(), five.end());
  expect_tokens_match_reference(r, tokens);
}

// Activations that quantize to ±127 in every column (the largest products), alternating
// sign per block of 32 so that the per-block activation scales matter.
std::vector<float> extreme_activations(std::int64_t cols, float sign) {
  std::vector<float> x(static_cast<std::size_t>(cols));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = sign * ((i / 32) % 2 == 0 ? 1.0f : -3.0f);
  return x;
}

std::vector<float> random_activations(std::int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(cols));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i % 61 == 7 ? 30.0f : 1.0f) * normal(rng);
  return x;
}

const GgmlType kK16Types[] = {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q6_K};

class Q8K16Edge : public testing::TestWithParam<GgmlType> {};

TEST_P(Q8K16Edge, EveryBitSetAndEveryBitClear) {
  const GgmlType type = GetParam();
  for (const std::uint8_t fill : {std::uint8_t{0x00}, std::uint8_t{0xff}, std::uint8_t{0xaa}, std::uint8_t{0x55}}) {
    SCOPED_TRACE("fill " + std::to_string(fill));
    for (const float sign : {1.0f, -1.0f}) expect_matches_reference(uniform_row(type, 2 * kQkK, fill), extreme_activations(2 * kQkK, sign));
  }
}

TEST(Q8K16Edge, Q6KLargestProductsDoNotOverflow) {
  // Scales -128 and q6 = 0 (weight code -32): each product is 128 · 32 · 127, the most
  // any Q6_K byte pattern gives; with all activations at -127 every sum adds up.
  const Row r = uniform_row(GgmlType::Q6_K, 14336, 0x00, [](std::uint8_t* b) {
    std::memset(b + offsetof(BlockQ6_K, scales), 0x80, 16);
  });
  std::vector<float> x(14336, -1.0f);
  expect_matches_reference(r, x);
  // Independently of the decoder: every weight is d · (-128) · (-32), every activation -1.
  // 5 equal tokens: the 4-token kernel and the 1-token one.
  std::vector<float> tokens;
  for (int t = 0; t < 5; ++t) tokens.insert(tokens.end(), x.begin(), x.end());
  Q8Activations q;
  q.quantize(tokens.data(), 5, 14336, Q8Blocks::Q8_K);  // scale 1/127 exactly as a float: x̂ = -1
  const MatrixView view{GgmlType::Q6_K, r.bytes.data(), 1, 14336, r.bytes.size()};
  double expected = 0;
  for (std::int64_t b = 0; b < 14336 / kQkK; ++b) expected += 4096.0 * (0.5 + 0.125 * (b % 7)) * kQkK;
  for_each_simd_target([&] {
    float y[5] = {};
    find_q8_matmul_k16(GgmlType::Q6_K)(view, q, y, 0, 1);
    for (const float v : y) EXPECT_NEAR(v, -expected, 1e-5 * expected);
  });
}

TEST(Q8K16Edge, Q3KScalesAtBothEndsAndEveryHmaskPattern) {
  // Packed scales all 0 (scale -32) or all ones (scale 31), hmask all set or all clear.
  for (const std::uint8_t scales : {std::uint8_t{0x00}, std::uint8_t{0xff}}) {
    for (const std::uint8_t hmask : {std::uint8_t{0x00}, std::uint8_t{0xff}}) {
      for (const std::uint8_t qs : {std::uint8_t{0x00}, std::uint8_t{0xff}, std::uint8_t{0x1b}}) {
        SCOPED_TRACE(std::to_string(scales) + " " + std::to_string(hmask) + " " + std::to_string(qs));
        const Row r = uniform_row(GgmlType::Q3_K, kQkK, qs, [&](std::uint8_t* b) {
          std::memset(b + offsetof(BlockQ3_K, scales), scales, 12);
          std::memset(b + offsetof(BlockQ3_K, hmask), hmask, 32);
        });
        expect_matches_reference(r, extreme_activations(kQkK, -1.0f));
      }
    }
  }
}

TEST(Q8K16Edge, Q2KLargestScalesAndMins) {
  const Row r = uniform_row(GgmlType::Q2_K, 4 * kQkK, 0xff);  // scale 15, min 15, q 3
  expect_matches_reference(r, extreme_activations(4 * kQkK, 1.0f));
  std::mt19937 rng(3);
  expect_matches_reference(r, random_activations(4 * kQkK, rng));
}

TEST_P(Q8K16Edge, ArbitraryBytesInOneSuperBlockAndInLongRows) {
  const GgmlType type = GetParam();
  std::mt19937 rng(static_cast<unsigned>(type) + 11);
  for (const std::int64_t cols : {std::int64_t{kQkK}, std::int64_t{3 * kQkK}, std::int64_t{14336}}) {
    for (int trial = 0; trial < 3; ++trial) expect_matches_reference(random_row(type, cols, rng), random_activations(cols, rng));
  }
}

TEST_P(Q8K16Edge, EachSubBlockUsesItsOwnScale) {
  // One non-zero sub-block at a time: a kernel that mixes up sub-blocks (or the halves of
  // a 32-column activation block) gets a wrong result for some position.
  const GgmlType type = GetParam();
  std::mt19937 rng(7);
  const Row base = random_row(type, kQkK, rng);
  const std::vector<float> x = random_activations(kQkK, rng);
  for (int sub = 0; sub < 16; ++sub) {
    SCOPED_TRACE("sub-block " + std::to_string(sub));
    Row r = base;
    std::uint8_t* b = r.bytes.data();
    if (type == GgmlType::Q6_K) {
      for (int s = 0; s < 16; ++s) b[offsetof(BlockQ6_K, scales) + s] = s == sub ? 0x81 : 0;
    } else if (type == GgmlType::Q2_K) {
      for (int s = 0; s < 16; ++s) b[offsetof(BlockQ2_K, scales) + s] = s == sub ? 0x9f : 0;
    } else {
      // Stored 32 (scale 0) everywhere but sub, stored 1 (scale -31) there.
      std::uint8_t packed[12] = {};
      for (int s = 0; s < 16; ++s) {
        const int stored = s == sub ? 1 : 32;
        packed[s % 8] |= static_cast<std::uint8_t>((stored & 0x0f) << (s < 8 ? 0 : 4));
        packed[8 + s % 4] |= static_cast<std::uint8_t>(((stored >> 4) & 3) << (2 * (s / 4)));
      }
      std::memcpy(b + offsetof(BlockQ3_K, scales), packed, 12);
    }
    expect_matches_reference(r, x);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, Q8K16Edge, testing::ValuesIn(kK16Types),
                         [](const testing::TestParamInfo<GgmlType>& info) { return ggml_type_name(info.param); });

}  // namespace
}  // namespace piquant
