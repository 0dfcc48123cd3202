#pragma once
// Fitting one (sub-)block of floats to integer codes: x ≈ scale * q (symmetric) or
// x ≈ scale * q + offset (affine). The "rtn" fits derive the scale from the extremes; the
// searched fits try a grid of scales and keep the one with the least Σ w (x - x̂)².
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

// Nearest code for x under a given scale/offset, clamped to [qmin, qmax]; 0 when scale is 0.
int nearest_code(float x, float scale, float offset, int qmin, int qmax);

}  // namespace piquant
