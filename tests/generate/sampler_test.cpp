// The sampler's filters and draws. Expected distributions were computed separately
// (numpy: penalty, top-k, softmax with temperature, top-p, min-p, renormalise).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "core/error.h"
#include "generate/sampler.h"

namespace piquant {
namespace {

std::vector<double> draw_frequencies(Sampler& sampler, const std::vector<float>& logits, int draws) {
  std::vector<double> counts(logits.size(), 0.0);
  int out_of_range = 0;
  for (int i = 0; i < draws; ++i) {
    const std::int32_t token = sampler.sample(logits);
    if (token >= 0 && token < static_cast<std::int32_t>(logits.size())) {
      counts[static_cast<std::size_t>(token)] += 1;
    } else {
      ++out_of_range;
    }
  }
  EXPECT_EQ(out_of_range, 0);
  return counts;
}

// Pearson's chi-square of the counts against `expected` probabilities. Tokens with an
// expected probability of 0 must never be drawn. The bound is beyond the 99.99th
// percentile of chi-square with that many degrees of freedom, and the seed is fixed,
// so a pass or fail is repeatable.
void expect_distribution(const std::vector<double>& counts, const std::vector<double>& expected) {
  ASSERT_EQ(counts.size(), expected.size());
  double total = 0.0;
  for (const double c : counts) total += c;
  double chi2 = 0.0;
  int df = -1;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (expected[i] == 0.0) {
      EXPECT_EQ(counts[i], 0.0) << "token " << i << " must be filtered out";
      continue;
    }
    const double e = expected[i] * total;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
    ++df;
  }
  if (df <= 0) return;
  EXPECT_LT(chi2, df + 5.0 * std::sqrt(2.0 * df) + 8.0) << "observed frequencies do not match (df " << df << ")";
}

SamplerOptions plain(float temperature = 1.0f) {
  SamplerOptions options;
  options.temperature = temperature;
  options.top_k = 0;
  options.top_p = 1.0f;
  options.min_p = 0.0f;
  options.repeat_penalty = 1.0f;
  options.seed = 1234;
  return options;
}

std::vector<float> log_probs(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (const double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

TEST(Sampler, GreedyTakesTheLargestLogitAndTheLowestIdOnTies) {
  Sampler sampler(plain(0.0f));
  EXPECT_EQ(sampler.sample(std::vector<float>{0.5f, 2.0f, -1.0f, 1.9f}), 1);
  EXPECT_EQ(sampler.sample(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}), 1);
  EXPECT_EQ(sampler.sample(std::vector<float>{-5.0f}), 0);
}

TEST(Sampler, FullPipelineMatchesTheFilteredRenormalisedDistribution) {
  SamplerOptions options;
  options.temperature = 0.8f;
  options.top_k = 6;
  options.top_p = 0.9f;
  options.min_p = 0.3f;
  options.repeat_penalty = 1.3f;
  options.repeat_last_n = 64;
  options.seed = 42;
  Sampler sampler(options);
  for (const std::int32_t token : {0, 7, 5}) sampler.accept(token);
  const std::vector<float> logits{2.0f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -3.0f, 1.5f};
  // After the penalty: {1.538, 1, 0.5, 0, -0.5, -1.3, -3, 1.154}; top-k drops 5 and 6,
  // top-p 0.9 drops 4 and 3, min-p 0.3 drops 2.
  const std::vector<double> expected{0.46982676, 0.23967578, 0, 0, 0, 0, 0, 0.29049745};
  expect_distribution(draw_frequencies(sampler, logits, 100000), expected);
}

TEST(Sampler, TemperatureAlone) {
  Sampler sampler(plain(0.5f));
  // softmax({0, 1} / 0.5): p1 = 1 / (1 + e^-2)
  expect_distribution(draw_frequencies(sampler, {0.0f, 1.0f}, 20000), {1 - 0.8807970779778825, 0.8807970779778825});
}

TEST(Sampler, TopKAlone) {
  SamplerOptions options = plain();
  options.top_k = 2;
  Sampler sampler(options);
  expect_distribution(draw_frequencies(sampler, {0.0f, 1.0f, 2.0f, 3.0f, 4.0f}, 20000),
                      {0, 0, 0, 1 - 0.7310585786300049, 0.7310585786300049});
}

TEST(Sampler, TopPAlone) {
  const auto logits = log_probs({0.15, 0.5, 0.05, 0.3});
  const auto run = [&](float top_p) {
    SamplerOptions options = plain();
    options.top_p = top_p;
    Sampler sampler(options);
    return draw_frequencies(sampler, logits, 20000);
  };
  expect_distribution(run(0.75f), {0, 0.5 / 0.8, 0, 0.3 / 0.8});
  expect_distribution(run(0.85f), {0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95});
  expect_distribution(run(0.1f), {0, 1, 0, 0});  // at least the most likely token stays
}

TEST(Sampler, MinPAlone) {
  const auto logits = log_probs({0.15, 0.5, 0.05, 0.3});
  const auto run = [&](float min_p) {
    SamplerOptions options = plain();
    options.min_p = min_p;
    Sampler sampler(options);
    return draw_frequencies(sampler, logits, 20000);
  };
  expect_distribution(run(0.2f), {0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95});  // drops p < 0.1
  expect_distribution(run(0.5f), {0, 0.5 / 0.8, 0, 0.3 / 0.8});              // drops p < 0.25
}

// 200 tokens ranked in shuffled id order, p(rank r) ∝ e^(-0.005 r): top-p 0.7 keeps the
// best 117 (the sorted prefix has to grow past its first chunk), min-p 0.7 the best 72.
TEST(Sampler, TopPAndMinPOverALargerShuffledVocab) {
  const std::size_t n = 200;
  std::vector<std::size_t> id_of_rank(n);
  for (std::size_t r = 0; r < n; ++r) id_of_rank[r] = r;
  std::shuffle(id_of_rank.begin(), id_of_rank.end(), std::mt19937(9));
  std::vector<float> logits(n);
  std::vector<double> weight(n);
  double total = 0;
  for (std::size_t r = 0; r < n; ++r) {
    logits[id_of_rank[r]] = -0.005f * static_cast<float>(r);
    weight[r] = std::exp(-0.005 * static_cast<double>(r));
    total += weight[r];
  }
  const auto expected_for_prefix = [&](std::size_t keep) {
    double kept = 0;
    for (std::size_t r = 0; r < keep; ++r) kept += weight[r];
    std::vector<double> expected(n, 0.0);
    for (std::size_t r = 0; r < keep; ++r) expected[id_of_rank[r]] = weight[r] / kept;
    return expected;
  };
  std::size_t top_p_keep = 0;
  for (double cumulative = 0; cumulative < 0.7 * total; ++top_p_keep) cumulative += weight[top_p_keep];
  ASSERT_EQ(top_p_keep, 117u);

  SamplerOptions options = plain();
  options.top_p = 0.7f;
  Sampler top_p(options);
  expect_distribution(draw_frequencies(top_p, logits, 8000), expected_for_prefix(top_p_keep));
  options.min_p = 0.7f;
  Sampler both(options);
  expect_distribution(draw_frequencies(both, logits, 8000), expected_for_prefix(72));
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOncePerToken) {
  SamplerOptions options = plain();
  options.repeat_penalty = 2.0f;
  Sampler sampler(options);
  for (const std::int32_t token : {0, 2, 0, 0}) sampler.accept(token);  // 0 repeated: still penalised once
  const std::vector<float> logits{2.0f, 1.5f, -1.0f, -1.5f};
  // Penalised logits: {1.0, 1.5, -2.0, -1.5}.
  std::vector<double> expected;
  double sum = 0;
  for (const double l : {1.0, 1.5, -2.0, -1.5}) sum += std::exp(l);
  for (const double l : {1.0, 1.5, -2.0, -1.5}) expected.push_back(std::exp(l) / sum);
  expect_distribution(draw_frequencies(sampler, logits, 50000), expected);
}

TEST(Sampler, RepetitionPenaltyLooksOnlyAtTheLastN) {
  SamplerOptions options = plain(0.01f);  // nearly greedy, but through the penalty path
  options.repeat_penalty = 4.0f;
  options.repeat_last_n = 1;
  Sampler sampler(options);
  const std::vector<float> logits{2.0f, 1.0f};
  sampler.accept(1);
  sampler.accept(0);  // only 0 is remembered: 2 / 4 = 0.5 < 1
  EXPECT_EQ(sampler.sample(logits), 1);
  sampler.accept(1);  // now only 1: 0 wins again
  EXPECT_EQ(sampler.sample(logits), 0);
  sampler.reset();
  EXPECT_EQ(sampler.sample(logits), 0);
}

TEST(Sampler, SameSeedSameDrawsAndResetRestarts) {
  SamplerOptions options = plain();
  options.seed = 7;
  const std::vector<float> logits{0.1f, 0.2f, 0.3f, 0.0f, -0.2f, 0.25f};
  Sampler a(options), b(options);
  std::vector<std::int32_t> first;
  for (int i = 0; i < 500; ++i) {
    first.push_back(a.sample(logits));
    ASSERT_EQ(first.back(), b.sample(logits)) << "draw " << i;
  }
  a.reset();
  for (int i = 0; i < 500; ++i) ASSERT_EQ(a.sample(logits), first[static_cast<std::size_t>(i)]) << "draw " << i;

  options.seed = 8;
  Sampler c(options);
  int differ = 0;
  for (int i = 0; i < 500; ++i) differ += c.sample(logits) != first[static_cast<std::size_t>(i)];
  EXPECT_GT(differ, 100);
}

TEST(Sampler, MaskedTokensAreNeverDrawn) {
  const float inf = std::numeric_limits<float>::infinity();
  Sampler sampler(plain());
  expect_distribution(draw_frequencies(sampler, {-inf, 0.0f, -inf, 0.0f}, 4000), {0, 0.5, 0, 0.5});
}

TEST(Sampler, BadLogitsThrow) {
  Sampler sampler(plain());
  EXPECT_THROW(sampler.sample(std::vector<float>{}), Error);
  EXPECT_THROW(sampler.sample(std::vector<float>{0.0f, std::nanf("")}), Error);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_THROW(sampler.sample(std::vector<float>{-inf, -inf}), Error);
  Sampler greedy(plain(0.0f));
  EXPECT_THROW(greedy.sample(std::vector<float>{}), Error);

  SamplerOptions options = plain();
  options.repeat_penalty = 0.0f;
  EXPECT_THROW(Sampler{options}, Error);
  options = plain(std::nanf(""));
  EXPECT_THROW(Sampler{options}, Error);
}

TEST(Sampler, TinyTemperatureIsNearlyGreedy) {
  Sampler sampler(plain(1e-30f));
  for (int i = 0; i < 100; ++i) ASSERT_EQ(sampler.sample(std::vector<float>{0.5f, 2.0f, -1.0f, 1.9f}), 1);
}

}  // namespace
}  // namespace piquant
