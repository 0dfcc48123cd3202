// The integer Q8 kernels of every block type, on every SIMD target, against the scalar
// reference: dequantize the weights, dequantize the Q8 activations, sum in double. Then
// the activations' own rounding against float activations, bounded per column.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernel_test_support.h"
#include "kernels/matmul.h"
#include "kernels/q8_activations.h"
#include "kernels/q8_matmul.h"
#include "quant/block_formats.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace piquant {
namespace {

using namespace kernel_test;

const GgmlType kQuantTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

struct QuantMatrix {
  std::vector<std::uint8_t> blocks;
  std::vector<float> decoded;  // rows × cols, the reference's weights
  MatrixView view;
};

QuantMatrix random_matrix(GgmlType type, std::int64_t rows, std::int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto row_bytes = static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(cols)));
  QuantMatrix m;
  m.blocks.resize(row_bytes * static_cast<std::size_t>(rows));
  m.decoded.resize(static_cast<std::size_t>(rows * cols));
  std::vector<float> values(static_cast<std::size_t>(cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    // Rows of different magnitudes, some with a large outlier, as real weights have.
    const float scale = 0.01f + 0.2f * static_cast<float>(r % 5);
    for (float& v : values) v = scale * normal(rng);
    if (r % 3 == 1) values[static_cast<std::size_t>(r) % values.size()] = 8.0f * scale;
    quantize_row(type, values.data(), cols, nullptr, m.blocks.data() + r * row_bytes);
    dequantize_row(type, m.blocks.data() + r * row_bytes, m.decoded.data() + r * cols, cols);
  }
  m.view = MatrixView{type, m.blocks.data(), rows, cols, row_bytes};
  return m;
}

std::vector<float> random_activations(std::int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i % 97 == 3 ? 20.0f : 1.0f) * normal(rng);
  return x;
}

// Σ_b |m_b| · |Q8_1 block sum - scale·Σq| for types with a min per 32-block (Q4_1, Q5_1:
// f16 d at byte 0, f16 m at byte 2); 0 for the others.
double min_term_rounding(const QuantMatrix& w, const Q8Activations& q, std::int64_t r, std::int64_t t) {
  const GgmlType type = w.view.type;
  if (type != GgmlType::Q4_1 && type != GgmlType::Q5_1) return 0.0;
  const std::size_t block_bytes = ggml_type_info(type).block_bytes;
  const Q8Row x = q.token(t);
  double slack = 0;
  for (std::int64_t b = 0; b < w.view.cols / 32; ++b) {
    std::uint16_t m;
    std::memcpy(&m, w.view.row(r) + b * block_bytes + 2, 2);
    const double exact = static_cast<double>(x.scales[b]) * (x.sums16[2 * b] + x.sums16[2 * b + 1]);
    slack += std::fabs(f16_to_f32(m)) * (std::fabs(x.block_sums[b] - exact) + 1e-6 * std::fabs(exact));
  }
  return slack;
}

std::int64_t block_of(GgmlType type) { return ggml_type_info(type).block_size; }

// The type's kernel on every SIMD target, rows [0, split) then [split, rows), against the
// scalar reference on the same quantized activations, summed in double.
void expect_matches_reference(const QuantMatrix& w, const Q8Activations& q, std::int64_t split) {
  const std::int64_t tokens = q.n_tokens(), rows = w.view.rows, cols = w.view.cols;
  std::vector<float> xq(static_cast<std::size_t>(tokens * cols));
  for (std::int64_t t = 0; t < tokens; ++t) q.dequantize(t, xq.data() + t * cols);
  std::vector<float> ref(static_cast<std::size_t>(tokens * rows));
  reference::matmul(w.view, xq.data(), tokens, ref.data());
  for_each_simd_target([&] {
    const Q8MatmulRows kernel = find_q8_matmul(w.view.type);
    ASSERT_NE(kernel, nullptr);
    std::vector<float> y(ref.size(), -1.0f);
    kernel(w.view, q, y.data(), 0, split);
    kernel(w.view, q, y.data(), split, rows);
    for (std::int64_t t = 0; t < tokens; ++t) {
      for (std::int64_t r = 0; r < rows; ++r) {
        double magnitude = 0;
        for (std::int64_t c = 0; c < cols; ++c)
          magnitude += std::fabs(static_cast<double>(w.decoded[r * cols + c]) * xq[t * cols + c]);
        const std::size_t i = static_cast<std::size_t>(t * rows + r);
        // Float products of integer sums: a few roundings relative to Σ|w·x|; for
        // Q4_1/Q5_1 the min term takes Q8_1's f16-rounded block sums, up to 2^-11 off.
        const double min_term_slack = min_term_rounding(w, q, r, t);
        ASSERT_NEAR(y[i], ref[i], 1e-5 * magnitude + min_term_slack + 1e-30) << "row " << r << " token " << t;
      }
    }
  });
}

class Q8Matmul : public testing::TestWithParam<GgmlType> {};

TEST_P(Q8Matmul, MatchesDequantizedReferenceOnEveryTarget) {
  const GgmlType type = GetParam();
  const std::int64_t block = block_of(type);
  std::mt19937 rng(static_cast<unsigned>(type) * 7 + 1);
  for (const std::int64_t cols : {block, 2 * block, 5 * block, 16 * block + block}) {
    for (const std::int64_t rows : {1, 7, 37}) {
      const QuantMatrix w = random_matrix(type, rows, cols, rng);
      // 4+ tokens: the 4-token kernels, then the rest one by one; 16+: x86's token tiles
      // (one full, one partial).
      for (const std::int64_t tokens : {1, 2, 3, 4, 9, 16, 21}) {
        SCOPED_TRACE(ggml_type_name(type) + " rows " + std::to_string(rows) + " cols " + std::to_string(cols) +
                     " tokens " + std::to_string(tokens));
        const std::vector<float> x = random_activations(tokens * cols, rng);
        Q8Activations q;
        q.quantize(x.data(), tokens, cols, q8_blocks_for(type));
        // Two row ranges: a kernel must write exactly its own rows.
        expect_matches_reference(w, q, rows / 2);
      }
    }
  }
}

TEST_P(Q8Matmul, ActivationRoundingStaysWithinHalfAStep) {
  const GgmlType type = GetParam();
  const std::int64_t cols = 4 * block_of(type), rows = 9;
  std::mt19937 rng(5);
  const QuantMatrix w = random_matrix(type, rows, cols, rng);
  const std::vector<float> x = random_activations(cols, rng);
  Q8Activations q;
  q.quantize(x.data(), 1, cols, q8_blocks_for(type));
  const Q8MatmulRows kernel = find_q8_matmul(type);
  ASSERT_NE(kernel, nullptr);
  std::vector<float> y(rows), exact(rows);
  kernel(w.view, q, y.data(), 0, rows);
  reference::matmul(w.view, x.data(), 1, exact.data());
  for (std::int64_t r = 0; r < rows; ++r) {
    // |x - d·q| ≤ d/2 per column, d = max|x| / 127 of the column's block of 32.
    double bound = 0;
    for (std::int64_t c = 0; c < cols; ++c) bound += std::fabs(w.decoded[r * cols + c]) * q.token(0).scales[c / 32] / 2;
    EXPECT_LE(std::fabs(y[r] - exact[r]), bound * 1.001 + 1e-6) << ggml_type_name(type) << " row " << r;
  }
}

TEST_P(Q8Matmul, ZeroActivationsGiveZero) {
  const GgmlType type = GetParam();
  const std::int64_t cols = 2 * block_of(type), rows = 3;
  std::mt19937 rng(9);
  const QuantMatrix w = random_matrix(type, rows, cols, rng);
  const std::vector<float> x(static_cast<std::size_t>(cols), 0.0f);
  Q8Activations q;
  q.quantize(x.data(), 1, cols, q8_blocks_for(type));
  for_each_simd_target([&] {
    std::vector<float> y(rows, 1.0f);
    find_q8_matmul(type)(w.view, q, y.data(), 0, rows);
    for (const float v : y) EXPECT_EQ(v, 0.0f);
  });
}

// K-type weights with every code and 6-bit scale at its largest (all bits set; d and dmin
// small and positive) against activations of full magnitude and one sign per token: the
// integer sums' worst case (the kernels' int16 partial sums of byte products included).
TEST(Q8Matmul, LargestKCodesAgainstFullScaleActivationsMatchTheReference) {
  for (const GgmlType type : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    const std::int64_t rows = 9, cols = 2 * block_of(type);  // 9: full and partial row tiles
    const std::size_t block_bytes = ggml_type_info(type).block_bytes;
    const auto row_bytes = static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(cols)));
    QuantMatrix w;
    w.blocks.assign(row_bytes * static_cast<std::size_t>(rows), 0xff);
    std::size_t d_offset = 0, dmin_offset = 0;  // dmin_offset 0: no dmin
    switch (type) {
      case GgmlType::Q2_K: d_offset = offsetof(BlockQ2_K, d), dmin_offset = offsetof(BlockQ2_K, dmin); break;
      case GgmlType::Q3_K: d_offset = offsetof(BlockQ3_K, d); break;
      case GgmlType::Q4_K: d_offset = offsetof(BlockQ4_K, d), dmin_offset = offsetof(BlockQ4_K, dmin); break;
      case GgmlType::Q5_K: d_offset = offsetof(BlockQ5_K, d), dmin_offset = offsetof(BlockQ5_K, dmin); break;
      default: d_offset = offsetof(BlockQ6_K, d); break;
    }
    const std::uint16_t small = f32_to_f16(1.0f / 1024.0f);
    for (std::size_t b = 0; b < w.blocks.size() / block_bytes; ++b) {
      std::memcpy(&w.blocks[b * block_bytes + d_offset], &small, 2);
      if (dmin_offset != 0) std::memcpy(&w.blocks[b * block_bytes + dmin_offset], &small, 2);
    }
    w.decoded.resize(static_cast<std::size_t>(rows * cols));
    for (std::int64_t r = 0; r < rows; ++r)
      dequantize_row(type, w.blocks.data() + r * row_bytes, w.decoded.data() + r * cols, cols);
    w.view = MatrixView{type, w.blocks.data(), rows, cols, row_bytes};
    for (const std::int64_t tokens : {1, 4, 16, 21}) {
      SCOPED_TRACE(ggml_type_name(type) + " tokens " + std::to_string(tokens));
      std::vector<float> x(static_cast<std::size_t>(tokens * cols));
      for (std::int64_t t = 0; t < tokens; ++t)
        for (std::int64_t c = 0; c < cols; ++c) x[t * cols + c] = t % 2 == 0 ? 1.0f : -1.0f;
      Q8Activations q;
      q.quantize(x.data(), tokens, cols, q8_blocks_for(type));
      expect_matches_reference(w, q, rows);  // one range: full row tiles too
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, Q8Matmul, testing::ValuesIn(kQuantTypes),
                         [](const testing::TestParamInfo<GgmlType>& info) { return ggml_type_name(info.param); });

TEST(Q8Activations, Q8_0BlocksRoundLikeLlamaCpp) {
  std::vector<float> x(64);
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i) - 16.0f;  // max |x| 16
  for (int i = 32; i < 64; ++i) x[i] = 0.5f;
  Q8Activations q;
  q.quantize(x.data(), 1, 64, Q8Blocks::Q8_0);
  const Q8Row row = q.token(0);
  // The scale is stored as f16: 16/127 = 0.125984… → 0.1259765625.
  EXPECT_EQ(row.scales[0], 0.1259765625f);
  EXPECT_EQ(row.values[0], -127);
  EXPECT_EQ(row.values[16], 0);
  EXPECT_EQ(row.values[17], 8);  // 1 · 127/16 = 7.94
  EXPECT_EQ(row.values[24], 64);  // 8 · 127/16 = 63.5: ties go to even
  EXPECT_EQ(row.values[40], 127);
  std::int32_t first16 = 0;
  for (int i = 0; i < 16; ++i) first16 += row.values[i];
  EXPECT_EQ(row.sums16[0], first16);
  EXPECT_EQ(row.sums16[2], 127 * 16);
}

TEST(Q8Activations, Q8_KBlocksMapTheSignedExtremeToMinus127) {
  std::vector<float> x(256, 0.0f);
  x[0] = 0.5f;
  x[5] = 2.0f;    // the extreme: positive, so it becomes -127 and the scale is negative
  x[9] = -2.0f;   // same magnitude, later: +127
  x[10] = 1.0f;   // -63.5 → -64 (ties to even)
  Q8Activations q;
  q.quantize(x.data(), 1, 256, Q8Blocks::Q8_K);
  const Q8Row row = q.token(0);
  EXPECT_EQ(row.values[5], -127);
  EXPECT_EQ(row.values[9], 127);
  EXPECT_EQ(row.values[10], -64);
  EXPECT_EQ(row.values[0], -32);  // -31.75
  for (int b = 0; b < 8; ++b) EXPECT_EQ(row.scales[b], 1.0f / (-127.0f / 2.0f)) << b;
  EXPECT_EQ(row.sums16[0], -127 - 32 + 127 - 64);
  EXPECT_EQ(q8_blocks_for(GgmlType::Q4_K), Q8Blocks::Q8_K);
  EXPECT_EQ(q8_blocks_for(GgmlType::Q5_0), Q8Blocks::Q8_0);
  EXPECT_THROW(q.quantize(x.data(), 1, 128, Q8Blocks::Q8_K), Error);
}

// The codes against libm's rounding (std::nearbyint, ties to even) of the same products,
// on random blocks with halves and outliers.
TEST(Q8Activations, CodesAreTheProductsRoundedToNearestEven) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(4 * 256);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = i % 7 == 0 ? std::round(normal(rng) * 40.0f) / 2.0f : normal(rng);
  Q8Activations q;
  q.quantize(x.data(), 4, 256, Q8Blocks::Q8_0);
  for (std::size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * b + i]));
    const float mul = 127.0f / amax;
    for (int i = 0; i < 32; ++i) {
      const std::size_t k = 32 * b + i;
      ASSERT_EQ(q.token(static_cast<std::int64_t>(k / 256)).values[k % 256], std::nearbyint(x[k] * mul)) << k;
    }
  }
  q.quantize(x.data(), 4, 256, Q8Blocks::Q8_K);
  for (std::size_t b = 0; b < 4; ++b) {
    float extreme = 0.0f;
    for (int i = 0; i < 256; ++i)
      if (std::fabs(x[256 * b + i]) > std::fabs(extreme)) extreme = x[256 * b + i];
    const float iscale = -127.0f / extreme;
    for (int i = 0; i < 256; ++i) {
      const float expected = std::min(127.0f, std::nearbyint(iscale * x[256 * b + i]));
      ASSERT_EQ(q.token(static_cast<std::int64_t>(b)).values[i], expected) << b << " " << i;
    }
  }
}

TEST(Q8Activations, RejectsColumnsThatAreNotWholeBlocks) {
  Q8Activations q;
  const std::vector<float> x(48, 1.0f);
  EXPECT_THROW(q.quantize(x.data(), 1, 48), Error);
}

TEST(Q8Activations, NaNBecomesZeroInsteadOfUndefinedBehaviour) {
  std::vector<float> x(32, 1.0f);
  x[3] = std::nanf("");
  Q8Activations q;
  q.quantize(x.data(), 1, 32);
  EXPECT_EQ(q.token(0).values[3], 0);
  EXPECT_EQ(q.token(0).values[4], 127);
}

// matmul() itself: for any token count and thread split, exactly the integer kernel of
// the type on activations quantized as llama.cpp does.
TEST(QuantizedMatmul, EveryTokenCountRunsTheQ8KernelOfTheType) {
  std::mt19937 rng(12);
  ThreadPool pool(2);
  for (const GgmlType type : kQuantTypes) {
    const Q8MatmulRows kernel = find_q8_matmul(type);
    ASSERT_NE(kernel, nullptr) << ggml_type_name(type);
    // 14336 columns: token chunks of 9 in the row loop.
    for (const std::int64_t cols : {512, 14336}) {
      const std::int64_t rows = 21;
      const QuantMatrix w = random_matrix(type, rows, cols, rng);
      for (const std::int64_t tokens : {1, 2, 3, 4, 11, 40}) {
        const std::vector<float> x = random_activations(tokens * cols, rng);
        Q8Activations q;
        q.quantize(x.data(), tokens, cols, q8_blocks_for(type));
        std::vector<float> expected(static_cast<std::size_t>(tokens * rows)), y(expected.size());
        kernel(w.view, q, expected.data(), 0, rows);
        matmul(w.view, x.data(), tokens, y.data(), pool);
        EXPECT_EQ(y, expected) << ggml_type_name(type) << " cols " << cols << " tokens " << tokens;
      }
    }
  }
}

TEST(QuantizedMatmul, DequantizeRowMatchesTheBlockDecoder) {
  std::mt19937 rng(13);
  for (const GgmlType type : kQuantTypes) {
    const QuantMatrix w = random_matrix(type, 5, 512, rng);
    std::vector<float> got(512);
    for_each_simd_target([&] {
      matrix_row_to_floats(w.view, 4, got.data());
      EXPECT_EQ(got, std::vector<float>(w.decoded.begin() + 4 * 512, w.decoded.end())) << ggml_type_name(type);
    });
  }
}

}  // namespace
}  // namespace piquant
