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
// The same row against a group of tokens at once (4 unless the row loop says otherwise):
// out[i] = Dot(row, x[i], cols). Each weight block is decoded once for the group (prompts).
using Q8Dot4 = void (*)(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out);

// Tokens are taken in chunks whose activations (int16) fill about this much of L2, so
// each weight row comes from memory once per chunk.
constexpr std::int64_t kQ8ActivationChunkBytes = 256 * 1024;
// Inside a chunk, rows go in blocks of about this many bytes, and each group of 4 tokens
// runs over the whole block: the block's rows stay in L2 (they are read once per group)
// and the group's activations in L1 (read once per row). Row by row instead, every row
// would stream the chunk's activations from L2 again.
constexpr std::int64_t kQ8RowBlockBytes = 64 * 1024;

// Two consecutive rows (row, row + row_bytes) against a group of tokens: out[0..group)
// for the first row, out[group..2·group) for the second. Each activation vector loaded
// serves both rows.
using Q8Dot2Rows = void (*)(const std::uint8_t* row, std::size_t row_bytes, const Q8Row* x, std::int64_t cols,
                            float* out);

// Groups of kGroup tokens go through DotN (kGroup = 0: none), or through Dot2Rows two rows
// at a time when kTwoRows; the rest through Dot. (Flags rather than tests of the function
// pointers against nullptr: GCC cannot evaluate those at compile time under -fsanitize=undefined.)
template <Q8Dot Dot, Q8Dot4 DotN, int kGroup, Q8Dot2Rows Dot2Rows, bool kTwoRows>
HWY_INLINE void Q8MatmulRowsChunked(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                                    std::int64_t r_end) {
  const std::int64_t n_tokens = x.n_tokens();
  constexpr std::int64_t kChunkMultiple = kGroup > 0 ? kGroup : 1;
  const std::int64_t chunk = std::max<std::int64_t>(
      kChunkMultiple,
      kQ8ActivationChunkBytes / std::max<std::int64_t>(1, 2 * w.cols) / kChunkMultiple * kChunkMultiple);
  const std::int64_t row_block =
      std::max<std::int64_t>(1, kQ8RowBlockBytes / std::max<std::int64_t>(1, static_cast<std::int64_t>(w.row_bytes)));
  for (std::int64_t t0 = 0; t0 < n_tokens; t0 += chunk) {
    const std::int64_t t1 = std::min(n_tokens, t0 + chunk);
    for (std::int64_t rb = r_begin; rb < r_end; rb += row_block) {
      const std::int64_t re = std::min(r_end, rb + row_block);
      std::int64_t t = t0;
      if constexpr (kGroup > 0) {
        for (; t + kGroup <= t1; t += kGroup) {
          Q8Row xs[kGroup];
          for (int i = 0; i < kGroup; ++i) xs[i] = x.token(t + i);
          std::int64_t r = rb;
          if constexpr (kTwoRows) {
            for (; r + 2 <= re; r += 2) {
              float out[2 * kGroup];
              Dot2Rows(w.row(r), w.row_bytes, xs, w.cols, out);
              for (int i = 0; i < kGroup; ++i) {
                y[(t + i) * w.rows + r] = out[i];
                y[(t + i) * w.rows + r + 1] = out[kGroup + i];
              }
            }
          }
          for (; r < re; ++r) {
            float out[kGroup];
            DotN(w.row(r), xs, w.cols, out);
            for (int i = 0; i < kGroup; ++i) y[(t + i) * w.rows + r] = out[i];
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
  Q8MatmulRowsChunked<Dot, nullptr, 0, nullptr, false>(w, x, y, r_begin, r_end);
}

// A type with a kernel for groups of kGroup tokens as well (prompts): Dot4 takes 4.
template <Q8Dot Dot, Q8Dot4 DotN, int kGroup = 4>
HWY_NOINLINE void Q8MatmulRowsLoop(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                                   std::int64_t r_end) {
  Q8MatmulRowsChunked<Dot, DotN, kGroup, nullptr, false>(w, x, y, r_begin, r_end);
}

// ... and one for two rows × a group of tokens.
template <Q8Dot Dot, Q8Dot4 DotN, int kGroup, Q8Dot2Rows Dot2Rows>
HWY_NOINLINE void Q8MatmulRowsLoopTwoRows(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                                          std::int64_t r_end) {
  Q8MatmulRowsChunked<Dot, DotN, kGroup, Dot2Rows, true>(w, x, y, r_begin, r_end);
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
