// The numeric building blocks against closed forms computed here by hand.
#include <cmath>
#include <limits>
#include <vector>

#include "eval/eval_stats.h"
#include "eval/log_softmax.h"
#include "support/test_support.h"

namespace piquant {
namespace {

TEST(LogSoftmax, UniformLogitsGiveMinusLogVocab) {
  const std::vector<float> logits(512, 3.25f);
  std::vector<double> lp;
  log_softmax(logits, lp);
  ASSERT_EQ(lp.size(), 512u);
  for (const double v : lp) EXPECT_NEAR(v, -std::log(512.0), 1e-12);
}

TEST(LogSoftmax, LargeLogitsDoNotOverflow) {
  const std::vector<float> logits{1000.0f, 1000.0f, -1000.0f};
  EXPECT_NEAR(log_sum_exp(logits), 1000.0 + std::log(2.0), 1e-9);
  std::vector<double> lp;
  log_softmax(logits, lp);
  EXPECT_NEAR(lp[0], -std::log(2.0), 1e-12);
  EXPECT_LT(lp[2], -1999.0);
}

TEST(LogSoftmax, MatchesTheDefinitionOnARow) {
  const std::vector<float> logits{0.5f, -1.0f, 2.0f, 0.0f};
  double z = 0;
  for (const float x : logits) z += std::exp(static_cast<double>(x));
  std::vector<double> lp;
  log_softmax(logits, lp);
  for (std::size_t i = 0; i < logits.size(); ++i) EXPECT_NEAR(lp[i], std::log(std::exp(static_cast<double>(logits[i])) / z), 1e-12);
  EXPECT_EQ(argmax(std::span<const float>(logits)), 2);
  EXPECT_EQ(argmax(std::span<const double>(lp)), 2);
}

TEST(KlDivergence, TwoPointDistributions) {
  // P = (0.5, 0.5), Q = (0.9, 0.1): KL = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1).
  const std::vector<double> log_p{std::log(0.5), std::log(0.5)};
  const std::vector<float> logits_q{static_cast<float>(std::log(0.9)), static_cast<float>(std::log(0.1))};
  EXPECT_NEAR(kl_divergence(log_p, logits_q), 0.5 * std::log(0.5 / 0.9) + 0.5 * std::log(0.5 / 0.1), 1e-7);
}

TEST(KlDivergence, ZeroForTheSameDistributionAndIgnoresImpossibleTokens) {
  const std::vector<float> logits{1.0f, 2.0f, -3.0f, 0.25f};
  std::vector<double> lp;
  log_softmax(logits, lp);
  EXPECT_NEAR(kl_divergence(lp, logits), 0.0, 1e-15);
  // Shifting all logits changes nothing.
  std::vector<float> shifted = logits;
  for (float& x : shifted) x += 7.0f;
  EXPECT_NEAR(kl_divergence(lp, shifted), 0.0, 1e-6);
  const std::vector<double> certain{0.0, -std::numeric_limits<double>::infinity()};
  const std::vector<float> q{0.0f, 0.0f};
  EXPECT_NEAR(kl_divergence(certain, q), std::log(2.0), 1e-12);
}

TEST(MeanAccumulator, MeanAndStandardError) {
  MeanAccumulator acc;
  for (const double v : {1.0, 2.0, 3.0, 4.0}) acc.add(v);
  EXPECT_EQ(acc.count(), 4);
  EXPECT_DOUBLE_EQ(acc.mean(), 2.5);
  // population variance 1.25, divided by n - 1
  EXPECT_NEAR(acc.stderr_of_mean(), std::sqrt(1.25 / 3.0), 1e-12);
  EXPECT_NEAR(perplexity_of(acc), std::exp(2.5), 1e-9);
  EXPECT_NEAR(perplexity_stderr_of(acc), std::exp(2.5) * std::sqrt(1.25 / 3.0), 1e-9);
  MeanAccumulator one;
  one.add(5.0);
  EXPECT_EQ(one.stderr_of_mean(), 0.0);
}

TEST(Percentile, InterpolatesBetweenOrderStatistics) {
  std::vector<float> values;
  for (int i = 101; i >= 1; --i) values.push_back(static_cast<float>(i));
  EXPECT_DOUBLE_EQ(percentile(values, 0.5), 51.0);
  EXPECT_DOUBLE_EQ(percentile(values, 0.99), 100.0);
  EXPECT_DOUBLE_EQ(percentile(values, 1.0), 101.0);
  EXPECT_DOUBLE_EQ(percentile(values, 0.0), 1.0);
  std::vector<float> two{0.0f, 1.0f};
  EXPECT_DOUBLE_EQ(percentile(two, 0.25), 0.25);
  std::vector<float> none;
  EXPECT_EQ(percentile(none, 0.5), 0.0);
}

}  // namespace
}  // namespace piquant
