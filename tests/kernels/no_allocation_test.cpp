// The kernels run per token per layer, and the engine per decoded token: none may touch
// the heap. This test binary replaces the global operator new (plain and over-aligned;
// new[] forwards to them) with ones that count calls.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "core/thread_pool.h"
#include "kernel_test_support.h"
#include "kernels/matmul.h"
#include "kernels/rope.h"
#include "kernels/vector_ops.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"
#include "quant/quantize.h"
#include "support/model_fixtures.h"

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
void* operator new(std::size_t size, std::align_val_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const auto a = static_cast<std::size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
// The nothrow forms too (std::stable_sort's temporary buffer uses one): what they return
// is freed by the plain delete above, so they must come from malloc as well (a sanitizer
// reports new/free mismatches otherwise), and they count as allocations.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size ? size : 1);
}
void* operator new(std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const auto a = static_cast<std::size_t>(align);
  return std::aligned_alloc(a, (size + a - 1) / a * a);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

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
    matrix_row_to_floats(w, 3, scratch.data());
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

// The decode loop: LlamaContext::eval of one token after another, once warm, allocates
// nothing — not the pool hand-offs of the forward pass's blocks, not the logits, not
// matmul's quantized activations (grown by the prompt already).
class EngineNoAllocation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    // The tiny preset's widths are multiples of 256, so Q4_K rows fit.
    const auto hf = testing::synth_tiny(*dir_, "synth", "512,512,512,512", 0.1f);
    const auto f32 = *dir_ / "f32.gguf";
    testing::run_piquant("convert " + testing::shell_quote(hf.string()) + " --type f32 -o " + testing::shell_quote(f32.string()));
    for (const char* recipe : {"Q4_K_M", "Q8_0"}) {
      testing::run_piquant("quantize " + testing::shell_quote(f32.string()) + " " +
                           testing::shell_quote((*dir_ / (std::string(recipe) + ".gguf")).string()) + " " + recipe);
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static testing::TempDir* dir_;
};
testing::TempDir* EngineNoAllocation::dir_ = nullptr;

TEST_F(EngineNoAllocation, DecodeAllocatesNothingPerToken) {
  for (const char* name : {"f32", "Q4_K_M", "Q8_0"}) {
    const auto model = LlamaModel::load((*dir_ / (std::string(name) + ".gguf")).string());
    for (const unsigned threads : {1u, 2u}) {
      for (const GgmlType kv : {GgmlType::F16, GgmlType::F32}) {
        ContextOptions options;
        options.n_ctx = 64;
        options.n_threads = threads;
        options.kv_type = kv;
        LlamaContext context(*model, options);
        std::vector<std::int32_t> prompt;
        for (std::int32_t i = 0; i < 20; ++i) prompt.push_back((i * 37 + 5) % 512);
        context.eval(prompt);
        std::int32_t token = 7;
        context.eval(std::span(&token, 1));  // warm-up: the first decode step
        const long before = g_allocations.load();
        for (int i = 0; i < 8; ++i) {
          token = static_cast<std::int32_t>((token * 31 + 11) % 512);
          const std::span<const float> logits = context.eval(std::span(&token, 1));
          ASSERT_EQ(logits.size(), 512u);
        }
        EXPECT_EQ(g_allocations.load() - before, 0)
            << name << ", " << threads << " threads, kv " << ggml_type_name(kv);
        EXPECT_EQ(context.n_past(), 29);
      }
    }
  }
}

}  // namespace
}  // namespace piquant
