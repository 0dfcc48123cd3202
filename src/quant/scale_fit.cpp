#include "quant/scale_fit.h"

#include <algorithm>
#include <cmath>

namespace piquant {
namespace {

// Candidate inverse scales are base * (1 + kStep * t) for t in [-kSteps, kSteps].
constexpr int kSteps = 12;
constexpr float kStep = 0.02f;

float signed_extreme(const float* x, int n) {
  float best = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(best)) best = x[i];
  }
  return best;
}

}  // namespace

float rtn_symmetric_scale(const float* x, int n, int qmin) {
  return signed_extreme(x, n) / static_cast<float>(qmin);
}

float search_symmetric_scale(const float* x, const float* w, int n, int qmin, int qmax) {
  const float ext = signed_extreme(x, n);
  if (ext == 0.0f) return 0.0f;
  const float amax = std::fabs(ext);
  // Two grids: the signed extreme on qmin, and |extreme| on qmax.
  const float bases[2] = {static_cast<float>(qmin) / ext, static_cast<float>(qmax) / amax};
  float best_scale = rtn_symmetric_scale(x, n, qmin);
  double best_gain = -1.0;  // maximise (Σwxq)² / Σwq², i.e. minimise the weighted error
  const auto lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  for (const float base : bases) {
    for (int t = -kSteps; t <= kSteps; ++t) {
      const float inv = base * (1.0f + kStep * static_cast<float>(t));
      float sxq = 0.0f, sqq = 0.0f;
      PIQUANT_SIMD_REDUCTION(sxq, sqq)
      for (int i = 0; i < n; ++i) {
        const float wq = w[i] * nearest_code_float(x[i], inv, 0.0f, lo, hi);
        sxq += wq * x[i];
        sqq += wq * nearest_code_float(x[i], inv, 0.0f, lo, hi);
      }
      if (!(sqq > 0.0f)) continue;
      const double gain = static_cast<double>(sxq) * sxq / sqq;
      if (gain > best_gain) {
        best_gain = gain;
        best_scale = static_cast<float>(sxq / sqq);
      }
    }
  }
  return best_scale;
}

AffineFit rtn_affine(const float* x, int n, int qmax, bool offset_nonpositive) {
  float lo = *std::min_element(x, x + n);
  const float hi = *std::max_element(x, x + n);
  if (offset_nonpositive) lo = std::min(lo, 0.0f);
  return {(hi - lo) / static_cast<float>(qmax), lo};
}

AffineFit search_affine(const float* x, const float* w, int n, int qmax, bool offset_nonpositive) {
  const AffineFit rtn = rtn_affine(x, n, qmax, offset_nonpositive);
  const float range = rtn.scale * static_cast<float>(qmax);
  if (range <= 0.0f) return rtn;
  AffineFit best = rtn;
  double best_err = -1.0;
  const auto top = static_cast<float>(qmax);
  float sw_f = 0.0f, sx_f = 0.0f;
  PIQUANT_SIMD_REDUCTION(sw_f, sx_f)
  for (int i = 0; i < n; ++i) {
    sw_f += w[i];
    sx_f += w[i] * x[i];
  }
  const double sw = sw_f, sx = sx_f;
  for (int t = -kSteps; t <= kSteps; ++t) {
    const float inv = top * (1.0f + kStep * static_cast<float>(t)) / range;
    if (inv <= 0.0f) continue;
    // Codes from this grid point, then the weighted least-squares scale and offset for them.
    float sq_f = 0.0f, sqq_f = 0.0f, sxq_f = 0.0f;
    PIQUANT_SIMD_REDUCTION(sq_f, sqq_f, sxq_f)
    for (int i = 0; i < n; ++i) {
      const float q = nearest_code_float(x[i], inv, rtn.offset, 0.0f, top);
      sq_f += w[i] * q;
      sqq_f += w[i] * q * q;
      sxq_f += w[i] * x[i] * q;
    }
    const double sq = sq_f, sqq = sqq_f, sxq = sxq_f;
    const double det = sw * sqq - sq * sq;
    if (sw <= 0.0 || det <= 0.0) continue;
    double scale = (sw * sxq - sq * sx) / det;
    double offset = (sqq * sx - sq * sxq) / det;
    if (offset_nonpositive && offset > 0.0) {
      offset = 0.0;
      scale = sxq / sqq;
    }
    if (scale < 0.0) continue;
    const auto scale_f = static_cast<float>(scale), offset_f = static_cast<float>(offset);
    float err = 0.0f;
    PIQUANT_SIMD_REDUCTION(err)
    for (int i = 0; i < n; ++i) {
      const float diff = x[i] - (scale_f * nearest_code_float(x[i], inv, rtn.offset, 0.0f, top) + offset_f);
      err += w[i] * diff * diff;
    }
    if (best_err < 0.0 || err < best_err) {
      best_err = err;
      best = {static_cast<float>(scale), static_cast<float>(offset)};
    }
  }
  return best;
}

}  // namespace piquant
