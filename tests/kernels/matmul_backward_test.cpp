// matmul_input_grad and matmul_weight_grad on every SIMD target this CPU has, for every
// weight type matmul supports, odd shapes and 1, 2, 3 threads, against three independent
// things: the double-precision references (within a rigorous rounding-error bound), the
// summation chain the header promises recomputed here by scalar loops (bit for bit), and
// the kernel's own 1-thread result (bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernel_test_support.h"
#include "kernels/matmul.h"
#include "kernels/matmul_backward.h"
#include "quant/quantize.h"

namespace piquant {
namespace {

using namespace kernel_test;

// Every type GGUF can hold; the tests take those matmul_supports.
const GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                              GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q2_K, GgmlType::Q3_K,
                              GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K, GgmlType::I8,
                              GgmlType::I16,  GgmlType::I32,  GgmlType::I64,  GgmlType::F64,  GgmlType::BF16};

bool is_float_type(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16;
}

// A weight matrix as stored, and its values as the reference decodes them.
struct Weight {
  GgmlType type;
  std::int64_t rows, cols;
  std::size_t row_bytes;
  std::vector<std::uint8_t> storage;
  std::vector<float> values;  // rows × cols

  MatrixView view() const { return {type, storage.data(), rows, cols, row_bytes}; }
};

Weight make_weight(GgmlType type, std::int64_t rows, std::int64_t cols, std::mt19937& rng) {
  Weight w{type, rows, cols, static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(cols))), {}, {}};
  const std::vector<float> floats = random_floats(static_cast<std::size_t>(rows * cols), rng);
  if (is_float_type(type)) {
    w.storage = encode(floats, type);
  } else {
    w.storage.resize(w.row_bytes * static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r)
      quantize_row_rtn(type, &floats[r * cols], cols, w.storage.data() + w.row_bytes * static_cast<std::size_t>(r));
  }
  w.values.resize(floats.size());
  for (std::int64_t r = 0; r < rows; ++r) reference::matrix_row_to_floats(w.view(), r, &w.values[r * cols]);
  return w;
}

// Whether the target in force has FMA, so each step of the chain is one rounding.
bool fused_target() {
  const std::string t = simd_target();
  return t.rfind("AVX", 0) == 0 || t == "NEON";  // AVX2, AVX3, AVX3_VNNI, ...; SSE4 and EMU128 have none
}

// One step of the header's chain: acc + a·b, fused (std::fma) or with the product rounded
// to float first (the exact double product rounded once: float multiplication).
float chain_step(float acc, float a, float b, bool fused) {
  if (fused) return std::fma(a, b, acc);
  const auto product = static_cast<float>(static_cast<double>(a) * b);
  return acc + product;
}

// Rigorous bound on |kernel − reference| for one output: the kernel sums depth products
// and the initial value recursively in float, each product exact (FMA) or rounded once,
// so its error is at most γ(depth+1)·M with γ(n) = n·u/(1 − n·u), u = 2^-24 and
// M = |initial| + Σ|products| (Higham, Accuracy and Stability, §4.2); the reference
// rounds its double sum to float once more (≤ u·M, its double error is far below u·M).
// FLT_MIN covers all-zero sums. A dropped or doubled product costs about M/depth, which
// is ≥ 10^4 times this for every depth here.
double tolerance(std::int64_t depth, double magnitude) {
  const double n = static_cast<double>(depth + 1);
  const double gamma = n * kFloatRoundoff / (1.0 - n * kFloatRoundoff);
  return (gamma + 2.0 * kFloatRoundoff) * magnitude + std::numeric_limits<float>::min();
}

constexpr float kGuard = -12345.0f;

// What one problem's outputs must be: the reference, the bound's M, and the chain
// recomputed for fused and unfused targets, per output element.
struct Expected {
  std::int64_t depth;  // terms summed per output
  std::vector<float> initial, reference, fused_chain, unfused_chain;
  std::vector<double> magnitude;
};

// Compares one run's output (with a guard tail) with everything expected of it.
void expect_output(const Expected& e, const std::vector<float>& out, const std::string& what) {
  SCOPED_TRACE(what);
  const bool fused = fused_target();
  const std::vector<float>& chain = fused ? e.fused_chain : e.unfused_chain;
  int failures = 0;
  for (std::size_t i = 0; i < e.reference.size() && failures < 5; ++i) {
    if (!(std::abs(out[i] - e.reference[i]) <= tolerance(e.depth, e.magnitude[i]))) {
      ADD_FAILURE() << "output " << i << ": " << out[i] << " vs reference " << e.reference[i];
      ++failures;
    }
    if (std::memcmp(&out[i], &chain[i], sizeof(float)) != 0) {
      ADD_FAILURE() << "output " << i << ": " << out[i] << " is not the header's " << (fused ? "fused" : "unfused")
                    << " chain " << chain[i];
      ++failures;
    }
  }
  for (std::size_t i = e.reference.size(); i < out.size(); ++i) ASSERT_EQ(out[i], kGuard) << "wrote past the output";
}

Expected expected_input_grad(const Weight& w, const std::vector<float>& dy, std::int64_t n_tokens, std::mt19937& rng) {
  const auto n = static_cast<std::size_t>(n_tokens * w.cols);
  Expected e{w.rows, random_floats(n, rng, -4.0f, 4.0f), {}, std::vector<float>(n), std::vector<float>(n),
             std::vector<double>(n)};
  e.reference = e.initial;
  reference::matmul_input_grad(w.view(), dy.data(), n_tokens, e.reference.data());
  for (std::int64_t t = 0; t < n_tokens; ++t)
    for (std::int64_t c = 0; c < w.cols; ++c) {
      const std::size_t i = static_cast<std::size_t>(t * w.cols + c);
      float fused = e.initial[i], unfused = e.initial[i];
      double magnitude = std::abs(e.initial[i]);
      for (std::int64_t r = 0; r < w.rows; ++r) {
        const float a = dy[t * w.rows + r], b = w.values[r * w.cols + c];
        fused = chain_step(fused, a, b, true);
        unfused = chain_step(unfused, a, b, false);
        magnitude += std::abs(static_cast<double>(a) * b);
      }
      e.fused_chain[i] = fused;
      e.unfused_chain[i] = unfused;
      e.magnitude[i] = magnitude;
    }
  return e;
}

Expected expected_weight_grad(const std::vector<float>& dy, std::int64_t rows, const std::vector<float>& x,
                              std::int64_t cols, std::int64_t n_tokens, std::mt19937& rng) {
  const auto n = static_cast<std::size_t>(rows * cols);
  Expected e{n_tokens, random_floats(n, rng, -4.0f, 4.0f), {}, std::vector<float>(n), std::vector<float>(n),
             std::vector<double>(n)};
  e.reference = e.initial;
  reference::matmul_weight_grad(dy.data(), rows, x.data(), cols, n_tokens, e.reference.data());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * cols + c);
      float fused = e.initial[i], unfused = e.initial[i];
      double magnitude = std::abs(e.initial[i]);
      for (std::int64_t t = 0; t < n_tokens; ++t) {
        const float a = dy[t * rows + r], b = x[t * cols + c];
        fused = chain_step(fused, a, b, true);
        unfused = chain_step(unfused, a, b, false);
        magnitude += std::abs(static_cast<double>(a) * b);
      }
      e.fused_chain[i] = fused;
      e.unfused_chain[i] = unfused;
      e.magnitude[i] = magnitude;
    }
  return e;
}

struct Pools {
  ThreadPool one{1}, two{2}, three{3};
  ThreadPool* all[3] = {&one, &two, &three};
};

// Runs the input grad on every target with 1, 2 and 3 threads.
void check_input_grad(const Weight& w, std::int64_t n_tokens, Pools& pools, std::mt19937& rng) {
  const std::string what = ggml_type_name(w.type) + " " + std::to_string(w.rows) + "x" + std::to_string(w.cols) +
                           ", " + std::to_string(n_tokens) + " tokens";
  const std::vector<float> dy = random_floats(static_cast<std::size_t>(n_tokens * w.rows), rng);
  const Expected e = expected_input_grad(w, dy, n_tokens, rng);
  for_each_simd_target([&] {
    std::vector<float> single;
    for (ThreadPool* pool : pools.all) {
      std::vector<float> dx = e.initial;
      dx.resize(dx.size() + 16, kGuard);
      matmul_input_grad(w.view(), dy.data(), n_tokens, dx.data(), *pool);
      expect_output(e, dx, what + ", " + std::to_string(pool->size()) + " threads");
      if (single.empty())
        single = dx;
      else
        EXPECT_TRUE(dx == single) << what << ": " << pool->size() << " threads differ from 1";
    }
  });
}

void check_weight_grad(std::int64_t rows, std::int64_t cols, std::int64_t n_tokens, Pools& pools, std::mt19937& rng) {
  const std::string what = std::to_string(rows) + "x" + std::to_string(cols) + ", " + std::to_string(n_tokens) + " tokens";
  const std::vector<float> dy = random_floats(static_cast<std::size_t>(n_tokens * rows), rng);
  const std::vector<float> x = random_floats(static_cast<std::size_t>(n_tokens * cols), rng);
  const Expected e = expected_weight_grad(dy, rows, x, cols, n_tokens, rng);
  for_each_simd_target([&] {
    std::vector<float> single;
    for (ThreadPool* pool : pools.all) {
      std::vector<float> dw = e.initial;
      dw.resize(dw.size() + 16, kGuard);
      matmul_weight_grad(dy.data(), rows, x.data(), cols, n_tokens, dw.data(), *pool);
      expect_output(e, dw, what + ", " + std::to_string(pool->size()) + " threads");
      if (single.empty())
        single = dw;
      else
        EXPECT_TRUE(dw == single) << what << ": " << pool->size() << " threads differ from 1";
    }
  });
}

TEST(MatmulBackward, EveryTypeMatmulSupportsIsCovered) {
  // The loops below take the types matmul_supports; make sure that is all of the
  // float and block types, so no type silently drops out of the test.
  int supported = 0;
  for (const GgmlType type : kAllTypes) supported += matmul_supports(type) ? 1 : 0;
  EXPECT_EQ(supported, 13);
}

TEST(MatmulBackward, InputGradMatchesReferenceForEveryTypeShapeAndThreadCount) {
  std::mt19937 rng(11);
  Pools pools;
  for (const GgmlType type : kAllTypes) {
    if (!matmul_supports(type)) continue;
    const std::int64_t block = ggml_type_info(type).block_size;
    // Columns: narrow (a LoRA rank), a partial vector or strip, several strips with a
    // tail; block types take whole blocks.
    std::vector<std::int64_t> col_counts = {8, 40, 256 + 32};
    if (block == 32) col_counts = {32, 256 + 32};
    if (block == 256) col_counts = {256, 512};
    for (const std::int64_t rows : {8, 33})
      for (const std::int64_t cols : col_counts) {
        const Weight w = make_weight(type, rows, cols, rng);
        for (const std::int64_t n_tokens : {1, 3, 17, 64}) check_input_grad(w, n_tokens, pools, rng);
      }
  }
}

TEST(MatmulBackward, InputGradOverSeveralBandsOfRows) {
  // 300 rows are two bands (256 + 44 rows); 9000 columns cut the band to 116 rows
  // (4 MiB), so 130 rows are two bands, and the strips of a band are many.
  std::mt19937 rng(12);
  Pools pools;
  check_input_grad(make_weight(GgmlType::F32, 300, 40, rng), 5, pools, rng);
  check_input_grad(make_weight(GgmlType::Q4_K, 300, 256, rng), 9, pools, rng);
  check_input_grad(make_weight(GgmlType::BF16, 130, 9000, rng), 2, pools, rng);
}

TEST(MatmulBackward, WeightGradMatchesReferenceForEveryShapeAndThreadCount) {
  std::mt19937 rng(13);
  Pools pools;
  for (const std::int64_t rows : {8, 33})
    for (const std::int64_t cols : {8, 40, 256 + 32})
      for (const std::int64_t n_tokens : {1, 3, 17, 64}) check_weight_grad(rows, cols, n_tokens, pools, rng);
}

TEST(MatmulBackward, WeightGradOverSeveralChunksOfTokensAndPanelsOfColumns) {
  // 300 tokens are three chunks (128 + 128 + 44); 2000 columns are several panels of x
  // that stay in L2 whatever the vector width.
  std::mt19937 rng(14);
  Pools pools;
  check_weight_grad(9, 2000, 300, pools, rng);
  check_weight_grad(33, 8, 300, pools, rng);
}

TEST(MatmulBackward, EmptyProblemsLeaveTheOutputAlone) {
  std::mt19937 rng(15);
  ThreadPool pool(2);
  const Weight w = make_weight(GgmlType::F32, 4, 8, rng);
  std::vector<float> out(32, kGuard);
  matmul_input_grad(w.view(), nullptr, 0, out.data(), pool);
  matmul_weight_grad(nullptr, 4, nullptr, 8, 0, out.data(), pool);
  for (const float v : out) EXPECT_EQ(v, kGuard);
}

TEST(MatmulBackward, RejectsUnsupportedTypesAndBadSizes) {
  ThreadPool pool(1);
  std::vector<std::uint8_t> bytes(1024);
  std::vector<float> buffer(256);
  const MatrixView q8_k{GgmlType::Q8_K, bytes.data(), 1, 256, 292};
  EXPECT_THROW(matmul_input_grad(q8_k, buffer.data(), 1, buffer.data(), pool), Error);
  const MatrixView f32{GgmlType::F32, bytes.data(), 2, 8, 32};
  EXPECT_THROW(matmul_input_grad(f32, buffer.data(), -1, buffer.data(), pool), Error);
  const MatrixView short_rows{GgmlType::F32, bytes.data(), 2, 8, 16};
  EXPECT_THROW(matmul_input_grad(short_rows, buffer.data(), 1, buffer.data(), pool), Error);
  EXPECT_THROW(matmul_input_grad(f32, nullptr, 1, buffer.data(), pool), Error);
  EXPECT_THROW(matmul_weight_grad(buffer.data(), -2, buffer.data(), 8, 1, buffer.data(), pool), Error);
  EXPECT_THROW(matmul_weight_grad(buffer.data(), 2, nullptr, 8, 1, buffer.data(), pool), Error);
}

}  // namespace
}  // namespace piquant
