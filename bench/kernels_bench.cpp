// matmul throughput: decode (1 token, mat-vec) and prompt (8 and 64 tokens, mat-mat) on
// Llama-3-8B-sized weights (attention 4096×4096, MLP gate/up 14336×4096, down 4096×14336),
// F32/F16/BF16 and ggml's block types, 1 and 2 threads. Reports weight bytes streamed
// per second, GFLOP/s (2·rows·cols·tokens per call) and tokens per second.
// PIQUANT_SIMD=avx2 (etc.) restricts the SIMD target.
// Training's backward GEMMs (matmul_backward.h): the input grad dx += dy·W and the
// weight grad dw += dyᵀ·x for 512 tokens on a 2048 × 2048 weight (F32 and Q4_K for the
// input grad, whose W is decoded; the weight grad's output is F32 whatever W is),
// GFLOP/s counted as 2·rows·cols·tokens per call.
//   kernels_bench [--benchmark_filter=f16/4096x4096] [--benchmark_filter=matmul_grad]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "kernels/matmul_backward.h"
#include "kernels/simd_target.h"
#include "quant/quantize.h"

namespace piquant {
namespace {

// Weights of a type with values like a trained layer's (small, random sign).
std::vector<std::uint8_t> random_weights(GgmlType type, std::int64_t rows, std::int64_t cols) {
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  if (quantize_supports(type)) {
    // Round-to-nearest blocks: fast to make, and the kernels' speed does not depend on
    // how the codes were chosen.
    const auto row_bytes = static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(cols)));
    std::vector<std::uint8_t> data(row_bytes * static_cast<std::size_t>(rows));
    std::vector<float> row(static_cast<std::size_t>(cols));
    std::mt19937 rng(42);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (float& f : row) f = dist(rng);
      quantize_row_rtn(type, row.data(), cols, data.data() + static_cast<std::size_t>(r) * row_bytes);
    }
    return data;
  }
  const std::size_t bytes = type == GgmlType::F32 ? 4 : 2;
  std::vector<std::uint8_t> data(n * bytes);
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (std::size_t i = 0; i < n; ++i) {
    const float f = dist(rng);
    if (type == GgmlType::F32) {
      std::memcpy(&data[4 * i], &f, 4);
    } else {
      const std::uint16_t h = type == GgmlType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
      std::memcpy(&data[2 * i], &h, 2);
    }
  }
  return data;
}

void bench_matmul(benchmark::State& state, GgmlType type, std::int64_t rows, std::int64_t cols,
                  std::int64_t tokens, unsigned threads) {
  const std::vector<std::uint8_t> weights = random_weights(type, rows, cols);
  const std::size_t row_bytes = weights.size() / static_cast<std::size_t>(rows);
  const MatrixView w{type, weights.data(), rows, cols, row_bytes};
  std::vector<float> x(static_cast<std::size_t>(tokens * cols));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& v : x) v = dist(rng);
  std::vector<float> y(static_cast<std::size_t>(tokens * rows));
  ThreadPool pool(threads);
  for (auto _ : state) {
    matmul(w, x.data(), tokens, y.data(), pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(tokens);
  // Rates (Google Benchmark appends "/s"): weight gigabytes, gigaflops, tokens.
  state.counters["weights_GB"] =
      benchmark::Counter(static_cast<double>(weights.size()) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(simd_target());
}

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::vector<float> v(n);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& f : v) f = dist(rng);
  return v;
}

void set_gemm_counters(benchmark::State& state, std::int64_t rows, std::int64_t cols, std::int64_t tokens) {
  const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(tokens);
  state.counters["GFLOP"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(simd_target());
}

// dx (tokens × cols) += dy (tokens × rows) · W.
void bench_input_grad(benchmark::State& state, GgmlType type, std::int64_t rows, std::int64_t cols,
                      std::int64_t tokens, unsigned threads) {
  const std::vector<std::uint8_t> weights = random_weights(type, rows, cols);
  const MatrixView w{type, weights.data(), rows, cols, weights.size() / static_cast<std::size_t>(rows)};
  const std::vector<float> dy = random_floats(static_cast<std::size_t>(tokens * rows), 7);
  std::vector<float> dx(static_cast<std::size_t>(tokens * cols), 0.0f);
  ThreadPool pool(threads);
  for (auto _ : state) {
    matmul_input_grad(w, dy.data(), tokens, dx.data(), pool);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, rows, cols, tokens);
}

// dw (rows × cols) += dyᵀ · x.
void bench_weight_grad(benchmark::State& state, std::int64_t rows, std::int64_t cols, std::int64_t tokens,
                       unsigned threads) {
  const std::vector<float> dy = random_floats(static_cast<std::size_t>(tokens * rows), 7);
  const std::vector<float> x = random_floats(static_cast<std::size_t>(tokens * cols), 8);
  std::vector<float> dw(static_cast<std::size_t>(rows * cols), 0.0f);
  ThreadPool pool(threads);
  for (auto _ : state) {
    matmul_weight_grad(dy.data(), rows, x.data(), cols, tokens, dw.data(), pool);
    benchmark::DoNotOptimize(dw.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, rows, cols, tokens);
}

void register_benchmarks() {
  for (const unsigned threads : {1u, 2u}) {
    for (const GgmlType type : {GgmlType::F32, GgmlType::Q4_K}) {
      const std::string name = "matmul_grad/input/" + ggml_type_name(type) + "/2048x2048/tokens:512/threads:" +
                               std::to_string(threads);
      benchmark::RegisterBenchmark(name.c_str(), bench_input_grad, type, 2048, 2048, 512, threads)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
    const std::string name = "matmul_grad/weight/f32/2048x2048/tokens:512/threads:" + std::to_string(threads);
    benchmark::RegisterBenchmark(name.c_str(), bench_weight_grad, 2048, 2048, 512, threads)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }

  struct Shape {
    std::int64_t rows, cols;
  };
  for (const GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
                              GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K, GgmlType::Q3_K,
                              GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K})
    for (const Shape shape : {Shape{4096, 4096}, Shape{14336, 4096}, Shape{4096, 14336}})
      for (const std::int64_t tokens : {1, 8, 64})
        for (const unsigned threads : {1u, 2u}) {
          const std::string name = "matmul/" + ggml_type_name(type) + "/" + std::to_string(shape.rows) + "x" +
                                   std::to_string(shape.cols) + "/tokens:" + std::to_string(tokens) +
                                   "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(name.c_str(), bench_matmul, type, shape.rows, shape.cols, tokens, threads)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
}

}  // namespace
}  // namespace piquant

int main(int argc, char** argv) {
  try {
    piquant::force_simd_target_from_env();
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  piquant::register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
