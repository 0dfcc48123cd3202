// Softmax of one row in place, per Highway target: shared by vector_ops' softmax() and
// attention's score rows, so both compute the same numbers. Included once per target
// (hence no #pragma once); include after element_io-inl.h and hwy/contrib/math/math-inl.h.
#if defined(PIQUANT_KERNELS_SOFTMAX_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PIQUANT_KERNELS_SOFTMAX_INL_H_
#undef PIQUANT_KERNELS_SOFTMAX_INL_H_
#else
#define PIQUANT_KERNELS_SOFTMAX_INL_H_
#endif

#include <cstddef>
#include <limits>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "kernels/element_io-inl.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

// The max and Σ exp(x[j] - max) a softmax used (log-sum-exp = max + log(sum)).
struct SoftmaxStats {
  float max, sum;
};

// x[i] = exp(x[i] - max) / Σ exp(x[j] - max) for i < n; returns that max and sum.
HWY_INLINE SoftmaxStats SoftmaxInPlace(float* x, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  VF m = hn::Set(d, neg_inf);
  std::size_t i = 0;
  for (; i + N <= n; i += N) m = hn::Max(m, hn::LoadU(d, x + i));
  if (i < n) m = hn::Max(m, LoadFloatTail(d, x + i, n - i, neg_inf));
  const VF max = hn::MaxOfLanes(d, m);
  // exp(-inf) is 0 in Highway's Exp (inputs below -104 give 0), so padding with -inf
  // adds nothing to the sum.
  VF s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  for (i = 0; i + 4 * N <= n; i += 4 * N) {
    const VF e0 = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), max));
    const VF e1 = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i + N), max));
    const VF e2 = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i + 2 * N), max));
    const VF e3 = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i + 3 * N), max));
    hn::StoreU(e0, d, x + i);
    hn::StoreU(e1, d, x + i + N);
    hn::StoreU(e2, d, x + i + 2 * N);
    hn::StoreU(e3, d, x + i + 3 * N);
    s0 = hn::Add(s0, e0);
    s1 = hn::Add(s1, e1);
    s2 = hn::Add(s2, e2);
    s3 = hn::Add(s3, e3);
  }
  for (; i + N <= n; i += N) {
    const VF e = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), max));
    hn::StoreU(e, d, x + i);
    s0 = hn::Add(s0, e);
  }
  if (i < n) {
    const VF e = hn::Exp(d, hn::Sub(LoadFloatTail(d, x + i, n - i, neg_inf), max));
    StoreFloatTail(d, e, x + i, n - i);
    s0 = hn::Add(s0, e);
  }
  const float sum = ReduceSum(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)));
  const VF inv_sum = hn::Set(d, 1.0f / sum);
  for (i = 0; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), inv_sum), d, x + i);
  for (; i < n; ++i) x[i] *= hn::GetLane(inv_sum);
  return {hn::GetLane(max), sum};
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
