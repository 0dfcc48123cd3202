#pragma once
// The small vector operations of a transformer layer, each with a scalar reference.
#include <cstdint>

#include "formats/ggml_type.h"

namespace piquant {

// out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]   (out may equal x)
// Computed as (x[i] · rms_norm_rstd(x, n, eps)) · weight[i]: the same float products, bit for bit.
void rms_norm(const float* x, const float* weight, std::int64_t n, float eps, float* out);

// The float rms_norm multiplies by: 1/sqrt(mean(x²) + eps), the sum of squares in float
// (four vector accumulators, then the lanes added), the mean, eps and square root in
// double, rounded once to float. n ≥ 1 (throws Error otherwise).
float rms_norm_rstd(const float* x, std::int64_t n, float eps);

// The backward of y = rms_norm(x, weight) with rstd = rms_norm_rstd(x, n, eps) (saved by
// the forward), given dy = ∂L/∂y:
//   dx[i]      += rstd · (dy[i]·weight[i] − x[i] · c),  c = rstd² · Σ_j dy[j]·weight[j]·x[j] / n
//   dweight[i] += dy[i]·x[i]·rstd                          (skipped when dweight is nullptr)
// The sum Σ dy·weight·x runs in float like rms_norm_rstd's; c is formed in double and rounded
// once. dx and dweight must not overlap any input or each other.
void rms_norm_backward(const float* x, const float* weight, float rstd, const float* dy, std::int64_t n, float* dx,
                       float* dweight);

// x[i] = exp(x[i] - max) / Σ exp(x[j] - max), in place.
void softmax(float* x, std::int64_t n);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g))   (out may equal gate)
void swiglu(const float* gate, const float* up, std::int64_t n, float* out);

// The backward of out = swiglu(gate, up), given dout = ∂L/∂out; writes (does not add):
//   dgate[i] = dout[i] · up[i] · σ(g)·(1 + g·(1 − σ(g))),  dup[i] = silu(gate[i]) · dout[i]
// with σ and 1 − σ both formed from exp(−|g|) (no cancellation, no overflow). dup equals
// swiglu(gate, dout) bit for bit. Element i's inputs are all read before its outputs are
// written, so dgate and dup may each be the very same array as any input (dgate == dout,
// say, overwrites the incoming gradient in place); partial overlap is not allowed, and
// dgate and dup must be different arrays.
void swiglu_backward(const float* gate, const float* up, const float* dout, std::int64_t n, float* dgate, float* dup);

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

// In double throughout (inputs, results and arithmetic), for the gradient tests: the
// forwards to take finite differences of, and the backwards straight from the calculus.
// rms_norm_backward computes its rstd from x and eps itself; it and swiglu_backward follow
// the float kernels' add/write conventions above.
double rms_norm_rstd(const double* x, std::int64_t n, double eps);
void rms_norm(const double* x, const double* weight, std::int64_t n, double eps, double* out);
void rms_norm_backward(const double* x, const double* weight, double eps, const double* dy, std::int64_t n, double* dx,
                       double* dweight);
void swiglu(const double* gate, const double* up, std::int64_t n, double* out);
void swiglu_backward(const double* gate, const double* up, const double* dout, std::int64_t n, double* dgate, double* dup);
float dot(const float* a, const void* b, GgmlType b_type, std::int64_t n);
void axpy(float alpha, const void* x, GgmlType x_type, std::int64_t n, float* y);
}  // namespace reference

}  // namespace piquant
