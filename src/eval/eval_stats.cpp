#include "eval/eval_stats.h"

#include <algorithm>
#include <cmath>

namespace piquant {

double MeanAccumulator::stderr_of_mean() const {
  if (count_ < 2) return 0.0;
  const double n = static_cast<double>(count_);
  const double variance = sum_sq_ / n - mean() * mean();
  return variance > 0.0 ? std::sqrt(variance / (n - 1.0)) : 0.0;
}

double perplexity_of(const MeanAccumulator& nll) { return std::exp(nll.mean()); }

double perplexity_stderr_of(const MeanAccumulator& nll) { return perplexity_of(nll) * nll.stderr_of_mean(); }

double percentile(std::vector<float>& values, double fraction) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(fraction, 0.0, 1.0) * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(rank));
  const std::size_t above = std::min(below + 1, values.size() - 1);
  const double weight = rank - static_cast<double>(below);
  return static_cast<double>(values[below]) * (1.0 - weight) + static_cast<double>(values[above]) * weight;
}

}  // namespace piquant
