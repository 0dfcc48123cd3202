#include "kernels/matmul.h"

#include "kernels/simd_config.h"
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul.cpp"
#include "hwy/foreach_target.h"
#include "hwy/highway.h"
// clang-format on
#include "kernels/matmul_tiles-inl.h"
#include "kernels/weight_kernels.h"
#include "quant/dequantize.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

// Row r of ggml blocks as floats, through the scalar block decoder.
HWY_NOINLINE void DequantizeBlocksRow(const MatrixView& w, std::int64_t r, float* out) {
  dequantize_row(w.type, w.row(r), out, w.cols);
}

// One entry per weight type this target runs. ggml's quantized blocks multiply through
// their integer Q8 kernels (q8_matmul.h), so they list only a row decoder here.
constexpr WeightKernels kWeightKernels[] = {
    {GgmlType::F32, &MatmulRows<F32Elements>, &MatrixRowToFloats<F32Elements>},
    {GgmlType::F16, &MatmulRows<F16Elements>, &MatrixRowToFloats<F16Elements>},
    {GgmlType::BF16, &MatmulRows<BF16Elements>, &MatrixRowToFloats<BF16Elements>},
    {GgmlType::Q8_0, nullptr, &DequantizeBlocksRow},
    {GgmlType::Q4_0, nullptr, &DequantizeBlocksRow},
    {GgmlType::Q4_1, nullptr, &DequantizeBlocksRow},
    {GgmlType::Q5_0, nullptr, &DequantizeBlocksRow},
    {GgmlType::Q5_1, nullptr, &DequantizeBlocksRow},
    {GgmlType::Q2_K, nullptr, &DequantizeBlocksRow},
    {GgmlType::Q3_K, nullptr, &DequantizeBlocksRow},
    {GgmlType::Q4_K, nullptr, &DequantizeBlocksRow},
    {GgmlType::Q5_K, nullptr, &DequantizeBlocksRow},
    {GgmlType::Q6_K, nullptr, &DequantizeBlocksRow},
};

const WeightKernels* FindWeightKernels(GgmlType type) {
  for (const WeightKernels& k : kWeightKernels)
    if (k.type == type) return &k;
  return nullptr;
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <vector>

#include "core/error.h"
#include "kernels/vector_ops.h"
#include "kernels/q8_activations.h"
#include "kernels/q8_matmul.h"

namespace piquant {

HWY_EXPORT(FindWeightKernels);

namespace {

// Rows per thread are a multiple of this: 16 floats of y are one 64-byte cache line, so
// two threads never write the same line of a token's output.
constexpr std::int64_t kRowGrain = 16;

// Below this many tokens, quantizing the activations on the calling thread is cheaper
// than handing it to the pool.
constexpr std::int64_t kParallelQuantizeTokens = 4;

const WeightKernels* find_kernels(GgmlType type) { return HWY_DYNAMIC_DISPATCH(FindWeightKernels)(type); }

// Looked up on the calling thread, so Highway's one-time target choice happens before
// any worker runs.
const WeightKernels& kernels_for(const MatrixView& w, const char* what) {
  const WeightKernels* k = find_kernels(w.type);
  if (k == nullptr)
    throw Error(std::string(what) + ": weight type " + ggml_type_name(w.type) + " is not supported");
  check_matrix_view(w, what);
  return *k;
}

}  // namespace

void check_matrix_view(const MatrixView& w, const char* what) {
  // Messages are built only when throwing: this runs on every matmul call.
  if (w.rows < 0 || w.cols < 0)
    throw Error(std::string(what) + ": matrix shape " + std::to_string(w.rows) + " x " + std::to_string(w.cols) +
                " is negative");
  const std::uint64_t needed = ggml_nbytes(w.type, static_cast<std::uint64_t>(w.cols));
  if (w.row_bytes < needed)
    throw Error(std::string(what) + ": row stride " + std::to_string(w.row_bytes) + " bytes is smaller than a row of " +
                std::to_string(w.cols) + " " + ggml_type_name(w.type) + " elements (" + std::to_string(needed) +
                " bytes)");
  if (w.data == nullptr && w.rows > 0 && w.cols > 0) throw Error(std::string(what) + ": matrix has no data");
}

bool matmul_supports(GgmlType type) { return find_kernels(type) != nullptr; }

void matmul(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y, ThreadPool& pool) {
  const WeightKernels& k = kernels_for(w, "matmul");
  if (n_tokens < 0) throw Error("matmul: negative token count " + std::to_string(n_tokens));
  if (n_tokens == 0 || w.rows == 0) return;
  if (y == nullptr || (x == nullptr && w.cols > 0)) throw Error("matmul: null activation or output buffer");
  if (w.type == GgmlType::F16) {
    // llama.cpp multiplies F16 weights with activations rounded to F16; rounding the same
    // way keeps both engines' numbers equal (interop tests). Its BF16 rounding (8 bits of
    // mantissa) is not copied: BF16 is how checkpoints arrive, and their activations stay
    // float.
    thread_local std::vector<std::uint16_t> halves;
    thread_local std::vector<float> rounded;
    const auto n = static_cast<std::size_t>(n_tokens * w.cols);
    if (halves.size() < n) halves.resize(n);
    if (rounded.size() < n) rounded.resize(n);
    store_row(x, n_tokens * w.cols, w.type, halves.data());
    const MatrixView as_row{w.type, reinterpret_cast<const std::uint8_t*>(halves.data()), 1, n_tokens * w.cols,
                            n * sizeof(std::uint16_t)};
    k.matrix_row_to_floats(as_row, 0, rounded.data());
    x = rounded.data();
  }
  if (const Q8MatmulRows q8 = find_q8_matmul(w.type)) {
    thread_local Q8Activations activations;  // reused: no allocation per call once warm
    activations.prepare(n_tokens, w.cols, q8_blocks_for(w.type));
    const struct {
      Q8MatmulRows kernel;
      const MatrixView& w;
      const float* x_float;
      Q8Activations& x;
      float* y;
    } q8_call{q8, w, x, activations, y};
    if (n_tokens < kParallelQuantizeTokens) {
      activations.quantize_tokens(x, 0, n_tokens);
    } else {
      pool.parallel_for(n_tokens, 1, [&q8_call](std::int64_t begin, std::int64_t end) {
        q8_call.x.quantize_tokens(q8_call.x_float, begin, end);
      });
    }
    pool.parallel_for(w.rows, kRowGrain, [&q8_call](std::int64_t begin, std::int64_t end) {
      q8_call.kernel(q8_call.w, q8_call.x, q8_call.y, begin, end);
    });
    return;
  }
  if (k.matmul_rows == nullptr)
    throw Error("matmul: weight type " + ggml_type_name(w.type) + " has no kernel on this SIMD target");
  // One captured reference keeps the lambda inside std::function's small buffer: no
  // allocation per call.
  const struct {
    const WeightKernels& k;
    const MatrixView& w;
    const float* x;
    std::int64_t n_tokens;
    float* y;
  } call{k, w, x, n_tokens, y};
  pool.parallel_for(w.rows, kRowGrain, [&call](std::int64_t begin, std::int64_t end) {
    call.k.matmul_rows(call.w, call.x, call.n_tokens, call.y, begin, end);
  });
}

void matrix_row_to_floats(const MatrixView& w, std::int64_t r, float* out) {
  const WeightKernels& k = kernels_for(w, "matrix_row_to_floats");
  if (r < 0 || r >= w.rows)
    throw Error("matrix_row_to_floats: row " + std::to_string(r) + " is outside the matrix's " + std::to_string(w.rows) +
                " rows");
  k.matrix_row_to_floats(w, r, out);
}

}  // namespace piquant
#endif  // HWY_ONCE
