// Edge cases of the integer Q8 kernels of the legacy block types (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1), on every SIMD target: blocks built byte by byte with extreme codes (every nibble
// 0 or 15, every 5th bit set or clear, int8 -128 as llama.cpp's Q8_0 files may hold),
// subnormal and huge f16 scales, one-hot activations that pin down each element's
// position in the block, a single-block row, 14336-column rows and unaligned rows, and
// groups of 4 tokens (the prompt kernel) next to leftover single tokens.
// Expected values come from hand arithmetic or from the layout as ggml documents it
// (decoded here independently of quant/dequantize.cpp), and from dequantize_row.
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
#include "kernels/matrix_view.h"
#include "kernels/q8_activations.h"
#include "kernels/q8_matmul.h"
#include "quant/block_formats.h"
#include "quant/dequantize.h"

namespace piquant {
namespace {

using namespace kernel_test;

const GgmlType kLegacyTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1};

std::size_t block_bytes(GgmlType type) { return static_cast<std::size_t>(ggml_nbytes(type, kQk)); }
bool has_min(GgmlType type) { return type == GgmlType::Q4_1 || type == GgmlType::Q5_1; }
bool has_qh(GgmlType type) { return type == GgmlType::Q5_0 || type == GgmlType::Q5_1; }

void put_f16(std::uint8_t* p, float v) {
  const std::uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Byte offsets of the fields inside one block (the ggml layouts of block_formats.h).
std::size_t qh_offset(GgmlType type) { return type == GgmlType::Q5_0 ? 2 : 4; }
std::size_t qs_offset(GgmlType type) {
  switch (type) {
    case GgmlType::Q8_0: case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 4;
    case GgmlType::Q5_0: return 6;
    default: return 8;  // Q5_1
  }
}

// One block: scale d, min m (Q4_1/Q5_1), code bytes (16 nibble pairs or 32 int8) and qh.
std::vector<std::uint8_t> make_block(GgmlType type, float d, float m, const std::vector<std::uint8_t>& qs,
                                     std::uint32_t qh) {
  std::vector<std::uint8_t> b(block_bytes(type), 0);
  put_f16(b.data(), d);
  if (has_min(type)) put_f16(b.data() + 2, m);
  if (has_qh(type)) {
    for (int i = 0; i < 4; ++i) b[qh_offset(type) + i] = static_cast<std::uint8_t>(qh >> (8 * i));
  }
  const std::size_t n_qs = type == GgmlType::Q8_0 ? kQk : kQk / 2;
  for (std::size_t i = 0; i < n_qs; ++i) b[qs_offset(type) + i] = qs[i % qs.size()];
  return b;
}

// Element e of a block, read from the documented layout (not through dequantize.cpp).
double layout_value(GgmlType type, const std::uint8_t* b, int e) {
  std::uint16_t dh = 0, mh = 0;
  std::memcpy(&dh, b, 2);
  std::memcpy(&mh, b + 2, 2);
  const double d = f16_to_f32(dh), m = f16_to_f32(mh);
  if (type == GgmlType::Q8_0) return d * static_cast<std::int8_t>(b[2 + e]);
  const std::uint8_t byte = b[qs_offset(type) + e % 16];
  int q = e < 16 ? (byte & 15) : (byte >> 4);
  if (has_qh(type)) {
    std::uint32_t qh = 0;
    for (int i = 0; i < 4; ++i) qh |= static_cast<std::uint32_t>(b[qh_offset(type) + i]) << (8 * i);
    q |= static_cast<int>((qh >> e) & 1u) << 4;
  }
  switch (type) {
    case GgmlType::Q4_0: return d * (q - 8);
    case GgmlType::Q5_0: return d * (q - 16);
    default: return d * q + m;  // Q4_1, Q5_1
  }
}

// The kernel's result for every token of x against the one-row-or-more matrix, on the
// SIMD target in force.
std::vector<float> run_kernel(const MatrixView& w, const Q8Activations& x) {
  const Q8MatmulRows kernel = find_q8_matmul(w.type);
  EXPECT_NE(kernel, nullptr);
  std::vector<float> y(static_cast<std::size_t>(w.rows * x.n_tokens()), NAN);
  if (kernel != nullptr) kernel(w, x, y.data(), 0, w.rows);
  return y;
}

// Reference y[t][r] in double from dequantize_row and the dequantized activations, and a
// bound on its rounding: Σ (|w| + 2|m|)·|x| covers d·q and m cancelling inside w.
struct Reference {
  std::vector<double> y, magnitude;
};

Reference reference(const MatrixView& w, const Q8Activations& x) {
  Reference ref;
  std::vector<float> wr(static_cast<std::size_t>(w.cols)), xr(static_cast<std::size_t>(w.cols));
  for (std::int64_t t = 0; t < x.n_tokens(); ++t) {
    x.dequantize(t, xr.data());
    for (std::int64_t r = 0; r < w.rows; ++r) {
      dequantize_row(w.type, w.row(r), wr.data(), w.cols);
      double sum = 0, magnitude = 0;
      for (std::int64_t c = 0; c < w.cols; ++c) {
        double m = 0;
        if (has_min(w.type)) {
          std::uint16_t mh = 0;
          std::memcpy(&mh, w.row(r) + static_cast<std::size_t>(c / kQk) * block_bytes(w.type) + 2, 2);
          m = std::fabs(f16_to_f32(mh));
        }
        sum += static_cast<double>(wr[c]) * xr[c];
        magnitude += (std::fabs(wr[c]) + 2 * m) * std::fabs(xr[c]);
      }
      ref.y.push_back(sum);
      ref.magnitude.push_back(magnitude);
    }
  }
  return ref;
}

void expect_matches_reference(const MatrixView& w, const Q8Activations& x) {
  const Reference ref = reference(w, x);
  for_each_simd_target([&] {
    const std::vector<float> y = run_kernel(w, x);
    for (std::size_t i = 0; i < y.size(); ++i) {
      ASSERT_TRUE(std::isfinite(y[i])) << "output " << i;
      ASSERT_NEAR(y[i], ref.y[i], 1e-5 * ref.magnitude[i] + 1e-30) << "output " << i;
    }
  });
}

MatrixView view_of(GgmlType type, const std::uint8_t* data, std::int64_t rows, std::int64_t cols) {
  return MatrixView{type, data, rows, cols, static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(cols)))};
}

Q8Activations quantized(const std::vector<float>& x, std::int64_t tokens) {
  Q8Activations q;
  q.quantize(x.data(), tokens, static_cast<std::int64_t>(x.size()) / tokens);
  return q;
}

class Q8LegacyEdge : public testing::TestWithParam<GgmlType> {};

// Every extreme code pattern of one block against activations at ±127, one block per
// pattern in one long row (so the patterns also meet in both accumulators).
std::vector<std::uint8_t> extreme_code_row(GgmlType type) {
  std::vector<std::vector<std::uint8_t>> code_patterns = {{0x00}, {0xff}, {0x0f}, {0xf0}, {0x80}, {0x7f}, {0x80, 0x7f},
                                                          {0x01, 0xfe}, {0x88}, {0x77}};
  const std::uint32_t qh_patterns[] = {0u, 0xffffffffu, 0x0000ffffu, 0xffff0000u, 0xaaaaaaaau, 0x55555555u, 1u, 0x80000000u};
  std::vector<std::uint8_t> row;
  for (const auto& qs : code_patterns) {
    for (const std::uint32_t qh : qh_patterns) {
      if (!has_qh(type) && qh != 0) continue;
      for (const float d : {1.0f, -0.75f}) {
        const auto b = make_block(type, d, has_min(type) ? -3.5f * d : 0.0f, qs, qh);
        row.insert(row.end(), b.begin(), b.end());
      }
    }
  }
  return row;
}

TEST_P(Q8LegacyEdge, ExtremeCodesMatchDequantizedReference) {
  const GgmlType type = GetParam();
  const std::vector<std::uint8_t> row = extreme_code_row(type);
  const std::int64_t cols = static_cast<std::int64_t>(row.size() / block_bytes(type)) * kQk;
  const MatrixView w = view_of(type, row.data(), 1, cols);
  std::vector<float> all_max(static_cast<std::size_t>(cols), 5.0f), alternating(static_cast<std::size_t>(cols)),
      all_min(static_cast<std::size_t>(cols), -1e-3f);
  for (std::size_t i = 0; i < alternating.size(); ++i) alternating[i] = i % 2 ? 2.0f : -2.0f;
  for (const auto* x : {&all_max, &alternating, &all_min}) {
    SCOPED_TRACE(ggml_type_name(type) + " activation pattern " + std::to_string(x == &all_max ? 0 : x == &alternating ? 1 : 2));
    expect_matches_reference(w, quantized(*x, 1));
  }
}

// Prompts go through the 4-token kernel: 9 different tokens (two groups of 4 and one
// left over), among them an all-zero token and ±max ones, against the extreme-code row
// repeated over 3 rows. Each result must match the dequantized reference and, to float
// rounding, the same token multiplied alone (the 1-token kernel).
TEST_P(Q8LegacyEdge, FourTokenGroupsMatchReferenceAndSingleTokens) {
  const GgmlType type = GetParam();
  const std::vector<std::uint8_t> one_row = extreme_code_row(type);
  std::vector<std::uint8_t> rows;
  for (int r = 0; r < 3; ++r) rows.insert(rows.end(), one_row.begin(), one_row.end());
  // Rows differ: the second reversed block by block, the third shifted by one block.
  const std::size_t bb = block_bytes(type), n_blocks = one_row.size() / bb;
  for (std::size_t b = 0; b < n_blocks; ++b) {
    std::memcpy(rows.data() + one_row.size() + b * bb, one_row.data() + (n_blocks - 1 - b) * bb, bb);
    std::memcpy(rows.data() + 2 * one_row.size() + b * bb, one_row.data() + (b + 1) % n_blocks * bb, bb);
  }
  const std::int64_t cols = static_cast<std::int64_t>(n_blocks) * kQk;
  const MatrixView w = view_of(type, rows.data(), 3, cols);

  constexpr std::int64_t kTokens = 9;
  std::mt19937 rng(static_cast<unsigned>(type) + 41);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(kTokens * cols));
  for (std::int64_t t = 0; t < kTokens; ++t) {
    for (std::int64_t c = 0; c < cols; ++c) {
      float& v = x[static_cast<std::size_t>(t * cols + c)];
      switch (t) {
        case 1: case 6: v = 0.0f; break;           // all zeros, inside each group of 4
        case 2: v = 7.0f; break;                   // +127 everywhere
        case 3: v = c % 2 ? -3.0f : 3.0f; break;   // ±127 alternating
        case 4: v = -1e-3f; break;                 // -127 everywhere
        default: v = (c % 29 == 3 ? 40.0f : 1.0f) * normal(rng);
      }
    }
  }
  const Q8Activations q = quantized(x, kTokens);
  expect_matches_reference(w, q);
  // Rounding bound of both kernels: the terms cancel, so relative to Σ |w|·|x|.
  const Reference ref = reference(w, q);

  for_each_simd_target([&] {
    const std::vector<float> together = run_kernel(w, q);
    for (std::int64_t t = 0; t < kTokens; ++t) {
      const Q8Activations alone =
          quantized(std::vector<float>(x.begin() + t * cols, x.begin() + (t + 1) * cols), 1);
      const std::vector<float> y = run_kernel(w, alone);
      for (std::int64_t r = 0; r < w.rows; ++r) {
        const std::size_t i = static_cast<std::size_t>(t * w.rows + r);
        if (t == 1 || t == 6) {
          EXPECT_EQ(together[i], 0.0f) << "zero token " << t << " row " << r;
        }
        EXPECT_NEAR(together[i], y[static_cast<std::size_t>(r)], 1e-5 * ref.magnitude[i] + 1e-30)
            << "token " << t << " row " << r;
      }
    }
  });
}

// A one-hot activation reads exactly one element: element e of the block as ggml lays it
// out, for every e, with codes that differ at every position.
TEST_P(Q8LegacyEdge, OneHotActivationReadsEachElementWhereGgmlPutsIt) {
  const GgmlType type = GetParam();
  std::vector<std::uint8_t> qs(type == GgmlType::Q8_0 ? kQk : kQk / 2);
  for (std::size_t i = 0; i < qs.size(); ++i)
    qs[i] = type == GgmlType::Q8_0 ? static_cast<std::uint8_t>(static_cast<int>(i) * 8 - 128)
                                   : static_cast<std::uint8_t>(i | (15 - i) << 4);
  const auto block = make_block(type, 0.5f, 1.25f, qs, 0x9c3a61e5u);
  const MatrixView w = view_of(type, block.data(), 1, kQk);
  for_each_simd_target([&] {
    for (int e = 0; e < kQk; ++e) {
      std::vector<float> x(kQk, 0.0f);
      x[static_cast<std::size_t>(e)] = 1.0f;  // quantizes to 127 · (1/127)
      const Q8Activations q = quantized(x, 1);
      const double expected = layout_value(type, block.data(), e) * 127.0 * q.token(0).scales[0];
      EXPECT_NEAR(run_kernel(w, q)[0], expected, 1e-5 * std::fabs(expected) + 1e-6) << "element " << e;
    }
  });
}

// Values worked out by hand from the block definitions, one block each.
struct HandCase {
  GgmlType type;
  float d, m;
  std::vector<std::uint8_t> qs;
  std::uint32_t qh;
  float x;         // every activation (quantizes exactly: max |x| → 127)
  double expected;
};

TEST(Q8LegacyEdge, HandComputedBlocks) {
  const std::vector<HandCase> cases = {
      {GgmlType::Q8_0, 1.0f, 0, {0x80}, 0, 1.0f, 32 * -128.0},        // int8 -128, as llama.cpp writes
      {GgmlType::Q8_0, 0.25f, 0, {0x7f}, 0, -2.0f, 32 * 127 * 0.25 * -2.0},
      {GgmlType::Q4_0, 0.5f, 0, {0xff}, 0, 2.0f, 32 * 7 * 0.5 * 2.0},  // nibble 15 → +7
      {GgmlType::Q4_0, 0.5f, 0, {0x00}, 0, 2.0f, 32 * -8 * 0.5 * 2.0},  // nibble 0 → -8
      {GgmlType::Q4_1, 1.0f, -2.0f, {0xf0}, 0, 1.0f, 16 * -2.0 + 16 * 13.0},
      {GgmlType::Q5_0, 1.0f, 0, {0xff}, 0xffffffffu, 1.0f, 32 * 15.0},  // q = 31
      {GgmlType::Q5_0, 1.0f, 0, {0x00}, 0u, 1.0f, 32 * -16.0},          // q = 0
      {GgmlType::Q5_0, 1.0f, 0, {0x00}, 0x00010001u, 1.0f, 30 * -16.0},  // elements 0 and 16 at q = 16
      {GgmlType::Q5_1, 0.5f, 4.0f, {0xff}, 0xffffffffu, -1.0f, -32 * (31 * 0.5 + 4.0)},
      {GgmlType::Q5_1, 0.5f, 4.0f, {0x0f}, 0xffff0000u, 1.0f, 16 * (15 * 0.5 + 4.0) + 16 * (16 * 0.5 + 4.0)},
  };
  for (const HandCase& c : cases) {
    SCOPED_TRACE(ggml_type_name(c.type) + " expecting " + std::to_string(c.expected));
    const auto block = make_block(c.type, c.d, c.m, c.qs, c.qh);
    const MatrixView w = view_of(c.type, block.data(), 1, kQk);
    const Q8Activations q = quantized(std::vector<float>(kQk, c.x), 1);
    // Every activation is ±127 times the block's f16 scale, which is |x|/127 rounded:
    // the hand value per unit of activation times that.
    const double x_hat = q.token(0).values[0] * static_cast<double>(q.token(0).scales[0]);
    ASSERT_NEAR(x_hat, c.x, 1e-3 * std::fabs(c.x));
    const double expected = c.expected / c.x * x_hat;
    for_each_simd_target([&] { EXPECT_NEAR(run_kernel(w, q)[0], expected, 1e-6 * std::fabs(expected)); });
  }
}

// Subnormal, tiny and the largest finite f16 scales (and mins) convert exactly on every
// target, including those that convert f16 without hardware help.
TEST_P(Q8LegacyEdge, SubnormalAndHugeScales) {
  const GgmlType type = GetParam();
  const std::uint16_t scale_bits[] = {0x0001, 0x03ff, 0x8001, 0x0400, 0x7bff, 0xfbff, 0x3c00, 0x0000};
  std::mt19937 rng(11);
  std::vector<std::uint8_t> row;
  for (const std::uint16_t d : scale_bits) {
    for (const std::uint16_t m : {std::uint16_t{0x0002}, std::uint16_t{0xfbff}}) {
      std::vector<std::uint8_t> qs(32);
      for (auto& v : qs) v = static_cast<std::uint8_t>(rng());
      auto b = make_block(type, 0.0f, 0.0f, qs, static_cast<std::uint32_t>(rng()));
      std::memcpy(b.data(), &d, 2);
      if (has_min(type)) std::memcpy(b.data() + 2, &m, 2);
      row.insert(row.end(), b.begin(), b.end());
    }
  }
  const std::int64_t cols = static_cast<std::int64_t>(row.size() / block_bytes(type)) * kQk;
  std::vector<float> x(static_cast<std::size_t>(cols));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  expect_matches_reference(view_of(type, row.data(), 1, cols), quantized(x, 1));
}

// Random bytes (finite scales) in rows of one block and of 14336 columns (Llama 3 8B's
// MLP width), stored at an odd address so no row is aligned, with 1 to 3 tokens.
TEST_P(Q8LegacyEdge, RandomBlocksInShortLongAndUnalignedRows) {
  const GgmlType type = GetParam();
  std::mt19937 rng(static_cast<unsigned>(type) + 3);
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const std::int64_t cols : {std::int64_t{32}, std::int64_t{64}, std::int64_t{14336}}) {
    const std::int64_t rows = cols > 64 ? 3 : 5;
    const std::size_t row_bytes = static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(cols)));
    std::vector<std::uint8_t> storage(1 + row_bytes * static_cast<std::size_t>(rows));
    std::uint8_t* data = storage.data() + 1;
    for (std::size_t i = 0; i < row_bytes * static_cast<std::size_t>(rows); ++i) data[i] = static_cast<std::uint8_t>(rng());
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t b = 0; b < cols / kQk; ++b) {
        std::uint8_t* block = data + static_cast<std::size_t>(r) * row_bytes + static_cast<std::size_t>(b) * block_bytes(type);
        put_f16(block, scale(rng));
        if (has_min(type)) put_f16(block + 2, scale(rng));
      }
    }
    for (const std::int64_t tokens : {1, 3}) {
      SCOPED_TRACE(ggml_type_name(type) + " cols " + std::to_string(cols) + " tokens " + std::to_string(tokens));
      std::vector<float> x(static_cast<std::size_t>(tokens * cols));
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i % 61 == 5 ? 30.0f : 1.0f) * normal(rng);
      expect_matches_reference(view_of(type, data, rows, cols), quantized(x, tokens));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, Q8LegacyEdge, testing::ValuesIn(kLegacyTypes),
                         [](const testing::TestParamInfo<GgmlType>& info) { return ggml_type_name(info.param); });

}  // namespace
}  // namespace piquant
