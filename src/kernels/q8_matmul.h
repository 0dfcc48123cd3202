#pragma once
// Quantized weights × Q8 activations: the integer kernels of decode. For every ggml block
// type, rows [r_begin, r_end) of y = x · Wᵀ, y[t * w.rows + r] for each of x's tokens,
// where x holds the activations already quantized (Q8Activations). Each kernel is
// compiled per SIMD target (Highway) and dispatched at run time; the scalar reference is
// reference::matmul on x.dequantize(t) (the same numbers, summed in double).
#include <cstdint>

#include "formats/ggml_type.h"
#include "kernels/matrix_view.h"
#include "kernels/q8_activations.h"

namespace piquant {

using Q8MatmulRows = void (*)(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                              std::int64_t r_end);

// One finder per block family, each in its own translation unit; each returns the
// kernel of the SIMD target chosen now, or nullptr for a type it does not cover.
Q8MatmulRows find_q8_matmul_legacy(GgmlType type);  // Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (q8_matmul_legacy.cpp)
Q8MatmulRows find_q8_matmul_k32(GgmlType type);     // Q4_K, Q5_K: sub-blocks of 32 (q8_matmul_k32.cpp)
Q8MatmulRows find_q8_matmul_k16(GgmlType type);     // Q2_K, Q3_K, Q6_K: sub-blocks of 16 (q8_matmul_k16.cpp)

// Any of the above; nullptr for types without an integer kernel (F32, F16, BF16).
Q8MatmulRows find_q8_matmul(GgmlType type);

}  // namespace piquant
