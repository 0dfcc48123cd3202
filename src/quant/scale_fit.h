#pragma once
// Fitting one (sub-)block of floats to integer codes: x ≈ scale * q (symmetric) or
// x ≈ scale * q + offset (affine). The "rtn" fits derive the scale from the extremes; the
// searched fits try a grid of scales and keep the one with the least Σ w (x - x̂)².
#include <algorithm>
#include <cstdint>

namespace piquant {

struct AffineFit {
  float scale = 0.0f;
  float offset = 0.0f;
};

// Symmetric, q in [qmin, qmax] with qmin < 0 < qmax, |qmin| >= qmax: the signed extreme of x
// maps to qmin (so the wider negative side of the range is used).
float rtn_symmetric_scale(const float* x, int n, int qmin);
float search_symmetric_scale(const float* x, const float* w, int n, int qmin, int qmax);

// Affine, q in [0, qmax]. With offset_nonpositive the offset is clamped to <= 0 (K-quants
// store it as a non-negative min that is subtracted).
AffineFit rtn_affine(const float* x, int n, int qmax, bool offset_nonpositive);
AffineFit search_affine(const float* x, const float* w, int n, int qmax, bool offset_nonpositive);

// Adding and removing 1.5·2^23 rounds a float of magnitude below 2^22 to the nearest
// integer, ties to even (as nearbyint), without a libm call.
inline constexpr float kRoundingBias = 12582912.0f;

// Nearest integer to v clamped to [qmin, qmax] (clamping first keeps |v| small); NaN
// gives qmin.
inline int round_code(float v, int qmin, int qmax) {
  if (!(v >= static_cast<float>(qmin))) return qmin;
  if (v > static_cast<float>(qmax)) return qmax;
  return static_cast<int>((v + kRoundingBias) - kRoundingBias);
}

// Nearest code for x under a given scale/offset, clamped to [qmin, qmax]; 0 when scale is 0.
inline int nearest_code(float x, float scale, float offset, int qmin, int qmax) {
  if (scale == 0.0f) return qmin > 0 ? qmin : (qmax < 0 ? qmax : 0);
  return round_code((x - offset) / scale, qmin, qmax);
}

// The nearest code as a float, from the scale's reciprocal (a multiply, not a divide) and
// branch-free, so the search loops, which run ~50 times per weight, vectorize (see
// PIQUANT_SIMD_REDUCTION). NaN stays NaN.
inline float nearest_code_float(float x, float inv_scale, float offset, float qmin, float qmax) {
  const float v = std::min(std::max((x - offset) * inv_scale, qmin), qmax);
  return (v + kRoundingBias) - kRoundingBias;
}

// Lets the compiler vectorize a float sum (reassociating it) in the searches' loops
// without -ffast-math anywhere else.
#define PIQUANT_PRAGMA(text) _Pragma(#text)
#define PIQUANT_SIMD_REDUCTION(...) PIQUANT_PRAGMA(omp simd reduction(+ : __VA_ARGS__))

}  // namespace piquant
