#include "quant/row_encoder.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/quantize.h"

namespace piquant {

bool row_encoder_supports(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16 || quantize_supports(type);
}

void encode_rows(GgmlType type, const float* src, std::int64_t n_rows, std::int64_t row_length, std::uint8_t* dst,
                 const float* importance) {
  const std::size_t n = static_cast<std::size_t>(n_rows * row_length);
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case GgmlType::F16:
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t h = f32_to_f16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case GgmlType::BF16:
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    default:
      break;
  }
  if (!quantize_supports(type)) throw Error("encoding to " + ggml_type_name(type) + " is not supported");
  const std::uint64_t row_bytes = ggml_nbytes(type, static_cast<std::uint64_t>(row_length));
  for (std::int64_t r = 0; r < n_rows; ++r) {
    quantize_row(type, src + r * row_length, row_length, importance, dst + static_cast<std::uint64_t>(r) * row_bytes);
  }
}

}  // namespace piquant
