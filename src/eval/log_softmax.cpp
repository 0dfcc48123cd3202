#include "eval/log_softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace piquant {

double log_sum_exp(std::span<const float> logits) {
  if (logits.empty()) return -std::numeric_limits<double>::infinity();
  const double max = *std::max_element(logits.begin(), logits.end());
  if (!std::isfinite(max)) return max;  // +inf dominates; NaN propagates
  double sum = 0.0;
  for (const float x : logits) sum += std::exp(static_cast<double>(x) - max);
  return max + std::log(sum);
}

void log_softmax(std::span<const float> logits, std::vector<double>& out) {
  const double lse = log_sum_exp(logits);
  out.resize(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<double>(logits[i]) - lse;
}

std::int32_t argmax(std::span<const float> values) {
  return static_cast<std::int32_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

std::int32_t argmax(std::span<const double> values) {
  return static_cast<std::int32_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

double kl_divergence(std::span<const double> log_p, std::span<const float> logits_q) {
  const double lse_q = log_sum_exp(logits_q);
  double kl = 0.0;
  const std::size_t n = std::min(log_p.size(), logits_q.size());
  for (std::size_t i = 0; i < n; ++i) {
    const double p = std::exp(log_p[i]);
    if (p == 0.0) continue;
    kl += p * (log_p[i] - (static_cast<double>(logits_q[i]) - lse_q));
  }
  return kl;
}

}  // namespace piquant
