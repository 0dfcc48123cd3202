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

}  // namespace
}  // namespace piquant
