#pragma once
// Encodes float rows into a GGUF tensor type. Float types for now; the block
// quantizers plug in here.
#include <cstdint>

#include "formats/ggml_type.h"

namespace piquant {

bool row_encoder_supports(GgmlType type);

// Encodes n_rows × row_length floats into dst (ggml_nbytes(type, n_rows * row_length) bytes).
void encode_rows(GgmlType type, const float* src, std::int64_t n_rows, std::int64_t row_length, std::uint8_t* dst);

}  // namespace piquant
