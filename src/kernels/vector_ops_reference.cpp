// Scalar references for the vector operations, from the definitions, in double.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "kernels/vector_ops.h"

namespace piquant::reference {

namespace {

double element(const void* p, GgmlType type, std::int64_t i) {
  const auto* bytes = static_cast<const std::uint8_t*>(p);
  if (type == GgmlType::F32) {
    float f;
    std::memcpy(&f, bytes + 4 * i, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, bytes + 2 * i, 2);
  if (type == GgmlType::F16) return f16_to_f32(h);
  if (type == GgmlType::BF16) return bf16_to_f32(h);
  throw Error("reference: element type " + ggml_type_name(type) + " is not supported");
}

}  // namespace

void rms_norm(const float* x, const float* weight, std::int64_t n, float eps, float* out) {
  double sum_sq = 0;
  for (std::int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  const double scale = 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i] * scale * weight[i]);
}

void softmax(float* x, std::int64_t n) {
  double max = -std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < n; ++i) max = std::max(max, static_cast<double>(x[i]));
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - max);
  for (std::int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::exp(x[i] - max) / sum);
}

void swiglu(const float* gate, const float* up, std::int64_t n, float* out) {
  for (std::int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

double rms_norm_rstd(const double* x, std::int64_t n, double eps) {
  double sum_sq = 0;
  for (std::int64_t i = 0; i < n; ++i) sum_sq += x[i] * x[i];
  return 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps);
}

void rms_norm(const double* x, const double* weight, std::int64_t n, double eps, double* out) {
  const double rstd = rms_norm_rstd(x, n, eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = x[i] * rstd * weight[i];
}

// y_i = x_i·r·w_i with r = (Σ x²/n + eps)^(-1/2), so ∂r/∂x_k = −r³·x_k/n and
// ∂L/∂x_k = dy_k·w_k·r − (r³·x_k/n)·Σ_i dy_i·w_i·x_i.
void rms_norm_backward(const double* x, const double* weight, double eps, const double* dy, std::int64_t n, double* dx,
                       double* dweight) {
  const double r = rms_norm_rstd(x, n, eps);
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += dy[i] * weight[i] * x[i];
  for (std::int64_t k = 0; k < n; ++k) {
    dx[k] += dy[k] * weight[k] * r - r * r * r * x[k] / static_cast<double>(n) * sum;
    if (dweight != nullptr) dweight[k] += dy[k] * x[k] * r;
  }
}

void swiglu(const double* gate, const double* up, std::int64_t n, double* out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
}

// silu(g) = g·σ(g), σ' = σ·(1 − σ): silu'(g) = σ + g·σ·(1 − σ).
void swiglu_backward(const double* gate, const double* up, const double* dout, std::int64_t n, double* dgate, double* dup) {
  for (std::int64_t i = 0; i < n; ++i) {
    const double g = gate[i], sigmoid = 1.0 / (1.0 + std::exp(-g));
    const double dg = dout[i] * up[i] * (sigmoid + g * sigmoid * (1.0 - sigmoid));
    const double du = dout[i] * g * sigmoid;
    dgate[i] = dg;
    dup[i] = du;
  }
}

float dot(const float* a, const void* b, GgmlType b_type, std::int64_t n) {
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += a[i] * element(b, b_type, i);
  return static_cast<float>(sum);
}

void axpy(float alpha, const void* x, GgmlType x_type, std::int64_t n, float* y) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(y[i] + static_cast<double>(alpha) * element(x, x_type, i));
}

}  // namespace piquant::reference
