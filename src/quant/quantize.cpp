#include "quant/quantize.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "quant/block_encoders.h"
#include "quant/dequantize.h"

namespace piquant {
namespace {

using BlockEncoder = void (*)(const float* x, const float* w, std::uint8_t* out);

BlockEncoder encoder_for(GgmlType type) {
  switch (type) {
    case GgmlType::Q8_0: return block_encoders::q8_0;
    case GgmlType::Q4_0: return block_encoders::q4_0;
    case GgmlType::Q4_1: return block_encoders::q4_1;
    case GgmlType::Q5_0: return block_encoders::q5_0;
    case GgmlType::Q5_1: return block_encoders::q5_1;
    case GgmlType::Q2_K: return block_encoders::q2_k;
    case GgmlType::Q3_K: return block_encoders::q3_k;
    case GgmlType::Q4_K: return block_encoders::q4_k;
    case GgmlType::Q5_K: return block_encoders::q5_k;
    case GgmlType::Q6_K: return block_encoders::q6_k;
    default: return nullptr;
  }
}

// Checks the request and returns the type's block layout.
const GgmlTypeInfo& checked_row(GgmlType type, const float* x, std::int64_t n, const float* importance) {
  if (!quantize_supports(type)) throw Error("quantize: type " + ggml_type_name(type) + " has no quantizer");
  const GgmlTypeInfo& info = ggml_type_info(type);
  if (n < 0) throw Error("quantize " + std::string(info.name) + ": negative element count " + std::to_string(n));
  if (n % info.block_size != 0) {
    throw Error("quantize " + std::string(info.name) + ": row of " + std::to_string(n) +
                " elements is not a multiple of the block size " + std::to_string(info.block_size));
  }
  for (std::int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      throw Error("quantize " + std::string(info.name) + ": element " + std::to_string(i) + " is not finite");
    }
    if (importance && !(importance[i] >= 0.0f && std::isfinite(importance[i]))) {
      throw Error("quantize " + std::string(info.name) + ": importance " + std::to_string(i) +
                  " is negative or not finite");
    }
  }
  return info;
}

double weighted_error(const float* x, const float* w, const float* y, int n) {
  double err = 0.0;
  for (int i = 0; i < n; ++i) {
    const double diff = static_cast<double>(x[i]) - y[i];
    err += w[i] * diff * diff;
  }
  return err;
}

// A scale stored as f16 overflows for |x| beyond ~65504 × the type's code range; say so
// instead of writing inf/NaN blocks.
void check_block_finite(const GgmlTypeInfo& info, const std::uint8_t* block, std::int64_t index, float* scratch) {
  dequantize_row(info.type, block, scratch, info.block_size);
  for (std::uint32_t i = 0; i < info.block_size; ++i) {
    if (!std::isfinite(scratch[i])) {
      throw Error("quantize " + std::string(info.name) + ": block " + std::to_string(index) +
                  " has values too large for its f16 scale");
    }
  }
}

}  // namespace

bool quantize_supports(GgmlType type) { return encoder_for(type) != nullptr; }

void default_quant_weights(GgmlType type, const float* x, std::int64_t n, float* w) {
  const std::int64_t block = ggml_type_info(type).block_size;
  if (n < 0 || n % block != 0) {
    throw Error("quantize weights " + ggml_type_name(type) + ": row of " + std::to_string(n) +
                " elements is not a multiple of the block size " + std::to_string(block));
  }
  for (std::int64_t b = 0; b < n; b += block) {
    double sum_sq = 0.0;
    for (std::int64_t i = b; i < b + block; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
    const float mean_sq = static_cast<float>(sum_sq / static_cast<double>(block));
    for (std::int64_t i = b; i < b + block; ++i) w[i] = x[i] * x[i] + mean_sq;
  }
}

void quantize_row_rtn(GgmlType type, const float* x, std::int64_t n, void* out) {
  const GgmlTypeInfo& info = checked_row(type, x, n, nullptr);
  const BlockEncoder encode = encoder_for(type);
  auto* dst = static_cast<std::uint8_t*>(out);
  std::vector<float> decoded(info.block_size);
  for (std::int64_t b = 0; b < n / info.block_size; ++b) {
    encode(x + b * info.block_size, nullptr, dst + b * info.block_bytes);
    check_block_finite(info, dst + b * info.block_bytes, b, decoded.data());
  }
}

void importance_quant_weights(GgmlType type, const float* x, std::int64_t n, const float* importance, float* w) {
  const std::int64_t block = ggml_type_info(type).block_size;
  if (n < 0 || n % block != 0) {
    throw Error("quantize weights " + ggml_type_name(type) + ": row of " + std::to_string(n) +
                " elements is not a multiple of the block size " + std::to_string(block));
  }
  // The variance floor's span and factor per type (llama.cpp's choices; Q6_K and Q8_0 take
  // the importance alone).
  std::int64_t span = 0;
  double factor = 0.0;
  switch (type) {
    case GgmlType::Q2_K: span = block; factor = 1.0; break;
    case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: span = block; factor = 2.0; break;
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: span = n; factor = 1.0; break;
    default: break;
  }
  if (span == 0) {
    std::memcpy(w, importance, static_cast<std::size_t>(n) * sizeof(float));
    return;
  }
  for (std::int64_t b = 0; b < n; b += span) {
    double sum_sq = 0.0;
    for (std::int64_t i = b; i < b + span; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
    const double sigma2 = factor * sum_sq / static_cast<double>(span);
    for (std::int64_t i = b; i < b + span; ++i) {
      w[i] = static_cast<float>(static_cast<double>(importance[i]) * std::sqrt(sigma2 + static_cast<double>(x[i]) * x[i]));
    }
  }
}

void quantize_row(GgmlType type, const float* x, std::int64_t n, const float* importance, void* out) {
  const GgmlTypeInfo& info = checked_row(type, x, n, importance);
  std::vector<float> row_weights;
  if (importance) {
    row_weights.resize(static_cast<std::size_t>(n));
    importance_quant_weights(type, x, n, importance, row_weights.data());
  }
  const BlockEncoder encode = encoder_for(type);
  const int bs = static_cast<int>(info.block_size);
  std::vector<float> weights(static_cast<std::size_t>(bs));
  std::vector<std::uint8_t> searched(info.block_bytes), rtn(info.block_bytes);
  std::vector<float> decoded(static_cast<std::size_t>(bs));
  auto* dst = static_cast<std::uint8_t*>(out);
  for (std::int64_t b = 0; b < n / bs; ++b) {
    const float* xb = x + b * bs;
    if (importance) {
      std::memcpy(weights.data(), row_weights.data() + b * bs, static_cast<std::size_t>(bs) * sizeof(float));
    } else {
      default_quant_weights(type, xb, bs, weights.data());
    }
    encode(xb, weights.data(), searched.data());
    encode(xb, nullptr, rtn.data());
    dequantize_row(type, searched.data(), decoded.data(), bs);
    const double searched_err = weighted_error(xb, weights.data(), decoded.data(), bs);
    dequantize_row(type, rtn.data(), decoded.data(), bs);
    const double rtn_err = weighted_error(xb, weights.data(), decoded.data(), bs);
    std::memcpy(dst + b * info.block_bytes, (rtn_err < searched_err ? rtn : searched).data(), info.block_bytes);
    check_block_finite(info, dst + b * info.block_bytes, b, decoded.data());
  }
}

}  // namespace piquant
