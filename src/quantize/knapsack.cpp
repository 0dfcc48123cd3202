#include "quantize/knapsack.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "core/error.h"

namespace piquant {
namespace {

std::uint64_t checked_add(std::uint64_t a, std::uint64_t b) {
  if (b > std::numeric_limits<std::uint64_t>::max() - a) throw Error("knapsack: the summed cost overflows 64 bits");
  return a + b;
}

std::uint64_t group_min_cost(const std::vector<KnapsackOption>& group) {
  std::uint64_t m = std::numeric_limits<std::uint64_t>::max();
  for (const KnapsackOption& o : group) m = std::min(m, o.cost);
  return m;
}

// Better: less loss, then less cost, then (by the caller's order) the earlier option.
bool better(double loss, std::uint64_t cost, double best_loss, std::uint64_t best_cost) {
  return loss < best_loss || (loss == best_loss && cost < best_cost);
}

}  // namespace

std::uint64_t knapsack_min_cost(const std::vector<std::vector<KnapsackOption>>& groups) {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    if (groups[i].empty()) throw Error("knapsack: group " + std::to_string(i) + " has no option");
    total = checked_add(total, group_min_cost(groups[i]));
  }
  return total;
}

KnapsackSolution solve_knapsack(const std::vector<std::vector<KnapsackOption>>& groups, std::uint64_t capacity,
                                const KnapsackLimits& limits) {
  const std::uint64_t base = knapsack_min_cost(groups);
  if (base > capacity) {
    throw Error("knapsack: the cheapest choice costs " + std::to_string(base) + ", more than the capacity " +
                std::to_string(capacity));
  }
  const std::size_t n = groups.size();
  std::uint64_t max_extra = 0;  // Σ over groups of the largest extra cost: more capacity is of no use
  std::uint64_t divisor = 0;    // gcd of every extra cost
  for (std::size_t i = 0; i < n; ++i) {
    if (groups[i].size() > 255) throw Error("knapsack: group " + std::to_string(i) + " has more than 255 options");
    const std::uint64_t m = group_min_cost(groups[i]);
    std::uint64_t largest = 0;
    for (const KnapsackOption& o : groups[i]) {
      if (!std::isfinite(o.loss)) throw Error("knapsack: group " + std::to_string(i) + " has a loss that is not finite");
      largest = std::max(largest, o.cost - m);
      divisor = std::gcd(divisor, o.cost - m);
    }
    max_extra = checked_add(max_extra, largest);
  }
  const std::uint64_t extra = std::min(capacity - base, max_extra);

  KnapsackSolution solution;
  solution.choice.assign(n, 0);
  std::uint64_t columns_allowed = limits.max_columns;
  if (n > 0) columns_allowed = std::min(columns_allowed, limits.max_table_cells / n);
  if (columns_allowed < 2) throw Error("knapsack: " + std::to_string(n) + " groups do not fit the table");
  std::uint64_t g = std::max<std::uint64_t>(divisor, 1);
  solution.exact = extra / g + 1 <= columns_allowed;
  if (!solution.exact) g *= (extra / g + columns_allowed - 2) / (columns_allowed - 1);  // ceil: extra / g < columns
  solution.granularity = g;
  const std::uint64_t columns = extra / g + 1;

  // best[c]: least loss of the groups so far with rounded extra cost <= c cells; how[i][c]
  // the option group i takes there.
  std::vector<double> best(columns, 0.0), next(columns);
  std::vector<std::uint64_t> best_cost(columns, 0), next_cost(columns);  // the true cost behind best[c], for ties
  std::vector<std::uint8_t> how(n * columns);
  std::vector<std::uint64_t> cells;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& group = groups[i];
    const std::uint64_t m = group_min_cost(group);
    cells.clear();
    for (const KnapsackOption& o : group) cells.push_back((o.cost - m + g - 1) / g);
    std::uint8_t* row = how.data() + i * columns;
    for (std::uint64_t c = 0; c < columns; ++c) {
      double loss = std::numeric_limits<double>::infinity();
      std::uint64_t cost = 0;
      std::uint8_t pick = 0;
      for (std::size_t k = 0; k < group.size(); ++k) {
        if (cells[k] > c) continue;
        const double l = best[c - cells[k]] + group[k].loss;
        const std::uint64_t t = best_cost[c - cells[k]] + group[k].cost;
        if (better(l, t, loss, cost)) {
          loss = l;
          cost = t;
          pick = static_cast<std::uint8_t>(k);
        }
      }
      next[c] = loss;
      next_cost[c] = cost;
      row[c] = pick;
    }
    best.swap(next);
    best_cost.swap(next_cost);
  }
  std::uint64_t c = columns - 1;
  for (std::size_t i = n; i-- > 0;) {
    const std::size_t k = how[i * columns + c];
    solution.choice[i] = k;
    c -= (groups[i][k].cost - group_min_cost(groups[i]) + g - 1) / g;
  }

  std::uint64_t cost = 0;
  for (std::size_t i = 0; i < n; ++i) cost += groups[i][solution.choice[i]].cost;
  // Spend what rounding left: the single change that lowers the loss most and still fits.
  for (;;) {
    double gain = 0.0;
    std::size_t gi = n, gk = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const KnapsackOption& now = groups[i][solution.choice[i]];
      for (std::size_t k = 0; k < groups[i].size(); ++k) {
        const KnapsackOption& o = groups[i][k];
        if (o.cost > now.cost && o.cost - now.cost > capacity - cost) continue;
        const double d = now.loss - o.loss;
        if (d > gain) {
          gain = d;
          gi = i;
          gk = k;
        }
      }
    }
    if (gi == n) break;
    cost = cost - groups[gi][solution.choice[gi]].cost + groups[gi][gk].cost;
    solution.choice[gi] = gk;
  }
  solution.cost = cost;
  for (std::size_t i = 0; i < n; ++i) solution.loss += groups[i][solution.choice[i]].loss;
  return solution;
}

}  // namespace piquant
