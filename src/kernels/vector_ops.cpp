#include "kernels/vector_ops.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/simd_config.h"
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/vector_ops.cpp"
#include "hwy/foreach_target.h"
#include "hwy/highway.h"
// clang-format on
#include "hwy/contrib/math/math-inl.h"
#include "kernels/element_io-inl.h"
#include "kernels/softmax-inl.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

// Loops below run four vectors per step (independent sums hide the add latency), then
// single vectors, then one zero-padded vector for the last n mod Lanes elements.

float RmsNormRstd(const float* x, std::int64_t n64, float eps) {
  const DF d;
  const std::size_t N = hn::Lanes(d), n = static_cast<std::size_t>(n64);
  VF s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  std::size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    const VF v0 = hn::LoadU(d, x + i), v1 = hn::LoadU(d, x + i + N);
    const VF v2 = hn::LoadU(d, x + i + 2 * N), v3 = hn::LoadU(d, x + i + 3 * N);
    s0 = hn::MulAdd(v0, v0, s0);
    s1 = hn::MulAdd(v1, v1, s1);
    s2 = hn::MulAdd(v2, v2, s2);
    s3 = hn::MulAdd(v3, v3, s3);
  }
  for (; i + N <= n; i += N) {
    const VF v = hn::LoadU(d, x + i);
    s0 = hn::MulAdd(v, v, s0);
  }
  if (i < n) {
    const VF v = LoadFloatTail(d, x + i, n - i);
    s0 = hn::MulAdd(v, v, s0);
  }
  const double mean = static_cast<double>(ReduceSum(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)))) / n64;
  return static_cast<float>(1.0 / std::sqrt(mean + eps));
}

void RmsNorm(const float* x, const float* weight, std::int64_t n64, float eps, float* out) {
  const DF d;
  const std::size_t N = hn::Lanes(d), n = static_cast<std::size_t>(n64);
  const VF scale = hn::Set(d, RmsNormRstd(x, n64, eps));
  std::size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(d, x + i), scale), hn::LoadU(d, weight + i)), d, out + i);
  if (i < n)
    StoreFloatTail(d, hn::Mul(hn::Mul(LoadFloatTail(d, x + i, n - i), scale), LoadFloatTail(d, weight + i, n - i)),
                   out + i, n - i);
}

// dx += rstd·(dy·w − x·c) and dweight += (dy·x)·rstd for one vector of elements.
HWY_INLINE void RmsNormBackwardVector(VF x, VF w, VF dy, VF rstd, VF c, VF dx_in, VF dw_in, VF& dx_out, VF& dw_out) {
  dx_out = hn::MulAdd(rstd, hn::NegMulAdd(x, c, hn::Mul(dy, w)), dx_in);
  dw_out = hn::MulAdd(hn::Mul(dy, x), rstd, dw_in);
}

void RmsNormBackward(const float* x, const float* weight, float rstd, const float* dy, std::int64_t n64, float* dx,
                     float* dweight) {
  const DF d;
  const std::size_t N = hn::Lanes(d), n = static_cast<std::size_t>(n64);
  VF s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  std::size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::MulAdd(hn::Mul(hn::LoadU(d, dy + i), hn::LoadU(d, weight + i)), hn::LoadU(d, x + i), s0);
    s1 = hn::MulAdd(hn::Mul(hn::LoadU(d, dy + i + N), hn::LoadU(d, weight + i + N)), hn::LoadU(d, x + i + N), s1);
    s2 = hn::MulAdd(hn::Mul(hn::LoadU(d, dy + i + 2 * N), hn::LoadU(d, weight + i + 2 * N)), hn::LoadU(d, x + i + 2 * N), s2);
    s3 = hn::MulAdd(hn::Mul(hn::LoadU(d, dy + i + 3 * N), hn::LoadU(d, weight + i + 3 * N)), hn::LoadU(d, x + i + 3 * N), s3);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::Mul(hn::LoadU(d, dy + i), hn::LoadU(d, weight + i)), hn::LoadU(d, x + i), s0);
  if (i < n)
    s0 = hn::MulAdd(hn::Mul(LoadFloatTail(d, dy + i, n - i), LoadFloatTail(d, weight + i, n - i)),
                    LoadFloatTail(d, x + i, n - i), s0);
  const double sum = ReduceSum(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)));
  const VF c = hn::Set(d, static_cast<float>(static_cast<double>(rstd) * rstd * sum / static_cast<double>(n64)));
  const VF r = hn::Set(d, rstd);
  VF dx_new, dw_new;
  for (i = 0; i + N <= n; i += N) {
    const VF dw_old = dweight ? hn::LoadU(d, dweight + i) : hn::Zero(d);
    RmsNormBackwardVector(hn::LoadU(d, x + i), hn::LoadU(d, weight + i), hn::LoadU(d, dy + i), r, c, hn::LoadU(d, dx + i),
                          dw_old, dx_new, dw_new);
    hn::StoreU(dx_new, d, dx + i);
    if (dweight) hn::StoreU(dw_new, d, dweight + i);
  }
  if (i < n) {
    const std::size_t m = n - i;
    const VF dw_old = dweight ? LoadFloatTail(d, dweight + i, m) : hn::Zero(d);
    RmsNormBackwardVector(LoadFloatTail(d, x + i, m), LoadFloatTail(d, weight + i, m), LoadFloatTail(d, dy + i, m), r, c,
                          LoadFloatTail(d, dx + i, m), dw_old, dx_new, dw_new);
    StoreFloatTail(d, dx_new, dx + i, m);
    if (dweight) StoreFloatTail(d, dw_new, dweight + i, m);
  }
}

void Softmax(float* x, std::int64_t n64) { SoftmaxInPlace(x, static_cast<std::size_t>(n64)); }

// silu(g)·up with the sigmoid from e = exp(-|g|) ≤ 1, which never overflows:
// σ(g) = 1/(1+e) for g ≥ 0 and e/(1+e) for g < 0.
HWY_INLINE VF SwigluVector(DF d, VF g, VF up) {
  const VF one = hn::Set(d, 1.0f);
  const VF e = hn::Exp(d, hn::Neg(hn::Abs(g)));
  const VF numerator = hn::IfThenElse(hn::Ge(g, hn::Zero(d)), one, e);
  return hn::Mul(hn::Div(hn::Mul(g, numerator), hn::Add(one, e)), up);
}

void Swiglu(const float* gate, const float* up, std::int64_t n64, float* out) {
  const DF d;
  const std::size_t N = hn::Lanes(d), n = static_cast<std::size_t>(n64);
  std::size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(SwigluVector(d, hn::LoadU(d, gate + i), hn::LoadU(d, up + i)), d, out + i);
  if (i < n)
    StoreFloatTail(d, SwigluVector(d, LoadFloatTail(d, gate + i, n - i), LoadFloatTail(d, up + i, n - i)), out + i,
                   n - i);
}

// The backward of SwigluVector: dgate = dout·up·σ·(1 + g·(1 − σ)), dup = silu(g)·dout,
// silu formed exactly as SwigluVector forms it (so dup is swiglu(g, dout) bit for bit).
HWY_INLINE void SwigluBackwardVector(DF d, VF g, VF up, VF dout, VF& dgate, VF& dup) {
  const VF one = hn::Set(d, 1.0f);
  const VF e = hn::Exp(d, hn::Neg(hn::Abs(g)));
  const hn::Mask<DF> non_negative = hn::Ge(g, hn::Zero(d));
  const VF denominator = hn::Add(one, e);
  const VF sigmoid = hn::Div(hn::IfThenElse(non_negative, one, e), denominator);
  const VF complement = hn::Div(hn::IfThenElse(non_negative, e, one), denominator);  // 1 − σ(g)
  const VF silu_derivative = hn::Mul(sigmoid, hn::MulAdd(g, complement, one));
  dgate = hn::Mul(hn::Mul(dout, up), silu_derivative);
  dup = hn::Mul(hn::Div(hn::Mul(g, hn::IfThenElse(non_negative, one, e)), denominator), dout);
}

void SwigluBackward(const float* gate, const float* up, const float* dout, std::int64_t n64, float* dgate, float* dup) {
  const DF d;
  const std::size_t N = hn::Lanes(d), n = static_cast<std::size_t>(n64);
  VF dg, du;
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    SwigluBackwardVector(d, hn::LoadU(d, gate + i), hn::LoadU(d, up + i), hn::LoadU(d, dout + i), dg, du);
    hn::StoreU(dg, d, dgate + i);
    hn::StoreU(du, d, dup + i);
  }
  if (i < n) {
    const std::size_t m = n - i;
    SwigluBackwardVector(d, LoadFloatTail(d, gate + i, m), LoadFloatTail(d, up + i, m), LoadFloatTail(d, dout + i, m), dg, du);
    StoreFloatTail(d, dg, dgate + i, m);
    StoreFloatTail(d, du, dup + i, m);
  }
}

template <class E>
HWY_INLINE float DotImpl(const float* a, const std::uint8_t* b, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  VF s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  std::size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::MulAdd(hn::LoadU(d, a + i), E::Load(d, b, i), s0);
    s1 = hn::MulAdd(hn::LoadU(d, a + i + N), E::Load(d, b, i + N), s1);
    s2 = hn::MulAdd(hn::LoadU(d, a + i + 2 * N), E::Load(d, b, i + 2 * N), s2);
    s3 = hn::MulAdd(hn::LoadU(d, a + i + 3 * N), E::Load(d, b, i + 3 * N), s3);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(d, a + i), E::Load(d, b, i), s0);
  if (i < n) s0 = hn::MulAdd(LoadFloatTail(d, a + i, n - i), LoadTail<E>(d, b, i, n - i), s0);
  return ReduceSum(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)));
}

float Dot(const float* a, const void* b, GgmlType type, std::int64_t n) {
  const auto* bytes = static_cast<const std::uint8_t*>(b);
  const auto count = static_cast<std::size_t>(n);
  switch (type) {
    case GgmlType::F16: return DotImpl<F16Elements>(a, bytes, count);
    case GgmlType::BF16: return DotImpl<BF16Elements>(a, bytes, count);
    default: return DotImpl<F32Elements>(a, bytes, count);  // the caller checked the type
  }
}

template <class E>
HWY_INLINE void AxpyImpl(float alpha, const std::uint8_t* x, std::size_t n, float* y) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const VF a = hn::Set(d, alpha);
  std::size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(a, E::Load(d, x, i), hn::LoadU(d, y + i)), d, y + i);
  if (i < n) StoreFloatTail(d, hn::MulAdd(a, LoadTail<E>(d, x, i, n - i), LoadFloatTail(d, y + i, n - i)), y + i, n - i);
}

void Axpy(float alpha, const void* x, GgmlType type, std::int64_t n, float* y) {
  const auto* bytes = static_cast<const std::uint8_t*>(x);
  const auto count = static_cast<std::size_t>(n);
  switch (type) {
    case GgmlType::F16: return AxpyImpl<F16Elements>(alpha, bytes, count, y);
    case GgmlType::BF16: return AxpyImpl<BF16Elements>(alpha, bytes, count, y);
    default: return AxpyImpl<F32Elements>(alpha, bytes, count, y);
  }
}

template <bool kF16>
HWY_INLINE void StoreHalves(const float* x, std::size_t n, std::uint8_t* out) {
  const DF d;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<std::uint16_t, DF> d16;
  const std::size_t N = hn::Lanes(d);
  const auto narrow = [&](VF v) {
    const auto bits = kF16 ? DemoteF16Bits(d, v) : DemoteBF16Bits(d, v);
    return hn::DemoteTo(d16, hn::BitCast(di, bits));  // every value fits 16 bits: no saturation
  };
  std::size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(narrow(hn::LoadU(d, x + i)), d16, reinterpret_cast<std::uint16_t*>(out) + i);
  if (i < n) {
    alignas(64) std::uint16_t buffer[kMaxLanes];
    hn::Store(narrow(LoadFloatTail(d, x + i, n - i)), d16, buffer);
    std::memcpy(out + 2 * i, buffer, 2 * (n - i));
  }
}

void StoreRow(const float* x, std::int64_t n, GgmlType type, void* out) {
  auto* bytes = static_cast<std::uint8_t*>(out);
  const auto count = static_cast<std::size_t>(n);
  switch (type) {
    case GgmlType::F16: return StoreHalves<true>(x, count, bytes);
    case GgmlType::BF16: return StoreHalves<false>(x, count, bytes);
    default: std::memcpy(bytes, x, count * sizeof(float));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <string>

#include "core/error.h"

namespace piquant {

HWY_EXPORT(RmsNorm);
HWY_EXPORT(RmsNormRstd);
HWY_EXPORT(RmsNormBackward);
HWY_EXPORT(SwigluBackward);
HWY_EXPORT(Softmax);
HWY_EXPORT(Swiglu);
HWY_EXPORT(Dot);
HWY_EXPORT(Axpy);
HWY_EXPORT(StoreRow);

namespace {

void check_length(std::int64_t n, const char* what) {
  if (n < 0) throw Error(std::string(what) + ": negative length " + std::to_string(n));
}

// The element types a KV cache can hold.
void check_cache_type(GgmlType type, const char* what) {
  if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16)
    throw Error(std::string(what) + ": element type " + ggml_type_name(type) + " is not supported (F32, F16, BF16)");
}

}  // namespace

void rms_norm(const float* x, const float* weight, std::int64_t n, float eps, float* out) {
  check_length(n, "rms_norm");
  if (n == 0) return;
  HWY_DYNAMIC_DISPATCH(RmsNorm)(x, weight, n, eps, out);
}

float rms_norm_rstd(const float* x, std::int64_t n, float eps) {
  if (n < 1) throw Error("rms_norm_rstd: length " + std::to_string(n) + " (at least 1)");
  return HWY_DYNAMIC_DISPATCH(RmsNormRstd)(x, n, eps);
}

void rms_norm_backward(const float* x, const float* weight, float rstd, const float* dy, std::int64_t n, float* dx,
                       float* dweight) {
  check_length(n, "rms_norm_backward");
  if (n == 0) return;
  HWY_DYNAMIC_DISPATCH(RmsNormBackward)(x, weight, rstd, dy, n, dx, dweight);
}

void softmax(float* x, std::int64_t n) {
  check_length(n, "softmax");
  if (n == 0) return;
  HWY_DYNAMIC_DISPATCH(Softmax)(x, n);
}

void swiglu(const float* gate, const float* up, std::int64_t n, float* out) {
  check_length(n, "swiglu");
  if (n == 0) return;
  HWY_DYNAMIC_DISPATCH(Swiglu)(gate, up, n, out);
}

void swiglu_backward(const float* gate, const float* up, const float* dout, std::int64_t n, float* dgate, float* dup) {
  check_length(n, "swiglu_backward");
  if (n == 0) return;
  if (dgate == dup) throw Error("swiglu_backward: dgate and dup are the same array");
  HWY_DYNAMIC_DISPATCH(SwigluBackward)(gate, up, dout, n, dgate, dup);
}

float dot(const float* a, const void* b, GgmlType b_type, std::int64_t n) {
  check_length(n, "dot");
  check_cache_type(b_type, "dot");
  if (n == 0) return 0.0f;
  return HWY_DYNAMIC_DISPATCH(Dot)(a, b, b_type, n);
}

void axpy(float alpha, const void* x, GgmlType x_type, std::int64_t n, float* y) {
  check_length(n, "axpy");
  check_cache_type(x_type, "axpy");
  if (n == 0) return;
  HWY_DYNAMIC_DISPATCH(Axpy)(alpha, x, x_type, n, y);
}

void store_row(const float* x, std::int64_t n, GgmlType type, void* out) {
  check_length(n, "store_row");
  check_cache_type(type, "store_row");
  if (n == 0) return;
  HWY_DYNAMIC_DISPATCH(StoreRow)(x, n, type, out);
}

}  // namespace piquant
#endif  // HWY_ONCE
