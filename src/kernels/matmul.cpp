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

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

// One entry per weight type this target runs. A new type (ggml's quantized blocks) is a
// kernel pair and one line here.
constexpr WeightKernels kWeightKernels[] = {
    {GgmlType::F32, &MatmulRows<F32Elements>, &DequantizeRow<F32Elements>},
    {GgmlType::F16, &MatmulRows<F16Elements>, &DequantizeRow<F16Elements>},
    {GgmlType::BF16, &MatmulRows<BF16Elements>, &DequantizeRow<BF16Elements>},
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
#include "quant/dequantize.h"

namespace piquant {

HWY_EXPORT(FindWeightKernels);

namespace {

// Rows per thread are a multiple of this: 16 floats of y are one 64-byte cache line, so
// two threads never write the same line of a token's output.
constexpr std::int64_t kRowGrain = 16;

// ggml's quantized blocks, until each gets its own SIMD kernel: decode a row once into
// a per-thread buffer, then SIMD float dots against every token.
void QuantizedDequantizeRow(const MatrixView& w, std::int64_t r, float* out) {
  dequantize_row(w.type, w.row(r), out, w.cols);
}

void QuantizedMatmulRows(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y, std::int64_t r_begin,
                         std::int64_t r_end) {
  thread_local std::vector<float> row;
  row.resize(static_cast<std::size_t>(w.cols));
  for (std::int64_t r = r_begin; r < r_end; ++r) {
    QuantizedDequantizeRow(w, r, row.data());
    for (std::int64_t t = 0; t < n_tokens; ++t) y[t * w.rows + r] = dot(x + t * w.cols, row.data(), GgmlType::F32, w.cols);
  }
}

const WeightKernels* find_kernels(GgmlType type) {
  if (const WeightKernels* k = HWY_DYNAMIC_DISPATCH(FindWeightKernels)(type)) return k;
  static const WeightKernels quantized{GgmlType::Q8_0, &QuantizedMatmulRows, &QuantizedDequantizeRow};
  return dequantize_supports(type) ? &quantized : nullptr;
}

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

void dequantize_row(const MatrixView& w, std::int64_t r, float* out) {
  const WeightKernels& k = kernels_for(w, "dequantize_row");
  if (r < 0 || r >= w.rows)
    throw Error("dequantize_row: row " + std::to_string(r) + " is outside the matrix's " + std::to_string(w.rows) +
                " rows");
  k.dequantize_row(w, r, out);
}

}  // namespace piquant
#endif  // HWY_ONCE
