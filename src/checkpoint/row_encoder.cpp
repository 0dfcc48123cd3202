#include "checkpoint/row_encoder.h"

#include "core/error.h"
#include "kernels/vector_ops.h"
#include "quant/quantize.h"

namespace piquant {

bool row_encoder_supports(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16 || quantize_supports(type);
}

void encode_rows(GgmlType type, const float* src, std::int64_t n_rows, std::int64_t row_length, std::uint8_t* dst,
                 const float* importance) {
  if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) {
    store_row(src, n_rows * row_length, type, dst);
    return;
  }
  if (!quantize_supports(type)) throw Error("encoding to " + ggml_type_name(type) + " is not supported");
  const std::uint64_t row_bytes = ggml_nbytes(type, static_cast<std::uint64_t>(row_length));
  for (std::int64_t r = 0; r < n_rows; ++r) {
    quantize_row(type, src + r * row_length, row_length, importance, dst + static_cast<std::uint64_t>(r) * row_bytes);
  }
}

}  // namespace piquant
