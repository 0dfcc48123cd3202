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

int nearest_code(float x, float scale, float offset, int qmin, int qmax) {
  if (scale == 0.0f) return std::clamp(0, qmin, qmax);
  const float q = std::nearbyint((x - offset) / scale);
  if (!(q >= static_cast<float>(qmin))) return qmin;  // also catches NaN
  if (q > static_cast<float>(qmax)) return qmax;
  return static_cast<int>(q);
}

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
  for (const float base : bases) {
    for (int t = -kSteps; t <= kSteps; ++t) {
      const float inv = base * (1.0f + kStep * static_cast<float>(t));
      double sxq = 0.0, sqq = 0.0;
      for (int i = 0; i < n; ++i) {
        const float q = static_cast<float>(nearest_code(x[i], 1.0f / inv, 0.0f, qmin, qmax));
        sxq += static_cast<double>(w[i]) * x[i] * q;
        sqq += static_cast<double>(w[i]) * q * q;
      }
      if (sqq <= 0.0) continue;
      const double gain = sxq * sxq / sqq;
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
  for (int t = -kSteps; t <= kSteps; ++t) {
    const float inv = static_cast<float>(qmax) * (1.0f + kStep * static_cast<float>(t)) / range;
    if (inv <= 0.0f) continue;
    // Codes from this grid point, then the weighted least-squares scale and offset for them.
    double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
    for (int i = 0; i < n; ++i) {
      const double q = nearest_code(x[i], 1.0f / inv, rtn.offset, 0, qmax);
      sw += w[i];
      sq += w[i] * q;
      sqq += w[i] * q * q;
      sx += w[i] * x[i];
      sxq += w[i] * x[i] * q;
    }
    const double det = sw * sqq - sq * sq;
    if (sw <= 0.0 || det <= 0.0) continue;
    double scale = (sw * sxq - sq * sx) / det;
    double offset = (sqq * sx - sq * sxq) / det;
    if (offset_nonpositive && offset > 0.0) {
      offset = 0.0;
      scale = sxq / sqq;
    }
    if (scale < 0.0) continue;
    double err = 0.0;
    for (int i = 0; i < n; ++i) {
      const double q = nearest_code(x[i], 1.0f / inv, rtn.offset, 0, qmax);
      const double diff = x[i] - (scale * q + offset);
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
