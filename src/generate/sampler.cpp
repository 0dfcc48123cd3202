#include "generate/sampler.h"

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

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {
  if (!(options.repeat_penalty > 0.0f) || !std::isfinite(options.repeat_penalty)) {
    throw Error("sampler: the repetition penalty must be a positive number, not " + std::to_string(options.repeat_penalty));
  }
  if (std::isnan(options.temperature) || std::isnan(options.top_p) || std::isnan(options.min_p)) {
    throw Error("sampler: temperature, top-p and min-p must be numbers");
  }
}

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

  // Top-k: the k best, sorted. Without it nothing is sorted yet: a full sort of a
  // large vocab per token costs more than needed, so the filters below sort only as
  // far as they look.
  std::size_t n = n_vocab;
  std::size_t sorted = 0;  // candidates_[0, sorted) are the best, in order
  if (options_.top_k > 0 && static_cast<std::size_t>(options_.top_k) < n_vocab) {
    n = static_cast<std::size_t>(options_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(n), candidates_.end(),
                      ranks_before);
    sorted = n;
  }
  const auto first = candidates_.begin();
  const auto end = first + static_cast<std::ptrdiff_t>(n);

  // Softmax with temperature over what top-k kept.
  const float max_logit = sorted > 0 ? first->first : std::max_element(first, end, [](const Candidate& a, const Candidate& b) {
    return a.first < b.first;
  })->first;
  if (max_logit == -INFINITY) throw Error("sampler: every logit is -inf");
  double sum = 0.0;
  for (auto it = first; it != end; ++it) {
    it->first = std::exp((it->first - max_logit) / options_.temperature);  // a tiny temperature gives 0, not NaN
    sum += it->first;
  }
  const auto inv_sum = static_cast<float>(1.0 / sum);
  for (auto it = first; it != end; ++it) it->first *= inv_sum;

  // Min-p: drop tokens less likely than min_p times the most likely one. Top-p and
  // min-p each keep a prefix of the ranking, so applying min-p first keeps the same set.
  if (options_.min_p > 0.0f) {
    const float threshold = options_.min_p * inv_sum;  // p_max = e^0 / sum
    const auto likely = [threshold](const Candidate& c) { return c.first >= threshold; };
    if (sorted > 0) {
      n = static_cast<std::size_t>(std::partition_point(first, end, likely) - first);
      sorted = n;
    } else {
      n = static_cast<std::size_t>(std::partition(first, end, likely) - first);
    }
    n = std::max<std::size_t>(n, 1);  // rounding must not drop the most likely token
  }

  // Top-p: the smallest prefix of the ranking whose probability reaches top_p (at least
  // one token), sorting a chunk at a time only as far as the running sum needs.
  if (options_.top_p < 1.0f) {
    double cumulative = 0.0;
    std::size_t keep = 0;
    while (keep < n) {
      if (keep == sorted) {
        const std::size_t chunk_end = std::min(n, sorted + std::max<std::size_t>(64, sorted));
        std::partial_sort(first + static_cast<std::ptrdiff_t>(sorted), first + static_cast<std::ptrdiff_t>(chunk_end),
                          first + static_cast<std::ptrdiff_t>(n), ranks_before);
        sorted = chunk_end;
      }
      cumulative += candidates_[keep].first;
      ++keep;
      if (cumulative >= options_.top_p) break;
    }
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
