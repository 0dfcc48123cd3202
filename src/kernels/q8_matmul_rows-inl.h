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
// The same row against 4 tokens at once: out[i] = Dot(row, x[i], cols). Each weight
// block is decoded once for the 4 (prompts).
using Q8Dot4 = void (*)(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out);

// Tokens are taken in chunks whose activations (int16) fill about this much of L2, so
// each weight row comes from memory once per chunk.
constexpr std::int64_t kQ8ActivationChunkBytes = 256 * 1024;
// Inside a chunk, rows go in blocks of about this many bytes, and each group of 4 tokens
// runs over the whole block: the block's rows stay in L2 (they are read once per group)
// and the group's activations in L1 (read once per row). Row by row instead, every row
// would stream the chunk's activations from L2 again.
constexpr std::int64_t kQ8RowBlockBytes = 64 * 1024;

// Groups of 4 tokens go through Dot4 when kHasDot4, the rest through Dot.
template <Q8Dot Dot, Q8Dot4 Dot4, bool kHasDot4>
HWY_INLINE void Q8MatmulRowsChunked(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                                    std::int64_t r_end) {
  const std::int64_t n_tokens = x.n_tokens();
  const std::int64_t chunk =
      std::max<std::int64_t>(4, kQ8ActivationChunkBytes / std::max<std::int64_t>(1, 2 * w.cols) / 4 * 4);
  const std::int64_t row_block =
      std::max<std::int64_t>(1, kQ8RowBlockBytes / std::max<std::int64_t>(1, static_cast<std::int64_t>(w.row_bytes)));
  for (std::int64_t t0 = 0; t0 < n_tokens; t0 += chunk) {
    const std::int64_t t1 = std::min(n_tokens, t0 + chunk);
    for (std::int64_t rb = r_begin; rb < r_end; rb += row_block) {
      const std::int64_t re = std::min(r_end, rb + row_block);
      std::int64_t t = t0;
      if constexpr (kHasDot4) {
        for (; t + 4 <= t1; t += 4) {
          const Q8Row xs[4] = {x.token(t), x.token(t + 1), x.token(t + 2), x.token(t + 3)};
          for (std::int64_t r = rb; r < re; ++r) {
            float out[4];
            Dot4(w.row(r), xs, w.cols, out);
            for (int i = 0; i < 4; ++i) y[(t + i) * w.rows + r] = out[i];
          }
        }
      }
      for (; t < t1; ++t) {
        const Q8Row xt = x.token(t);
        for (std::int64_t r = rb; r < re; ++r) y[t * w.rows + r] = Dot(w.row(r), xt, w.cols);
      }
    }
  }
}

// A type with only a 1-token kernel.
template <Q8Dot Dot>
HWY_NOINLINE void Q8MatmulRowsLoop(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                                   std::int64_t r_end) {
  Q8MatmulRowsChunked<Dot, nullptr, false>(w, x, y, r_begin, r_end);
}

// A type with a 4-token kernel for prompts as well.
template <Q8Dot Dot, Q8Dot4 Dot4>
HWY_NOINLINE void Q8MatmulRowsLoop(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                                   std::int64_t r_end) {
  Q8MatmulRowsChunked<Dot, Dot4, true>(w, x, y, r_begin, r_end);
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
