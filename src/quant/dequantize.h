#pragma once
// Scalar reference decoding of ggml tensor rows to float.
#include <cstdint>

#include "formats/ggml_type.h"

namespace piquant {

bool dequantize_supports(GgmlType type);

// Decodes n elements stored as `type` (ggml_nbytes(type, n) bytes at `blocks`, any alignment)
// into out[0..n). Throws Error if n is negative or not a whole number of blocks, or if the
// type has no decoder.
void dequantize_row(GgmlType type, const void* blocks, float* out, std::int64_t n);

}  // namespace piquant
