#pragma once
// The backward of a linear layer y = x · Wᵀ (matmul.h): the gradient of its input,
// dx = dy · W, and of its weight, dW = dyᵀ · x, accumulated into the caller's buffers.
// W may be any type matmul_supports (F32/F16/BF16 and ggml's block types); dy, x, dx and
// dW are float, row-major. Half and quantized weights are used exactly as
// matrix_row_to_floats decodes them; dy is not rounded (the forward rounds activations
// for F16 and block weights, the backward does not).
//
// Summation order, the same for any thread count and any split of the work (training is
// deterministic and independent of the thread count), on every SIMD target:
//   input grad:  acc ← dx[t][c]; for r = 0, 1, ..., w.rows − 1: acc ← acc + dy[t][r]·W[r][c];
//                dx[t][c] ← acc
//   weight grad: acc ← dw[r][c]; for t = 0, 1, ..., n_tokens − 1: acc ← acc + dy[t][r]·x[t][c];
//                dw[r][c] ← acc
// one chain per output element, starting from its value on entry, with no partial sums:
// the blocking below (bands of rows, chunks of tokens, strips of columns) only decides
// when acc is stored and reloaded, which is exact. Each step is one fused multiply-add
// where the target has FMA (AVX2, AVX-512, NEON) and a rounded product then a rounded sum
// where it has not (SSE4, the portable baseline), so targets with FMA agree bit for bit
// with each other (and with std::fma), and those without agree with each other.
//
// Blocking and scratch (allocated per call, bounded by a band or chunk, never the whole
// dequantized matrix):
//   input grad:  W is decoded kBandRows rows at a time (fewer for long rows, ≤ 4 MiB)
//                into F32 strips of columns, by all threads; then threads split dx's
//                columns (by strips; by tokens when there are fewer strips than threads)
//                and run register tiles of 4 tokens × 2 or 3 vectors of columns over the
//                band's rows.
//   weight grad: x is copied kChunkTokens tokens at a time into F32 strips of columns;
//                threads split dw's rows, transpose 4 rows of dy at a time and run
//                register tiles of 4 rows × 2 or 3 vectors of columns over the chunk's
//                tokens, in column panels that stay in L2.
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/matrix_view.h"

namespace piquant {

// dx (n_tokens × w.cols) += dy (n_tokens × w.rows) · W, for every type matmul_supports.
void matmul_input_grad(const MatrixView& w, const float* dy, std::int64_t n_tokens, float* dx, ThreadPool& pool);

// dw (rows × cols) += dyᵀ · x: dw[r][c] += Σ_t dy[t][r] · x[t][c], with dy n_tokens × rows
// and x n_tokens × cols.
void matmul_weight_grad(const float* dy, std::int64_t rows, const float* x, std::int64_t cols, std::int64_t n_tokens,
                        float* dw, ThreadPool& pool);

namespace reference {
// Straight from the definition in double (W decoded by reference::matrix_row_to_floats),
// each output rounded to float once: dx[t][c] = float(dx[t][c] + Σ_r dy[t][r]·W[r][c]).
void matmul_input_grad(const MatrixView& w, const float* dy, std::int64_t n_tokens, float* dx);
// dw[r][c] = float(dw[r][c] + Σ_t dy[t][r]·x[t][c]) in double.
void matmul_weight_grad(const float* dy, std::int64_t rows, const float* x, std::int64_t cols, std::int64_t n_tokens,
                        float* dw);
}  // namespace reference

}  // namespace piquant
