// Matmul on ggml's quantized blocks against dequantize-then-float-dot (the reference),
// for every block type, odd row counts and several token counts.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "quant/quantize.h"

namespace piquant {
namespace {

TEST(QuantizedMatmul, EveryBlockTypeMatchesDequantizeThenDot) {
  const GgmlType types[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                            GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  ThreadPool pool(2);
  for (const GgmlType type : types) {
    const std::int64_t cols = 512, rows = 37;
    const std::size_t row_bytes = static_cast<std::size_t>(ggml_nbytes(type, cols));
    std::vector<float> values(static_cast<std::size_t>(rows * cols));
    for (float& v : values) v = normal(rng);
    std::vector<std::uint8_t> blocks(row_bytes * rows);
    for (std::int64_t r = 0; r < rows; ++r) quantize_row(type, values.data() + r * cols, cols, nullptr, blocks.data() + r * row_bytes);
    const MatrixView w{type, blocks.data(), rows, cols, row_bytes};
    for (const std::int64_t tokens : {1, 3, 8}) {
      std::vector<float> x(static_cast<std::size_t>(tokens * cols));
      for (float& v : x) v = normal(rng);
      std::vector<float> y(static_cast<std::size_t>(tokens * rows)), ref(y.size());
      matmul(w, x.data(), tokens, y.data(), pool);
      reference::matmul(w, x.data(), tokens, ref.data());
      for (std::size_t i = 0; i < y.size(); ++i) {
        // Both sum the same decoded floats; float vs double accumulation over 512 terms.
        ASSERT_NEAR(y[i], ref[i], 1e-4 * std::sqrt(static_cast<double>(cols)) * 4) << ggml_type_name(type) << " " << i;
      }
      // And the decoded weights are close to the originals (the blocks hold real data).
      std::vector<float> decoded(static_cast<std::size_t>(cols));
      dequantize_row(w, 5, decoded.data());
      double err = 0, norm = 0;
      for (std::int64_t c = 0; c < cols; ++c) {
        err += std::pow(decoded[c] - values[5 * cols + c], 2);
        norm += std::pow(values[5 * cols + c], 2);
      }
      EXPECT_LT(std::sqrt(err / norm), 0.4) << ggml_type_name(type);
    }
  }
}

}  // namespace
}  // namespace piquant
