#pragma once
// Encodes float rows into a GGUF tensor type: the float types by conversion, ggml's
// block types by the weighted-search quantizers in quant/quantize.h.
#include <cstdint>

#include "formats/ggml_type.h"

namespace piquant {

bool row_encoder_supports(GgmlType type);

// Encodes n_rows × row_length floats into dst (ggml_nbytes(type, n_rows * row_length)
// bytes). `importance` (row_length values, e.g. an imatrix's mean x² per column) weights
// the quantization error of each column; nullptr uses the quantizers' default.
void encode_rows(GgmlType type, const float* src, std::int64_t n_rows, std::int64_t row_length, std::uint8_t* dst,
                 const float* importance = nullptr);

}  // namespace piquant
