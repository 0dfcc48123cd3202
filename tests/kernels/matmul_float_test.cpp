// matmul_float_activations: the product training uses. For every weight type it equals
// the F32 matmul of the rows as matrix_row_to_floats decodes them, bit for bit, for any
// band count and thread count; and it differs from matmul(), which rounds the activations
// (the reason it exists), by about that rounding.
#include "kernels/matmul_float.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/kernel_test_support.h"
#include "kernels/matmul.h"
#include "quant/quantize.h"

namespace piquant {
namespace {

using kernel_test::random_floats;

struct Weight {
  std::vector<std::uint8_t> storage;
  MatrixView view;
};

Weight make_weight(GgmlType type, std::int64_t rows, std::int64_t cols, std::mt19937& rng) {
  Weight w;
  const std::vector<float> values = random_floats(static_cast<std::size_t>(rows * cols), rng);
  const auto row_bytes = static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(cols)));
  w.storage.resize(row_bytes * static_cast<std::size_t>(rows));
  if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) {
    w.storage = kernel_test::encode(values, type);
  } else {
    for (std::int64_t r = 0; r < rows; ++r) quantize_row_rtn(type, &values[static_cast<std::size_t>(r * cols)], cols, w.storage.data() + row_bytes * static_cast<std::size_t>(r));
  }
  w.view = {type, w.storage.data(), rows, cols, row_bytes};
  return w;
}

TEST(MatmulFloat, EqualsTheF32ProductOfTheDecodedRowsForAnyThreadCount) {
  std::mt19937 rng(3);
  // 300 rows of 4096 columns: two bands of 256; 33 × 256: one band.
  for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::BF16, GgmlType::F32}) {
    for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{300, 4096}, {33, 256}}) {
      const Weight w = make_weight(type, rows, cols, rng);
      std::vector<float> decoded(static_cast<std::size_t>(rows * cols));
      for (std::int64_t r = 0; r < rows; ++r) matrix_row_to_floats(w.view, r, decoded.data() + r * cols);
      const MatrixView f32{GgmlType::F32, reinterpret_cast<const std::uint8_t*>(decoded.data()), rows, cols, 4u * static_cast<std::size_t>(cols)};
      for (std::int64_t T : {1, 5, 19}) {
        const std::vector<float> x = random_floats(static_cast<std::size_t>(T * cols), rng);
        std::vector<float> want(static_cast<std::size_t>(T * rows)), rounded(want.size());
        ThreadPool one(1);
        matmul(f32, x.data(), T, want.data(), one);
        for (unsigned threads : {1u, 2u, 3u}) {
          ThreadPool pool(threads);
          std::vector<float> got(want.size(), NAN);
          matmul_float_activations(w.view, x.data(), T, got.data(), pool);
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
              << ggml_type_name(type) << " " << rows << "×" << cols << " T=" << T << " threads " << threads;
        }
        // matmul() rounds the activations for F16 and block types: different bits, close values.
        matmul(w.view, x.data(), T, rounded.data(), one);
        double max_diff = 0.0, max_abs = 0.0;
        for (std::size_t i = 0; i < want.size(); ++i) {
          max_diff = std::max(max_diff, std::fabs(static_cast<double>(want[i]) - rounded[i]));
          max_abs = std::max(max_abs, std::fabs(static_cast<double>(want[i])));
        }
        if (matmul_rounds_activations(type)) {
          EXPECT_GT(max_diff, 0.0) << ggml_type_name(type);
          EXPECT_LT(max_diff, 0.05 * max_abs) << ggml_type_name(type);
        } else {
          EXPECT_EQ(max_diff, 0.0) << ggml_type_name(type);
        }
      }
    }
  }
}

}  // namespace
}  // namespace piquant
