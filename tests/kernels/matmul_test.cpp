// matmul and matrix_row_to_floats against the scalar double-precision reference, on every
// SIMD target this CPU has, for F32/F16/BF16 weights, odd shapes, 1..n tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernel_test_support.h"
#include "kernels/matmul.h"

namespace piquant {
namespace {

using namespace kernel_test;

// A weight matrix with its storage, activations for up to max_tokens tokens, and the
// reference's output and Σ|w·x| per output (the scale of its rounding error).
struct Case {
  GgmlType type;
  std::int64_t rows, cols, max_tokens;
  std::vector<std::uint8_t> storage;
  std::vector<float> x, expected, magnitude;

  MatrixView view() const {
    return {type, storage.data(), rows, cols, static_cast<std::size_t>(cols) * element_bytes(type)};
  }
};

Case make_case(GgmlType type, std::int64_t rows, std::int64_t cols, std::int64_t max_tokens, std::mt19937& rng) {
  Case c{type, rows, cols, max_tokens, {}, {}, {}, {}};
  c.storage = encode(random_floats(static_cast<std::size_t>(rows * cols), rng), type);
  c.x = random_floats(static_cast<std::size_t>(max_tokens * cols), rng);
  c.expected.resize(static_cast<std::size_t>(max_tokens * rows));
  reference::matmul(c.view(), c.x.data(), max_tokens, c.expected.data());
  c.magnitude.resize(c.expected.size());
  for (std::int64_t t = 0; t < max_tokens; ++t)
    for (std::int64_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (std::int64_t k = 0; k < cols; ++k)
        sum += std::abs(decode(c.storage.data(), type, static_cast<std::size_t>(r * cols + k)) * c.x[t * cols + k]);
      c.magnitude[t * rows + r] = static_cast<float>(sum);
    }
  return c;
}

// Tolerance for one output, in units of u·Σ|w·x| (u = 2^-24, float's unit roundoff):
// each output is `cols` float products summed in float, over several lanes and
// accumulators. Sums of up to 3 terms are bounded rigorously by (cols + 1)·u·Σ|w·x| ≤ 4.
// Longer sums of random-sign terms gather rounding errors like a random walk: measured
// on every target (one lane to sixteen) for 1 to 14336 columns, the error never passed
// 2.2·u·Σ|w·x|; sqrt(cols)/4 more allows for growth. A dropped or doubled element costs
// about Σ|w·x|/cols, still 200× the tolerance at cols = 4097. FLT_MIN covers all-zero sums.
double tolerance(std::int64_t cols, float magnitude) {
  return (4.0 + std::sqrt(static_cast<double>(cols)) / 4.0) * kFloatRoundoff * magnitude +
         std::numeric_limits<float>::min();
}

// Runs matmul for the first n_tokens tokens of the case and compares with the reference.
// A guard after y catches writes past the output.
void expect_matches(const Case& c, std::int64_t n_tokens, ThreadPool& pool) {
  SCOPED_TRACE(ggml_type_name(c.type) + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) + ", " +
               std::to_string(n_tokens) + " tokens, " + std::to_string(pool.size()) + " threads");
  const float guard = -12345.0f;
  std::vector<float> y(static_cast<std::size_t>(n_tokens * c.rows) + 16, guard);
  matmul(c.view(), c.x.data(), n_tokens, y.data(), pool);
  int failures = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(n_tokens * c.rows) && failures < 5; ++i) {
    if (!(std::abs(y[i] - c.expected[i]) <= tolerance(c.cols, c.magnitude[i]))) {
      ADD_FAILURE() << "output " << i << " (token " << i / c.rows << ", row " << i % c.rows << "): " << y[i]
                    << " vs reference " << c.expected[i];
      ++failures;
    }
  }
  for (std::size_t i = static_cast<std::size_t>(n_tokens * c.rows); i < y.size(); ++i)
    ASSERT_EQ(y[i], guard) << "matmul wrote past its output";
}

TEST(Matmul, MatchesReferenceOnEveryTargetTypeAndShape) {
  std::mt19937 rng(1);
  const std::int64_t col_counts[] = {1, 3, 7, 16, 31, 33, 63, 65, 127, 129, 255, 257, 4097};
  const std::int64_t row_counts[] = {1, 5, 19};  // 19: two threads get rows
  const std::vector<std::int64_t> token_counts = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 33};
  // Long rows with fewer token counts (decode, a partial tile, a full one, tile + rest)
  // keep the test quick under sanitizers.
  const std::vector<std::int64_t> long_row_token_counts = {1, 3, 4, 9};
  std::vector<Case> cases;
  for (const GgmlType type : kKernelTypes)
    for (const std::int64_t cols : col_counts)
      for (const std::int64_t rows : row_counts) cases.push_back(make_case(type, rows, cols, cols > 1000 ? 9 : 33, rng));
  ThreadPool one(1), three(3);
  for_each_simd_target([&] {
    for (const Case& c : cases)
      for (const std::int64_t n : c.cols > 1000 ? long_row_token_counts : token_counts) {
        expect_matches(c, n, one);
        if (c.rows > 16 && (n == 1 || n == 9)) expect_matches(c, n, three);
      }
  });
}

TEST(Matmul, LongPromptSpansSeveralTokenChunks) {
  // 70 tokens of 2100 columns (280 KiB per 512 KiB chunk of activations, ≤ 62 tokens)
  // do not fit one chunk: the chunk loop runs.
  std::mt19937 rng(2);
  ThreadPool pool(2);
  for (const GgmlType type : kKernelTypes) {
    const Case c = make_case(type, 21, 2100, 70, rng);
    for_each_simd_target([&] { expect_matches(c, 70, pool); });
  }
}

TEST(Matmul, LongRowsAreSummedOverSeveralColumnPanels) {
  // 9000 columns: two full panels of 4096 and a last one with a tail, added into y.
  std::mt19937 rng(5);
  ThreadPool pool(1);
  for (const GgmlType type : kKernelTypes) {
    const Case c = make_case(type, 9, 9000, 11, rng);
    for_each_simd_target([&] {
      expect_matches(c, 11, pool);
      expect_matches(c, 1, pool);
    });
  }
}

TEST(Matmul, ThreadCountDoesNotChangeTheResult) {
  // Threads split rows at multiples of 16, so every row is summed in the same order
  // whatever the thread count: results agree bit for bit (reproducible logits).
  std::mt19937 rng(3);
  const Case c = make_case(GgmlType::F16, 203, 129, 7, rng);
  for (const std::int64_t n_tokens : {1, 7}) {
    ThreadPool single(1);
    std::vector<float> expected(static_cast<std::size_t>(n_tokens * c.rows));
    matmul(c.view(), c.x.data(), n_tokens, expected.data(), single);
    for (unsigned threads = 2; threads <= 5; ++threads) {
      ThreadPool pool(threads);
      std::vector<float> y(expected.size());
      matmul(c.view(), c.x.data(), n_tokens, y.data(), pool);
      EXPECT_EQ(y, expected) << threads << " threads, " << n_tokens << " tokens";
    }
  }
}

TEST(Matmul, ReadsUnalignedRowsWithPaddedStride) {
  // safetensors data can start at any byte, and a view may have a stride longer than a
  // row: rows 3 bytes off alignment, 5 bytes of padding between rows.
  std::mt19937 rng(4);
  ThreadPool pool(1);
  for (const GgmlType type : kKernelTypes) {
    const Case packed = make_case(type, 9, 37, 5, rng);
    const std::size_t row_bytes = static_cast<std::size_t>(packed.cols) * element_bytes(type);
    const std::size_t stride = row_bytes + 5;
    std::vector<std::uint8_t> padded(3 + stride * static_cast<std::size_t>(packed.rows), 0xff);
    for (std::int64_t r = 0; r < packed.rows; ++r)
      std::memcpy(&padded[3 + stride * static_cast<std::size_t>(r)], &packed.storage[row_bytes * static_cast<std::size_t>(r)],
                  row_bytes);
    const MatrixView view{type, padded.data() + 3, packed.rows, packed.cols, stride};
    for_each_simd_target([&] {
      for (const std::int64_t n : {1, 5}) {
        std::vector<float> y(static_cast<std::size_t>(n * packed.rows));
        matmul(view, packed.x.data(), n, y.data(), pool);
        for (std::size_t i = 0; i < y.size(); ++i)
          EXPECT_NEAR(y[i], packed.expected[i], tolerance(packed.cols, packed.magnitude[i])) << ggml_type_name(type);
      }
      std::vector<float> row(static_cast<std::size_t>(packed.cols)), expected(row.size());
      matrix_row_to_floats(view, 4, row.data());
      reference::matrix_row_to_floats(packed.view(), 4, expected.data());
      EXPECT_EQ(row, expected);
    });
  }
}

// Every one of the 65,536 16-bit patterns in one row: matrix_row_to_floats must give exactly
// core/half.h's value (NaN for NaN), on every target.
void expect_all_halves_exact(GgmlType type) {
  std::vector<std::uint16_t> bits(65536);
  for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = static_cast<std::uint16_t>(i);
  const MatrixView view{type, reinterpret_cast<const std::uint8_t*>(bits.data()), 1, 65536, 2 * 65536};
  for_each_simd_target([&] {
    std::vector<float> row(65536);
    matrix_row_to_floats(view, 0, row.data());
    int failures = 0;
    for (std::size_t i = 0; i < row.size() && failures < 5; ++i) {
      const float expected = type == GgmlType::F16 ? f16_to_f32(bits[i]) : bf16_to_f32(bits[i]);
      const bool same = std::isnan(expected) ? std::isnan(row[i])
                                             : std::bit_cast<std::uint32_t>(row[i]) == std::bit_cast<std::uint32_t>(expected);
      if (!same) {
        ADD_FAILURE() << ggml_type_name(type) << " 0x" << std::hex << i << ": " << row[i] << " expected " << expected;
        ++failures;
      }
    }
  });
}

TEST(Matmul, DequantizeRowIsExactForEveryF16Value) { expect_all_halves_exact(GgmlType::F16); }
TEST(Matmul, DequantizeRowIsExactForEveryBF16Value) { expect_all_halves_exact(GgmlType::BF16); }

TEST(Matmul, F16InfinityInWeightsGivesInfinity) {
  // The emulated F16 conversion on targets without F16C must not turn inf into 2^16.
  std::vector<std::uint16_t> w(17, f32_to_f16(0.0f));
  w[5] = 0x7c00;  // +inf
  const MatrixView view{GgmlType::F16, reinterpret_cast<const std::uint8_t*>(w.data()), 1, 17, 34};
  const std::vector<float> x(17, 1.0f);
  ThreadPool pool(1);
  for_each_simd_target([&] {
    float y = 0;
    matmul(view, x.data(), 1, &y, pool);
    EXPECT_EQ(y, std::numeric_limits<float>::infinity());
  });
}

TEST(Matmul, SupportsTheFloatTypes) {
  EXPECT_TRUE(matmul_supports(GgmlType::F32));
  EXPECT_TRUE(matmul_supports(GgmlType::F16));
  EXPECT_TRUE(matmul_supports(GgmlType::BF16));
  EXPECT_TRUE(matmul_supports(GgmlType::Q4_K));
  EXPECT_FALSE(matmul_supports(GgmlType::Q8_K));
  EXPECT_FALSE(matmul_supports(GgmlType::I32));
}

TEST(Matmul, RejectsBadViewsWithAMessage) {
  ThreadPool pool(1);
  std::vector<std::uint8_t> data(4096);
  std::vector<float> x(64), y(64);
  const auto message = [&](const MatrixView& w, std::int64_t n_tokens) -> std::string {
    try {
      matmul(w, x.data(), n_tokens, y.data(), pool);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message({GgmlType::Q8_K, data.data(), 1, 256, 292}, 1).find("q8_K is not supported"), std::string::npos);
  EXPECT_NE(message({GgmlType::F16, data.data(), 2, 16, 31}, 1).find("row stride 31 bytes"), std::string::npos);
  EXPECT_NE(message({GgmlType::F32, data.data(), -1, 16, 64}, 1).find("negative"), std::string::npos);
  EXPECT_NE(message({GgmlType::F32, nullptr, 2, 16, 64}, 1).find("no data"), std::string::npos);
  EXPECT_NE(message({GgmlType::F32, data.data(), 2, 16, 64}, -1).find("negative token count"), std::string::npos);
  EXPECT_THROW(matrix_row_to_floats({GgmlType::F32, data.data(), 2, 16, 64}, 2, y.data()), Error);
  EXPECT_THROW(matrix_row_to_floats({GgmlType::F32, data.data(), 2, 16, 64}, -1, y.data()), Error);
}

TEST(Matmul, EmptyShapesDoNothing) {
  ThreadPool pool(2);
  std::vector<std::uint8_t> data(64);
  float y[4] = {7, 7, 7, 7};
  const float x[4] = {1, 2, 3, 4};
  matmul({GgmlType::F32, data.data(), 0, 4, 16}, x, 1, y, pool);  // no rows
  matmul({GgmlType::F32, data.data(), 4, 4, 16}, x, 0, y, pool);  // no tokens
  EXPECT_EQ(y[0], 7.0f);
  matmul({GgmlType::F32, data.data(), 4, 0, 0}, x, 1, y, pool);  // no columns: sums of nothing
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[3], 0.0f);
}

}  // namespace
}  // namespace piquant
