#pragma once
// y = x · Wᵀ for a weight matrix W (rows × cols) of any supported type and float
// activations: y[t][r] = Σ_c W[r][c] · x[t][c] for each of n_tokens input rows.
// One token is a matrix-vector product (decode); many are matrix-matrix (prompt).
// Rows are split across the pool's threads. As in llama.cpp's CPU backend, activations
// are rounded to F16 for F16 weights and quantized to 8 bits (Q8_0 or
// Q8_K blocks, q8_activations.h) for ggml's block types; F32 and BF16 weights take them
// as they are.
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/matrix_view.h"

namespace piquant {

// x: n_tokens × w.cols floats; y: n_tokens × w.rows floats (row-major).
void matmul(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y, ThreadPool& pool);

// Row r of W as floats (embedding lookup, tests).
void dequantize_row(const MatrixView& w, std::int64_t r, float* out);

bool matmul_supports(GgmlType type);

namespace reference {
// Plain scalar loops, double accumulation: what every optimised kernel is tested against.
void matmul(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y);
void dequantize_row(const MatrixView& w, std::int64_t r, float* out);
}  // namespace reference

}  // namespace piquant
