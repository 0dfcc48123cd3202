// The multiple-choice knapsack against brute-force enumeration of every choice.
#include "quantize/knapsack.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "core/error.h"

namespace piquant {
namespace {

using Groups = std::vector<std::vector<KnapsackOption>>;

// The least total loss of any choice whose total cost is at most `capacity`, by trying
// every combination; infinity when none fits.
double brute_force_best(const Groups& groups, std::uint64_t capacity) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<std::size_t> pick(groups.size(), 0);
  for (;;) {
    std::uint64_t cost = 0;
    double loss = 0;
    for (std::size_t i = 0; i < groups.size(); ++i) {
      cost += groups[i][pick[i]].cost;
      loss += groups[i][pick[i]].loss;
    }
    if (cost <= capacity) best = std::min(best, loss);
    std::size_t i = 0;
    while (i < groups.size() && ++pick[i] == groups[i].size()) pick[i++] = 0;
    if (i == groups.size()) return best;
  }
}

Groups random_groups(std::mt19937_64& rng, std::uint64_t max_cost, std::uint64_t unit) {
  std::uniform_int_distribution<int> n_groups(1, 6), n_options(1, 4);
  std::uniform_int_distribution<std::uint64_t> cost(0, max_cost);
  std::uniform_real_distribution<double> loss(0.0, 1.0);
  Groups groups(static_cast<std::size_t>(n_groups(rng)));
  for (auto& g : groups) {
    const int k = n_options(rng);
    for (int j = 0; j < k; ++j) g.push_back({cost(rng) * unit, loss(rng)});
  }
  return groups;
}

void expect_consistent(const Groups& groups, const KnapsackSolution& s, std::uint64_t capacity) {
  ASSERT_EQ(s.choice.size(), groups.size());
  std::uint64_t cost = 0;
  double loss = 0;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    ASSERT_LT(s.choice[i], groups[i].size());
    cost += groups[i][s.choice[i]].cost;
    loss += groups[i][s.choice[i]].loss;
  }
  EXPECT_EQ(s.cost, cost);
  EXPECT_DOUBLE_EQ(s.loss, loss);
  EXPECT_LE(s.cost, capacity);
}

TEST(Knapsack, EqualsBruteForceOnSmallRandomInstances) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 400; ++trial) {
    // Costs that share a factor (the GGUF alignment does that) and costs that do not.
    const std::uint64_t unit = trial % 2 ? 32 : 1;
    const Groups groups = random_groups(rng, 40, unit);
    const std::uint64_t lo = knapsack_min_cost(groups);
    std::uint64_t hi = 0;
    for (const auto& g : groups) {
      std::uint64_t m = 0;
      for (const auto& o : g) m = std::max(m, o.cost);
      hi += m;
    }
    const std::uint64_t capacity = std::uniform_int_distribution<std::uint64_t>(lo, hi + 5)(rng);
    const KnapsackSolution s = solve_knapsack(groups, capacity);
    SCOPED_TRACE("trial " + std::to_string(trial));
    expect_consistent(groups, s, capacity);
    EXPECT_TRUE(s.exact);
    EXPECT_NEAR(s.loss, brute_force_best(groups, capacity), 1e-12);
  }
}

TEST(Knapsack, CoarseTableStaysWithinTheCapacityAndItsBound) {
  // A table of 4 columns forces rounding: the solution must still fit, and be at least
  // as good as the best choice within capacity - groups × granularity.
  std::mt19937_64 rng(7);
  KnapsackLimits limits;
  limits.max_columns = 4;
  int rounded = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const Groups groups = random_groups(rng, 1000, 1);
    const std::uint64_t lo = knapsack_min_cost(groups);
    const std::uint64_t capacity = lo + std::uniform_int_distribution<std::uint64_t>(0, 3000)(rng);
    const KnapsackSolution s = solve_knapsack(groups, capacity, limits);
    SCOPED_TRACE("trial " + std::to_string(trial));
    expect_consistent(groups, s, capacity);
    const double optimum = brute_force_best(groups, capacity);
    EXPECT_GE(s.loss, optimum - 1e-12);
    const std::uint64_t slack = groups.size() * s.granularity;
    if (capacity >= lo + slack) {
      EXPECT_LE(s.loss, brute_force_best(groups, capacity - slack) + 1e-12);
    }
    if (!s.exact) ++rounded;
  }
  EXPECT_GT(rounded, 100);  // the bound was exercised, not only exact solves
}

TEST(Knapsack, TiesGoToTheCheaperOption) {
  const Groups groups = {{{100, 0.5}, {200, 0.5}, {50, 0.5}}, {{10, 1.0}, {20, 0.25}}};
  const KnapsackSolution s = solve_knapsack(groups, 1000);
  EXPECT_EQ(s.choice[0], 2u);
  EXPECT_EQ(s.choice[1], 1u);
  EXPECT_EQ(s.cost, 70u);
}

TEST(Knapsack, BadInputsAreErrors) {
  EXPECT_THROW(solve_knapsack({{{10, 0.0}}, {{5, 0.0}, {7, 1.0}}}, 14), Error);  // below the cheapest: 15
  EXPECT_THROW(solve_knapsack({{}}, 100), Error);
  EXPECT_THROW(solve_knapsack({{{1, std::nan("")}}}, 100), Error);
  EXPECT_THROW(knapsack_min_cost({{{std::numeric_limits<std::uint64_t>::max(), 0.0}}, {{1, 0.0}}}), Error);
  try {
    solve_knapsack({{{10, 0.0}}, {{5, 0.0}, {7, 1.0}}}, 14);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("15"), std::string::npos) << e.what();
  }
}

TEST(Knapsack, NoGroupsCostNothing) {
  const KnapsackSolution s = solve_knapsack({}, 0);
  EXPECT_TRUE(s.choice.empty());
  EXPECT_EQ(s.cost, 0u);
  EXPECT_EQ(s.loss, 0.0);
}

}  // namespace
}  // namespace piquant
