// matmul() on ggml's quantized blocks: for any token count and thread split, exactly the
// integer Q8 kernel of the type on activations quantized as llama.cpp does
// (q8_matmul_test.cpp tests the kernels against the dequantized reference).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernel_test_support.h"
#include "kernels/matmul.h"
#include "kernels/q8_activations.h"
#include "kernels/q8_matmul.h"
#include "quant/quantize.h"

namespace piquant {
namespace {

using namespace kernel_test;

const GgmlType kBlockTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

struct Blocks {
  std::vector<std::uint8_t> bytes;
  MatrixView view;
};

Blocks quantized_matrix(GgmlType type, std::int64_t rows, std::int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::size_t row_bytes = static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(cols)));
  std::vector<float> values(static_cast<std::size_t>(cols));
  Blocks b;
  b.bytes.resize(row_bytes * static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (float& v : values) v = normal(rng);
    quantize_row(type, values.data(), cols, nullptr, b.bytes.data() + r * row_bytes);
  }
  b.view = MatrixView{type, b.bytes.data(), rows, cols, row_bytes};
  return b;
}

TEST(QuantizedMatmul, EveryTokenCountRunsTheQ8KernelOfTheType) {
  std::mt19937 rng(12);
  ThreadPool pool(2);
  for (const GgmlType type : kBlockTypes) {
    const Q8MatmulRows kernel = find_q8_matmul(type);
    ASSERT_NE(kernel, nullptr) << ggml_type_name(type);
    // 14336 columns: token chunks of 9 in the row loop.
    for (const std::int64_t cols : {512, 14336}) {
      const std::int64_t rows = 21;
      const Blocks w = quantized_matrix(type, rows, cols, rng);
      for (const std::int64_t tokens : {1, 2, 3, 4, 11, 40}) {
        const std::vector<float> x = random_floats(static_cast<std::size_t>(tokens * cols), rng);
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
  for (const GgmlType type : kBlockTypes) {
    const Blocks w = quantized_matrix(type, 5, 512, rng);
    std::vector<float> got(512), want(512);
    for_each_simd_target([&] {
      dequantize_row(w.view, 4, got.data());
      reference::dequantize_row(w.view, 4, want.data());
      EXPECT_EQ(got, want) << ggml_type_name(type);
    });
  }
}

}  // namespace
}  // namespace piquant
