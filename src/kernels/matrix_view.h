#pragma once
// A weight matrix as stored (row-major, rows of `cols` elements of `type`), viewed
// without copying: straight into an mmapped GGUF or safetensors file.
#include <cstddef>
#include <cstdint>

#include "formats/ggml_type.h"

namespace piquant {

struct MatrixView {
  GgmlType type = GgmlType::F32;
  const std::uint8_t* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;  // elements per row (the input dimension)
  std::size_t row_bytes = 0;

  const std::uint8_t* row(std::int64_t r) const { return data + static_cast<std::size_t>(r) * row_bytes; }
};

}  // namespace piquant
