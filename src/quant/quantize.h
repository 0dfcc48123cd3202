#pragma once
// Float rows to ggml's quantized block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K),
// byte-compatible with llama.cpp. Rows must be a whole number of blocks.
#include <cstdint>

#include "formats/ggml_type.h"

namespace piquant {

bool quantize_supports(GgmlType type);

// Searched quantization: per (sub-)block, tries a grid of scales (and mins) and keeps the one
// with the least Σ w·(x − x̂)². w = importance_quant_weights(importance) when an importance
// is given (one non-negative value per element: an imatrix's mean x² per column), else
// default_quant_weights. Each block is also encoded round-to-nearest and that
// encoding is kept when it is better, so the weighted error never exceeds quantize_row_rtn's.
// Writes ggml_nbytes(type, n) bytes to out. Throws Error on a partial block, a non-finite
// input, a negative/non-finite importance, or values too large for the f16 scales.
void quantize_row(GgmlType type, const float* x, std::int64_t n, const float* importance, void* out);

// Round-to-nearest baseline: scales from each (sub-)block's extremes, no search.
void quantize_row_rtn(GgmlType type, const float* x, std::int64_t n, void* out);

// The weights of an importance-guided quantization: w[i] = importance[i] · sqrt(σ² + x[i]²),
// σ² = f · mean(x²) over a span: Q2_K f = 1 and Q3_K/Q4_K/Q5_K f = 2 over each 256-element
// super-block, Q4_0/Q4_1/Q5_0/Q5_1 f = 1 over the whole row; Q6_K and Q8_0 w = importance.
// These are llama.cpp's weightings: the importance says which columns' errors reach the
// output, the second factor keeps large weights exact within a column. (Measured on the
// default model, importance alone gave 1.5-2% more KLD than llama-quantize with the same
// imatrix, though a smaller weighted error by its own measure.) Sums in double.
void importance_quant_weights(GgmlType type, const float* x, std::int64_t n, const float* importance, float* w);

// The default weights: w[i] = x[i]² + mean(x²) over i's block (block = the type's block size).
// Large values matter more, yet small ones keep a floor so they are not ignored.
void default_quant_weights(GgmlType type, const float* x, std::int64_t n, float* w);

}  // namespace piquant
