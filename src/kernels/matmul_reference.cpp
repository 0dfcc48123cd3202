// The scalar references for matmul: plain loops from the definition, double sums.
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/matmul.h"
#include "kernels/weight_kernels.h"
#include "quant/dequantize.h"

namespace piquant::reference {

void matrix_row_to_floats(const MatrixView& w, std::int64_t r, float* out) {
  check_matrix_view(w, "reference::matrix_row_to_floats");
  if (r < 0 || r >= w.rows) throw Error("reference::matrix_row_to_floats: row " + std::to_string(r) + " out of range");
  const std::uint8_t* row = w.row(r);
  if (w.type != GgmlType::F32 && w.type != GgmlType::F16 && w.type != GgmlType::BF16 && dequantize_supports(w.type)) {
    piquant::dequantize_row(w.type, row, out, w.cols);  // ggml blocks: the scalar decoder is the reference
    return;
  }
  for (std::int64_t c = 0; c < w.cols; ++c) {
    switch (w.type) {
      case GgmlType::F32:
        std::memcpy(&out[c], row + 4 * c, 4);
        break;
      case GgmlType::F16:
      case GgmlType::BF16: {
        std::uint16_t h;
        std::memcpy(&h, row + 2 * c, 2);
        out[c] = w.type == GgmlType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
        break;
      }
      default:
        throw Error("reference::matrix_row_to_floats: weight type " + ggml_type_name(w.type) + " is not supported");
    }
  }
}

// F16 weights multiply activations rounded to F16 (what llama.cpp does, and so what
// matmul does).
float rounded_activation(GgmlType type, float v) { return type == GgmlType::F16 ? f16_to_f32(f32_to_f16(v)) : v; }

void matmul(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y) {
  std::vector<float> row(static_cast<std::size_t>(w.cols));
  for (std::int64_t r = 0; r < w.rows; ++r) {
    reference::matrix_row_to_floats(w, r, row.data());
    for (std::int64_t t = 0; t < n_tokens; ++t) {
      double sum = 0;
      for (std::int64_t c = 0; c < w.cols; ++c)
        sum += static_cast<double>(row[c]) * rounded_activation(w.type, x[t * w.cols + c]);
      y[t * w.rows + r] = static_cast<float>(sum);
    }
  }
}

}  // namespace piquant::reference
