#pragma once
// y = x · Wᵀ for a weight matrix W (rows × cols) of any supported type and float
// activations: y[t][r] = Σ_c W[r][c] · x[t][c] for each of n_tokens input rows.
// One token is a matrix-vector product (decode); many are matrix-matrix (prompt).
// Rows are split across the pool's threads. As in llama.cpp's CPU backend, activations
// are rounded to F16 for F16 weights and quantized to 8 bits (Q8_0 or
// Q8_K blocks, q8_activations.h) for ggml's block types; F32 and BF16 weights take them
// as they are.
//
// Summation order, F32/F16/BF16 weights: every y[t][r] is summed the same way whatever
// the batch (token count, the token's place in it, decode or prompt), the row tile and
// the thread split, so a token's outputs are the same bits alone or in any batch (logits
// do not depend on how a prompt is split; perplexity and KL evaluate chunks in pieces).
// With N the float lanes of the SIMD target in force: the columns are cut into panels of
// 4096 (kPanelCols); in a panel, lane l of one vector accumulator takes the products of
// columns begin + l + k·N for k ascending, by multiply-add (fused where the target has
// FMA: AVX2, AVX-512, NEON), the panel's last partial vector zero-padded; the
// lanes are then added by Highway's SumOfLanes, and y = ((0 + panel 0) + panel 1) + ...
// in float. Results differ between SIMD targets (N and the lane sum differ).
//
// Quantized weights promise less: the same for any thread split, but a token's result may
// depend on the batch size, as the kernels for groups of 4 or 8 tokens, and x86's tiles of
// 16+ tokens (Q3_K..Q6_K), scale and add the same integer sums in other orders than the
// one-token kernel, for speed. Every path stays within float rounding of the reference
// (q8_matmul_test).
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/matrix_view.h"

namespace piquant {

// x: n_tokens × w.cols floats; y: n_tokens × w.rows floats (row-major).
void matmul(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y, ThreadPool& pool);

// Row r of W as floats (embedding lookup, tests).
void matrix_row_to_floats(const MatrixView& w, std::int64_t r, float* out);

bool matmul_supports(GgmlType type);

namespace reference {
// Plain scalar loops, double accumulation: what every optimised kernel is tested against.
void matmul(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y);
void matrix_row_to_floats(const MatrixView& w, std::int64_t r, float* out);
}  // namespace reference

}  // namespace piquant
