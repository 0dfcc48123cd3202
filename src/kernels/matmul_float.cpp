#include "kernels/matmul_float.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/matmul.h"

namespace piquant {

namespace {
// Rows decoded at a time: enough that the F32 kernel's token tiles amortise reading x,
// few enough that the band (rows × cols floats, 4 MiB at most) stays in cache.
std::int64_t band_rows(std::int64_t cols) { return std::clamp<std::int64_t>((std::int64_t{1} << 20) / std::max<std::int64_t>(cols, 1), 8, 256); }
}  // namespace

bool matmul_rounds_activations(GgmlType type) { return type != GgmlType::F32 && type != GgmlType::BF16; }

void matmul_float_activations(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y, ThreadPool& pool) {
  if (!matmul_rounds_activations(w.type)) {
    matmul(w, x, n_tokens, y, pool);
    return;
  }
  if (w.rows < 0 || w.cols < 0 || n_tokens < 0) {
    throw Error("matmul_float_activations: " + std::to_string(w.rows) + " × " + std::to_string(w.cols) + " weight, " +
                std::to_string(n_tokens) + " tokens");
  }
  const std::int64_t band = std::min(band_rows(w.cols), std::max<std::int64_t>(w.rows, 1));
  std::vector<float> rows(static_cast<std::size_t>(band * w.cols));
  std::vector<float> out(static_cast<std::size_t>(band * n_tokens));
  for (std::int64_t r0 = 0; r0 < w.rows; r0 += band) {
    const std::int64_t n = std::min(band, w.rows - r0);
    pool.parallel_for(n, 1, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) matrix_row_to_floats(w, r0 + i, rows.data() + i * w.cols);
    });
    const MatrixView f32{GgmlType::F32, reinterpret_cast<const std::uint8_t*>(rows.data()), n, w.cols,
                         4u * static_cast<std::size_t>(w.cols)};
    matmul(f32, x, n_tokens, out.data(), pool);
    for (std::int64_t t = 0; t < n_tokens; ++t) std::copy_n(out.data() + t * n, n, y + t * w.rows + r0);
  }
}

}  // namespace piquant
