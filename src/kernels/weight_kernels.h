#pragma once
// The kernels of one weight type, as each SIMD target's table in matmul.cpp lists them.
#include <cstdint>

#include "formats/ggml_type.h"
#include "kernels/matrix_view.h"

namespace piquant {

struct WeightKernels {
  GgmlType type;
  // Rows [r_begin, r_end) of y = x · Wᵀ for n_tokens tokens (y row-major, w.rows per token).
  void (*matmul_rows)(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y, std::int64_t r_begin,
                      std::int64_t r_end);
  void (*matrix_row_to_floats)(const MatrixView& w, std::int64_t r, float* out);
};

// Checks a view before any kernel reads it: sizes, data pointer, and that a row's bytes
// hold `cols` elements of its type. `what` names the caller in the message.
void check_matrix_view(const MatrixView& w, const char* what);

}  // namespace piquant
