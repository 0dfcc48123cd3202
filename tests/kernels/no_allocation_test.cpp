// The kernels run per token per layer: none may touch the heap. This test binary
// replaces the global operator new with one that counts calls.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "core/thread_pool.h"
#include "kernel_test_support.h"
#include "kernels/matmul.h"
#include "kernels/rope.h"
#include "kernels/vector_ops.h"
#include "quant/quantize.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace piquant {
namespace {

using namespace kernel_test;

TEST(NoAllocation, KernelsDoNotAllocatePerCall) {
  std::mt19937 rng(30);
  const std::int64_t rows = 40, cols = 300;
  const std::vector<std::uint8_t> weights = encode(random_floats(rows * cols, rng), GgmlType::F16);
  const MatrixView w{GgmlType::F16, weights.data(), rows, cols, static_cast<std::size_t>(cols) * 2};
  const std::vector<float> x = random_floats(8 * cols, rng);
  std::vector<float> y(8 * rows), scratch(cols), out(cols);
  std::vector<std::uint16_t> halves(cols);
  const std::vector<float> norm(cols, 1.0f);
  const RopeTable rope(60, 10000.0, {}, RopePairing::HalfSplit);
  // Two threads: the pool's own hand-off must not allocate either.
  ThreadPool pool(2);
  const auto run_all = [&] {
    matmul(w, x.data(), 1, y.data(), pool);
    matmul(w, x.data(), 8, y.data(), pool);
    dequantize_row(w, 3, scratch.data());
    rms_norm(x.data(), norm.data(), cols, 1e-5f, out.data());
    softmax(out.data(), cols);
    swiglu(x.data(), x.data() + cols, cols, out.data());
    volatile float sink = dot(x.data(), halves.data(), GgmlType::F16, cols);
    (void)sink;
    axpy(0.5f, halves.data(), GgmlType::BF16, cols, out.data());
    store_row(x.data(), cols, GgmlType::F16, halves.data());
    rope.apply(out.data(), 5, 123);
  };
  run_all();  // first calls may set up Highway's dispatch
  const long before = g_allocations.load();
  run_all();
  EXPECT_EQ(g_allocations.load() - before, 0);
}

TEST(NoAllocation, QuantizedMatmulDoesNotAllocatePerCall) {
  std::mt19937 rng(31);
  const std::int64_t rows = 40, cols = 512;
  const std::vector<float> values = random_floats(rows * cols, rng);
  const std::vector<float> x = random_floats(8 * cols, rng);
  std::vector<float> y(8 * rows);
  ThreadPool pool(2);
  for (const GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q4_1}) {
    const std::size_t row_bytes = static_cast<std::size_t>(ggml_nbytes(type, cols));
    std::vector<std::uint8_t> blocks(row_bytes * rows);
    for (std::int64_t r = 0; r < rows; ++r)
      quantize_row_rtn(type, values.data() + r * cols, cols, blocks.data() + r * row_bytes);
    const MatrixView w{type, blocks.data(), rows, cols, row_bytes};
    // Activation buffers are per calling thread and grow to the largest call once.
    matmul(w, x.data(), 8, y.data(), pool);
    const long before = g_allocations.load();
    matmul(w, x.data(), 1, y.data(), pool);
    matmul(w, x.data(), 8, y.data(), pool);
    EXPECT_EQ(g_allocations.load() - before, 0) << ggml_type_name(type);
  }
}

}  // namespace
}  // namespace piquant
