// The multiple-choice knapsack of a size-budget bit allocation (ALGORITHMS.md, "Bit
// allocation"): choose one candidate per group (a tensor, or tensors that must share a type) so
// that the summed predicted loss is least and the summed cost (bytes) stays within the budget.
// Pure arithmetic: the groups know nothing of tensors or files.
#pragma once

#include <cstdint>
#include <vector>

namespace cdq {

struct KnapsackChoice {
  int64_t cost = 0;   // bytes, >= 0
  double loss = 0.0;  // predicted loss increase (any sign)
};

struct KnapsackResult {
  std::vector<int> choice;  // [groups] index into each group's choices
  int64_t cost = 0;         // summed cost of the choice, <= the budget
  double loss = 0.0;        // summed loss of the choice
  int64_t unit = 1;         // bytes per cell of the dynamic program
  // True when the unit divides every cost difference, so the answer is optimal; false when the
  // budget's span needed a coarser unit (costs rounded up: feasible, optimal up to that rounding).
  bool exact = true;
};

// Dynamic programming over the bytes above the cheapest choice of every group, in units of the
// gcd of all cost differences (exact) or, if that needs more than max_cells cells, of the
// smallest unit that fits (costs rounded up, so the budget still holds). Throws Error when even
// the cheapest choices exceed the budget, or a group has no choice.
KnapsackResult solve_knapsack(const std::vector<std::vector<KnapsackChoice>>& groups,
                              int64_t budget, int64_t max_cells = int64_t{1} << 18);

}  // namespace cdq
