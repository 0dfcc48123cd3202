#pragma once
// The small vector operations of a transformer layer, each with a scalar reference.
#include <cstdint>

#include "formats/ggml_type.h"

namespace piquant {

// out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]   (out may equal x)
void rms_norm(const float* x, const float* weight, std::int64_t n, float eps, float* out);

// x[i] = exp(x[i] - max) / Σ exp(x[j] - max), in place.
void softmax(float* x, std::int64_t n);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g))   (out may equal gate)
void swiglu(const float* gate, const float* up, std::int64_t n, float* out);

// Σ a[i]·b[i] where b is stored as `b_type` (F32, F16 or BF16): attention scores on the KV cache.
float dot(const float* a, const void* b, GgmlType b_type, std::int64_t n);

// y[i] += alpha · x[i] where x is stored as `x_type` (F32, F16 or BF16): attention's weighted sum of V.
void axpy(float alpha, const void* x, GgmlType x_type, std::int64_t n, float* y);

// Stores floats as `type` (F32, F16, BF16): writing K and V into the cache.
void store_row(const float* x, std::int64_t n, GgmlType type, void* out);

namespace reference {
void rms_norm(const float* x, const float* weight, std::int64_t n, float eps, float* out);
void softmax(float* x, std::int64_t n);
void swiglu(const float* gate, const float* up, std::int64_t n, float* out);
float dot(const float* a, const void* b, GgmlType b_type, std::int64_t n);
void axpy(float alpha, const void* x, GgmlType x_type, std::int64_t n, float* y);
}  // namespace reference

}  // namespace piquant
