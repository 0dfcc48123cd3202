// The scalar references for the matmul gradients: plain loops from the definition, double
// sums, one rounding to float per output.
#include <vector>

#include "core/error.h"
#include "kernels/matmul.h"
#include "kernels/matmul_backward.h"

namespace piquant::reference {

void matmul_input_grad(const MatrixView& w, const float* dy, std::int64_t n_tokens, float* dx) {
  if (n_tokens < 0) throw Error("reference::matmul_input_grad: negative token count");
  std::vector<float> weights(static_cast<std::size_t>(w.rows * w.cols));
  for (std::int64_t r = 0; r < w.rows; ++r) reference::matrix_row_to_floats(w, r, &weights[r * w.cols]);
  for (std::int64_t t = 0; t < n_tokens; ++t)
    for (std::int64_t c = 0; c < w.cols; ++c) {
      double sum = dx[t * w.cols + c];
      for (std::int64_t r = 0; r < w.rows; ++r)
        sum += static_cast<double>(dy[t * w.rows + r]) * weights[r * w.cols + c];
      dx[t * w.cols + c] = static_cast<float>(sum);
    }
}

void matmul_weight_grad(const float* dy, std::int64_t rows, const float* x, std::int64_t cols, std::int64_t n_tokens,
                        float* dw) {
  if (rows < 0 || cols < 0 || n_tokens < 0) throw Error("reference::matmul_weight_grad: negative size");
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      double sum = dw[r * cols + c];
      for (std::int64_t t = 0; t < n_tokens; ++t) sum += static_cast<double>(dy[t * rows + r]) * x[t * cols + c];
      dw[r * cols + c] = static_cast<float>(sum);
    }
}

}  // namespace piquant::reference
