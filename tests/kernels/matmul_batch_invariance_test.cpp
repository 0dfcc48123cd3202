// Batch invariance of matmul (kernels/matmul.h): a token's outputs must not depend on
// the batch it arrives in. Every token of an n-token batch is compared bit for bit with
// the same token multiplied alone, for batch sizes that take every tile shape (full
// token tiles, each count of leftover tokens, several chunks), row counts that leave row
// tiles over, 1..3 threads, and rows of one or several column panels with tails; on
// every SIMD target. The reference here is independent of the tiling: the same kernel
// on one token at a time (decode), which shares no tile shape with the batched path.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernel_test_support.h"
#include "kernels/matmul.h"
#include "quant/quantize.h"

namespace piquant {
namespace {

using namespace kernel_test;

constexpr std::int64_t kBatchSizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 32, 64};
constexpr std::int64_t kMaxTokens = 64;

// Bitwise equality that reports the first few differences with both values.
void expect_same_bits(const float* got, const float* alone, std::int64_t n, const std::string& what) {
  int failures = 0;
  for (std::int64_t i = 0; i < n && failures < 3; ++i) {
    if (std::bit_cast<std::uint32_t>(got[i]) != std::bit_cast<std::uint32_t>(alone[i])) {
      ADD_FAILURE() << what << ", output " << i << ": " << got[i] << " in the batch vs " << alone[i] << " alone";
      ++failures;
    }
  }
}

// y of every batch of the first n tokens (every n of kBatchSizes) equals, token by token,
// the token multiplied alone on one thread. Each batch runs on 1, 2 and 3 threads, or,
// with `cycle_threads` (long rows, to keep sanitizer builds quick), on one of them in
// turn.
void expect_batch_invariant(const MatrixView& w, const std::vector<float>& x, bool cycle_threads) {
  ThreadPool one(1), two(2), three(3);
  ThreadPool* pools[] = {&one, &two, &three};
  std::vector<float> alone(static_cast<std::size_t>(kMaxTokens * w.rows));
  for (std::int64_t t = 0; t < kMaxTokens; ++t) matmul(w, x.data() + t * w.cols, 1, alone.data() + t * w.rows, one);
  std::vector<float> y(alone.size());
  std::size_t batch = 0;
  for (const std::int64_t n : kBatchSizes) {
    for (std::size_t p = 0; p < 3; ++p) {
      if (cycle_threads && p != batch % 3) continue;
      ThreadPool* pool = pools[p];
      std::fill(y.begin(), y.end(), -1.0f);
      matmul(w, x.data(), n, y.data(), *pool);
      expect_same_bits(y.data(), alone.data(), n * w.rows,
                       ggml_type_name(w.type) + " " + std::to_string(w.rows) + "x" + std::to_string(w.cols) + ", " +
                           std::to_string(n) + " tokens, " + std::to_string(pool->size()) + " threads");
    }
    ++batch;
  }
}

TEST(MatmulBatchInvariance, FloatWeightsGiveEachTokenTheSameBitsInAnyBatch) {
  std::mt19937 rng(21);
  // 37 rows: two threads' grains of 16 and 5 rows over (a 4-row tile and a single row).
  // Columns: one panel with a vector tail; two panels, the second with a tail (the
  // panel sums are added in y).
  const std::int64_t rows = 37;
  for (const std::int64_t cols : {std::int64_t{37}, std::int64_t{4096 + 100}}) {
    const std::vector<float> weights = random_floats(static_cast<std::size_t>(rows * cols), rng);
    const std::vector<float> x = random_floats(static_cast<std::size_t>(kMaxTokens * cols), rng);
    for (const GgmlType type : kKernelTypes) {
      const std::vector<std::uint8_t> storage = encode(weights, type);
      const MatrixView w{type, storage.data(), rows, cols, static_cast<std::size_t>(cols) * element_bytes(type)};
      for_each_simd_target([&] { expect_batch_invariant(w, x, cols > 4096); });
    }
  }
}

// Quantized weights promise less (matmul.h): the multi-token kernels sum in other orders
// than the one-token kernel, so a token's result may depend on the batch size. It must
// still never depend on the thread count, i.e. on which rows a thread gets: each batch
// with 2 and 3 threads equals the same batch on one thread, bit for bit.
TEST(MatmulBatchInvariance, QuantizedWeightsGiveTheSameBitsForAnyThreadCount) {
  std::mt19937 rng(22);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const GgmlType types[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                            GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
  // 53 rows: three threads' grains of 16 and 5 rows over, which the row tiles of 2, 3
  // and 4 rows do not divide evenly. Token counts: decode, groups of 4 and 8 with
  // tokens left over, x86's token tiles (16+) full and partial.
  const std::int64_t rows = 53, cols = 512;
  std::vector<float> weights(static_cast<std::size_t>(rows * cols));
  for (float& v : weights) v = normal(rng);
  std::vector<float> x(static_cast<std::size_t>(kMaxTokens * cols));
  for (float& v : x) v = normal(rng);
  ThreadPool one(1), two(2), three(3);
  for (const GgmlType type : types) {
    const auto row_bytes = static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(cols)));
    std::vector<std::uint8_t> storage(row_bytes * static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r)
      quantize_row(type, weights.data() + r * cols, cols, nullptr, storage.data() + static_cast<std::size_t>(r) * row_bytes);
    const MatrixView w{type, storage.data(), rows, cols, row_bytes};
    for_each_simd_target([&] {
      std::vector<float> single(static_cast<std::size_t>(kMaxTokens * rows)), y(single.size());
      for (const std::int64_t n : {1, 4, 9, 17, 33}) {
        matmul(w, x.data(), n, single.data(), one);
        for (ThreadPool* pool : {&two, &three}) {
          std::fill(y.begin(), y.end(), -1.0f);
          matmul(w, x.data(), n, y.data(), *pool);
          expect_same_bits(y.data(), single.data(), n * rows,
                           ggml_type_name(type) + ", " + std::to_string(n) + " tokens, " + std::to_string(pool->size()) +
                               " threads against 1");
        }
      }
    });
  }
}

}  // namespace
}  // namespace piquant
