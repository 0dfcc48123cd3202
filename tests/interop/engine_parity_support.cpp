#include "interop/engine_parity_support.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "interop/llama_cpp_runner.h"
#include "checkpoint/synthetic.h"
#include "tokenizer/vocab.h"

namespace piquant::testing {

std::vector<double> softmax(std::span<const float> logits) {
  const double max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (std::size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp(static_cast<double>(logits[i]) - max);
  for (double& v : p) v /= sum;
  return p;
}

namespace {

// log softmax(logits) in double.
std::vector<double> log_softmax_double(std::span<const float> logits) {
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (const float v : logits) sum += std::exp(static_cast<double>(v) - max);
  const double log_z = max + std::log(sum);
  std::vector<double> out(logits.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(logits[i]) - log_z;
  return out;
}

}  // namespace

double kl_divergence(std::span<const float> reference, std::span<const float> logits) {
  if (reference.size() != logits.size() || reference.empty()) {
    throw std::invalid_argument("kl_divergence: rows of " + std::to_string(reference.size()) + " and " +
                                std::to_string(logits.size()) + " logits");
  }
  const std::vector<double> log_p = log_softmax_double(reference);
  const std::vector<double> log_q = log_softmax_double(logits);
  double kl = 0;
  for (std::size_t i = 0; i < log_p.size(); ++i) kl += std::exp(log_p[i]) * (log_p[i] - log_q[i]);
  // Rounding can leave a tiny negative sum for identical rows; KL itself is >= 0.
  return std::max(kl, 0.0);
}

}  // namespace piquant::testing
