#pragma once
// Central finite differences in double, for checking the double-precision reference
// backwards against their reference forwards.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

namespace piquant::kernel_test {

// ∂loss/∂x[k] by a central difference: step h = 1e-6 · max(1, |x[k]|), divided by the
// step actually taken ((x+h) − (x−h) as stored). Error: truncation h²/6 · |loss'''| plus
// roundoff about 1e-16 · |loss| / h, both far below 1e-9 for the O(1) losses of these tests.
template <class Loss>
double central_difference(std::vector<double>& x, std::size_t k, Loss&& loss) {
  const double x0 = x[k], h = 1e-6 * std::max(1.0, std::abs(x0));
  const double plus = x0 + h, minus = x0 - h;
  x[k] = plus;
  const double up = loss();
  x[k] = minus;
  const double down = loss();
  x[k] = x0;
  return (up - down) / (plus - minus);
}

// How near a finite difference must come to an analytic gradient g: 1e-7 relative to
// max(1, |g|), two orders above the difference's own error bound (see above).
inline double finite_difference_tolerance(double g) { return 1e-7 * std::max(1.0, std::abs(g)); }

// Σ a[i]·b[i] in double: the loss L = dy · f(x) whose gradient a backward computes.
inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

inline std::vector<double> random_doubles(std::size_t n, std::mt19937& rng, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

}  // namespace piquant::kernel_test
