#pragma once
// Log-probabilities from logits, in double: the numbers perplexity and KL divergence
// are made of. float logits in, double sums, so a 128k-token vocabulary does not
// lose the small probabilities that KL divergence weighs.
#include <cstdint>
#include <span>
#include <vector>

namespace piquant {

// log Σ exp(logits[i]), computed around the maximum so nothing overflows.
double log_sum_exp(std::span<const float> logits);

// out[i] = logits[i] - log_sum_exp(logits); out is resized to logits.size().
void log_softmax(std::span<const float> logits, std::vector<double>& out);

// Index of the largest value (the first one on ties). The span must not be empty.
std::int32_t argmax(std::span<const float> values);
std::int32_t argmax(std::span<const double> values);

// KL(P || Q) = Σ p_i (log p_i - log q_i) with P given as log-probabilities and Q as
// raw logits (normalised here). Terms with p_i = 0 contribute nothing.
double kl_divergence(std::span<const double> log_p, std::span<const float> logits_q);

}  // namespace piquant
