// The row loop shared by every Q8 kernel: one weight row against each token's quantized
// activations, for decode and prompts alike (llama.cpp also multiplies quantized weights
// with quantized activations for every batch size, and matching it matters more here than
// prompt speed; multi-token tiles come with the speed work). Dot(row, token, cols) is a per-target function of one block family
// (q8_dot_*-inl.h). Included once per Highway target (hence no #pragma once).
#if defined(PIQUANT_KERNELS_Q8_MATMUL_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PIQUANT_KERNELS_Q8_MATMUL_ROWS_INL_H_
#undef PIQUANT_KERNELS_Q8_MATMUL_ROWS_INL_H_
#else
#define PIQUANT_KERNELS_Q8_MATMUL_ROWS_INL_H_
#endif

#include <algorithm>
#include <cstdint>

#include "hwy/highway.h"
#include "kernels/matrix_view.h"
#include "kernels/q8_activations.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

using Q8Dot = float (*)(const std::uint8_t* row, const Q8Row& x, std::int64_t cols);

// Tokens are taken in chunks whose activations (int16) fill about this much of L2, so
// each weight row comes from memory once per chunk and stays in L1 for the chunk's tokens.
constexpr std::int64_t kQ8ActivationChunkBytes = 256 * 1024;

template <Q8Dot Dot>
HWY_NOINLINE void Q8MatmulRowsLoop(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                                   std::int64_t r_end) {
  const std::int64_t n_tokens = x.n_tokens();
  const std::int64_t chunk =
      std::max<std::int64_t>(1, kQ8ActivationChunkBytes / std::max<std::int64_t>(1, 2 * w.cols));
  for (std::int64_t t0 = 0; t0 < n_tokens; t0 += chunk) {
    const std::int64_t t1 = std::min(n_tokens, t0 + chunk);
    for (std::int64_t r = r_begin; r < r_end; ++r) {
      const std::uint8_t* row = w.row(r);
      for (std::int64_t t = t0; t < t1; ++t) y[t * w.rows + r] = Dot(row, x.token(t), w.cols);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
