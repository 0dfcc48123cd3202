#include "train/token_loss.h"
#include "core/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace piquant {
namespace {

std::vector<float> random_logits(std::int64_t V, std::uint32_t seed, float spread = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, spread);
  std::vector<float> z(static_cast<std::size_t>(V));
  for (float& v : z) v = n(rng);
  return z;
}

// A teacher's top k (largest logits) and its lse at temperature tau, in double by hand.
struct Teacher {
  std::vector<std::int32_t> ids;
  std::vector<float> logits;
  TeacherTopK view;
};
Teacher top_k(const std::vector<float>& l, std::int64_t k, double tau) {
  Teacher t;
  std::vector<std::int32_t> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[static_cast<std::size_t>(a)] > l[static_cast<std::size_t>(b)]; });
  for (std::int64_t i = 0; i < k; ++i) {
    t.ids.push_back(order[static_cast<std::size_t>(i)]);
    t.logits.push_back(l[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])]);
  }
  double s = 0.0;
  for (float v : l) s += std::exp(v / tau);
  t.view = {k, t.ids.data(), t.logits.data(), std::log(s)};
  return t;
}

// Central differences of the loss in each logit; the step is the float actually reached.
std::vector<double> numeric_gradient(std::vector<float> z, std::int32_t target, const TeacherTopK* teacher,
                                     const TokenLossWeights& w) {
  std::vector<double> g(z.size());
  std::vector<float> scratch(z.size());
  for (std::size_t j = 0; j < z.size(); ++j) {
    const float original = z[j];
    z[j] = original + 1e-2f;
    const double at_plus = z[j];
    const double plus = token_loss(z.data(), static_cast<std::int64_t>(z.size()), target, teacher, w, 1.0, scratch.data());
    z[j] = original - 1e-2f;
    const double at_minus = z[j];
    const double minus = token_loss(z.data(), static_cast<std::int64_t>(z.size()), target, teacher, w, 1.0, scratch.data());
    z[j] = original;
    g[j] = (plus - minus) / (at_plus - at_minus);
  }
  return g;
}

void expect_gradient(const std::vector<float>& z, std::int32_t target, const TeacherTopK* teacher, const TokenLossWeights& w) {
  std::vector<float> dz(z.size());
  token_loss(z.data(), static_cast<std::int64_t>(z.size()), target, teacher, w, 1.0, dz.data());
  const std::vector<double> fd = numeric_gradient(z, target, teacher, w);
  for (std::size_t j = 0; j < z.size(); ++j) {
    // Differences with steps of 1e-2: truncation error ~1e-5 of the curvature; float dz ~1e-7.
    EXPECT_NEAR(dz[j], fd[j], 2e-5 + 1e-4 * std::fabs(fd[j])) << "logit " << j;
  }
}

TEST(TokenLoss, CrossEntropyIsLogSoftmaxAndItsGradient) {
  const std::vector<float> z = random_logits(40, 1);
  double lse = 0.0;
  for (float v : z) lse += std::exp(static_cast<double>(v));
  lse = std::log(lse);
  std::vector<float> dz(z.size());
  EXPECT_NEAR(token_loss(z.data(), 40, 7, nullptr, {}, 0.25, dz.data()), lse - z[7], 1e-12);
  double sum = 0.0;
  for (float v : dz) sum += v;
  EXPECT_NEAR(sum, 0.0, 1e-6);  // softmax − onehot sums to 0 (times the scale)
  EXPECT_NEAR(dz[7], 0.25 * (std::exp(z[7] - lse) - 1.0), 1e-7);
  expect_gradient(z, 7, nullptr, {});
}

TEST(TokenLoss, FullVocabularyDistillationIsTheExactKl) {
  const std::vector<float> z = random_logits(30, 2), l = random_logits(30, 3);
  for (double tau : {1.0, 2.0}) {
    const Teacher t = top_k(l, 30, tau);
    const TokenLossWeights w{0.0, 1.0, tau};
    std::vector<double> p(30), q(30);
    double sp = 0.0, sq = 0.0;
    for (int j = 0; j < 30; ++j) {
      sp += (p[static_cast<std::size_t>(j)] = std::exp(l[static_cast<std::size_t>(j)] / tau));
      sq += (q[static_cast<std::size_t>(j)] = std::exp(z[static_cast<std::size_t>(j)] / tau));
    }
    double kl = 0.0;
    for (int j = 0; j < 30; ++j) {
      p[static_cast<std::size_t>(j)] /= sp;
      q[static_cast<std::size_t>(j)] /= sq;
      kl += p[static_cast<std::size_t>(j)] * std::log(p[static_cast<std::size_t>(j)] / q[static_cast<std::size_t>(j)]);
    }
    std::vector<float> dz(30);
    EXPECT_NEAR(token_loss(z.data(), 30, -1, &t.view, w, 1.0, dz.data()), tau * tau * kl, 1e-9) << "tau " << tau;
    for (int j = 0; j < 30; ++j) EXPECT_NEAR(dz[static_cast<std::size_t>(j)], tau * (q[static_cast<std::size_t>(j)] - p[static_cast<std::size_t>(j)]), 1e-7);
    expect_gradient(z, -1, &t.view, w);
  }
}

TEST(TokenLoss, TopKDistillationWithTheTailMatchesFiniteDifferences) {
  const std::vector<float> z = random_logits(50, 4), l = random_logits(50, 5);
  for (std::int64_t k : {1, 5, 49}) {
    const Teacher t = top_k(l, k, 1.5);
    expect_gradient(z, 3, &t.view, {0.3, 0.7, 1.5});  // mixed with cross-entropy
  }
  // Teacher = student at k = V: zero loss, zero gradient.
  const Teacher same = top_k(z, 50, 1.0);
  std::vector<float> dz(50);
  EXPECT_NEAR(token_loss(z.data(), 50, -1, &same.view, {0.0, 1.0, 1.0}, 1.0, dz.data()), 0.0, 1e-12);
  for (float v : dz) EXPECT_NEAR(v, 0.0, 1e-7);
}

TEST(TokenLoss, RejectsBadInput) {
  std::vector<float> z(10, 0.0f), dz(10);
  EXPECT_THROW(token_loss(z.data(), 10, 10, nullptr, {}, 1.0, dz.data()), Error);
  EXPECT_THROW(token_loss(z.data(), 10, 1, nullptr, {0.0, 1.0, 1.0}, 1.0, dz.data()), Error);
  std::vector<std::int32_t> ids = {12};
  std::vector<float> logits = {1.0f};
  const TeacherTopK bad{1, ids.data(), logits.data(), 1.0};
  EXPECT_THROW(token_loss(z.data(), 10, 1, &bad, {0.0, 1.0, 1.0}, 1.0, dz.data()), Error);
}

}  // namespace
}  // namespace piquant
