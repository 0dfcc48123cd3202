#pragma once
// y = x · Wᵀ with float activations for every weight type: W decoded to F32 in bands of
// rows (as matrix_row_to_floats decodes it), each band multiplied by the F32 kernel of
// matmul.h. matmul() itself rounds the activations to F16 (F16 weights) or 8 bits (block
// types) as llama.cpp does, which is right for inference; training uses this product so
// that its forward is the function whose gradient matmul_backward.h computes (the
// backward never rounds the activations either), as QLoRA computes over a quantized base.
//
// Exactness: y[t][r] equals matmul() of the F32 rows matrix_row_to_floats gives, bit for
// bit (the band is an F32 matrix; matmul.h states that sum's order), so it is independent
// of the band size, the thread count and the batch. For F32 and BF16 weights it equals
// matmul(w, ...) itself.
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/matrix_view.h"

namespace piquant {

void matmul_float_activations(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y, ThreadPool& pool);

// Whether matmul() rounds the activations for this weight type (F16 and block types).
bool matmul_rounds_activations(GgmlType type);

}  // namespace piquant
