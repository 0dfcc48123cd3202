#pragma once
// The multiple-choice knapsack behind size-budget quantization: choose one option in
// every group (a type for every tensor) so that the summed cost (bytes) stays within a
// capacity and the summed loss (predicted KL divergence) is least.
//
// Method: a dynamic program over cost. Every group's cheapest option is taken as the
// base; the program spreads the capacity left over the base in cells of `granularity`
// bytes, with each option's extra cost rounded UP to whole cells, so whatever it picks
// fits the capacity. The granularity is the greatest common divisor of the extra costs
// when the table allows (every option then costs a whole number of cells, nothing is
// rounded, and the solution is optimal: `exact`); else the smallest multiple of it that
// fits the table, and the solution is at least as good as the best one within
// capacity - groups × granularity. A last pass spends what rounding left unused: while
// some single change of one group's option fits and lowers the loss, the one lowering
// it most is made. Ties go to the cheaper option, then the earlier one.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace piquant {

struct KnapsackOption {
  std::uint64_t cost = 0;
  double loss = 0.0;  // finite
};

struct KnapsackSolution {
  std::vector<std::size_t> choice;  // per group, the index of its chosen option
  std::uint64_t cost = 0;           // Σ chosen costs, <= capacity
  double loss = 0.0;                // Σ chosen losses, summed in group order
  std::uint64_t granularity = 1;    // bytes per cell of the dynamic program
  bool exact = false;               // no cost was rounded: the solution is optimal
};

struct KnapsackLimits {
  std::uint64_t max_columns = std::uint64_t{1} << 22;      // cells of capacity
  std::uint64_t max_table_cells = std::uint64_t{1} << 27;  // groups × columns (one byte each)
};

// Σ over groups of the cheapest option's cost. Throws Error on an empty group or overflow.
std::uint64_t knapsack_min_cost(const std::vector<std::vector<KnapsackOption>>& groups);

// Throws Error when the capacity is below knapsack_min_cost, a group is empty or has more
// than 255 options, a loss is not finite, or the groups outnumber the table's cells.
KnapsackSolution solve_knapsack(const std::vector<std::vector<KnapsackOption>>& groups, std::uint64_t capacity,
                                const KnapsackLimits& limits = {});

}  // namespace piquant
