#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace piquant {
namespace {

using Candidate = std::pair<float, std::int32_t>;

// Higher logit first; on equal logits the lower id first, so results do not depend
// on the sort's stability.
bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

std::int32_t argmax(std::span<const float> logits) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;  // strict: the lowest id wins ties
  }
  return static_cast<std::int32_t>(best);
}

}  // namespace

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {}

void Sampler::reset() {
  rng_.seed(options_.seed);
  recent_.clear();
}

void Sampler::accept(std::int32_t token) {
  if (options_.repeat_last_n <= 0) return;
  recent_.push_back(token);
  while (recent_.size() > static_cast<std::size_t>(options_.repeat_last_n)) recent_.pop_front();
}

std::int32_t Sampler::sample(std::span<const float> logits) {
  if (logits.empty()) throw Error("sampler: no logits to sample from");
  if (options_.temperature <= 0.0f) return argmax(logits);

  const std::size_t n_vocab = logits.size();
  candidates_.resize(n_vocab);
  for (std::size_t i = 0; i < n_vocab; ++i) {
    // -inf is a masked token; NaN or +inf would break the ordering and the softmax.
    if (std::isnan(logits[i]) || logits[i] == INFINITY) {
      throw Error("sampler: the logit of token " + std::to_string(i) + " is " + std::to_string(logits[i]));
    }
    candidates_[i] = {logits[i], static_cast<std::int32_t>(i)};
  }

  // Repetition penalty, once per distinct recent token. Before sorting, candidates_[id]
  // holds token id; a penalised entry is marked by storing -1 - id, then restored.
  if (options_.repeat_penalty != 1.0f) {
    for (const std::int32_t token : recent_) {
      if (token < 0 || static_cast<std::size_t>(token) >= n_vocab) continue;
      Candidate& c = candidates_[static_cast<std::size_t>(token)];
      if (c.second < 0) continue;
      c.first = c.first > 0.0f ? c.first / options_.repeat_penalty : c.first * options_.repeat_penalty;
      c.second = -1 - c.second;
    }
    for (const std::int32_t token : recent_) {
      if (token < 0 || static_cast<std::size_t>(token) >= n_vocab) continue;
      Candidate& c = candidates_[static_cast<std::size_t>(token)];
      if (c.second < 0) c.second = -1 - c.second;
    }
  }

  // Top-k, then everything below in descending order (top-p and min-p need it).
  std::size_t n = n_vocab;
  if (options_.top_k > 0 && static_cast<std::size_t>(options_.top_k) < n_vocab) {
    n = static_cast<std::size_t>(options_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(n), candidates_.end(),
                      ranks_before);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), ranks_before);
  }
  candidates_.resize(n);

  // Softmax with temperature; the first candidate has the largest logit.
  const float max_logit = candidates_.front().first;
  if (max_logit == -INFINITY) throw Error("sampler: every logit is -inf");
  double sum = 0.0;
  for (Candidate& c : candidates_) {
    const double p = std::exp(static_cast<double>(c.first - max_logit) / options_.temperature);
    c.first = static_cast<float>(p);
    sum += p;
  }
  for (Candidate& c : candidates_) c.first = static_cast<float>(c.first / sum);

  // Top-p: the smallest prefix whose probability reaches top_p (at least one token).
  if (options_.top_p < 1.0f) {
    double cumulative = 0.0;
    std::size_t keep = 0;
    while (keep < n) {
      cumulative += candidates_[keep].first;
      ++keep;
      if (cumulative >= options_.top_p) break;
    }
    n = keep;
  }

  // Min-p: drop tokens less likely than min_p times the most likely one.
  if (options_.min_p > 0.0f) {
    const float threshold = options_.min_p * candidates_.front().first;
    std::size_t keep = 1;
    while (keep < n && candidates_[keep].first >= threshold) ++keep;
    n = keep;
  }

  // Draw from what is left, renormalised.
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) total += candidates_[i].first;
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;  // uniform in [0, total)
  double cumulative = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    cumulative += candidates_[i].first;
    if (u < cumulative) return candidates_[i].second;
  }
  return candidates_[n - 1].second;  // rounding left u just past the end
}

}  // namespace piquant
