// The size-budget allocation's knapsack: its answer against brute force over every combination,
// the budget, the coarse-unit fallback and the error for a budget nothing fits.
#include <gtest/gtest.h>

#include <cdquant/rng.hpp>
#include <limits>
#include <vector>

#include "quant/allocation_knapsack.hpp"
#include "support/errors.hpp"

namespace cdq {
namespace {

using Groups = std::vector<std::vector<KnapsackChoice>>;

Groups random_groups(Rng& rng, int n_groups, int max_choices, int64_t max_cost) {
  Groups g(static_cast<size_t>(n_groups));
  for (auto& choices : g) {
    const int n = 1 + static_cast<int>(rng.below(static_cast<uint64_t>(max_choices)));
    for (int j = 0; j < n; ++j)
      choices.push_back(
          {static_cast<int64_t>(rng.below(static_cast<uint64_t>(max_cost))), rng.uniform() * 10.0});
  }
  return g;
}

// Least loss over all combinations within the budget (infinity when none fits).
double brute_force(const Groups& g, int64_t budget) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<size_t> idx(g.size(), 0);
  while (true) {
    int64_t cost = 0;
    double loss = 0.0;
    for (size_t i = 0; i < g.size(); ++i) {
      cost += g[i][idx[i]].cost;
      loss += g[i][idx[i]].loss;
    }
    if (cost <= budget) best = std::min(best, loss);
    size_t k = 0;
    while (k < g.size() && ++idx[k] == g[k].size()) idx[k++] = 0;
    if (k == g.size()) return best;
  }
}

TEST(AllocationKnapsack, EqualsBruteForceOnRandomInstances) {
  Rng rng(7);
  int checked = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const Groups g = random_groups(rng, 1 + static_cast<int>(rng.below(6)), 4, 40);
    int64_t lo = 0, hi = 0;
    for (const auto& c : g) {
      int64_t mn = c[0].cost, mx = c[0].cost;
      for (const auto& k : c) mn = std::min(mn, k.cost), mx = std::max(mx, k.cost);
      lo += mn;
      hi += mx;
    }
    const int64_t budget = lo + static_cast<int64_t>(rng.below(static_cast<uint64_t>(hi - lo + 1)));
    const KnapsackResult r = solve_knapsack(g, budget);
    ASSERT_TRUE(r.exact);
    EXPECT_NEAR(r.loss, brute_force(g, budget), 1e-9) << "trial " << trial;
    EXPECT_LE(r.cost, budget);
    // The reported cost and loss are those of the reported choice.
    int64_t cost = 0;
    double loss = 0.0;
    for (size_t i = 0; i < g.size(); ++i) {
      cost += g[i][static_cast<size_t>(r.choice[i])].cost;
      loss += g[i][static_cast<size_t>(r.choice[i])].loss;
    }
    EXPECT_EQ(cost, r.cost);
    EXPECT_DOUBLE_EQ(loss, r.loss);
    ++checked;
  }
  EXPECT_EQ(checked, 300);
}

// Costs that are multiples of a large gcd (as byte sizes of tensors are) stay exact.
TEST(AllocationKnapsack, LargeCostsWithCommonFactorAreExact) {
  Rng rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    Groups g = random_groups(rng, 5, 4, 30);
    int64_t lo = 0;
    for (auto& c : g) {
      int64_t mn = std::numeric_limits<int64_t>::max();
      for (auto& k : c) {
        k.cost = k.cost * 2304 + 100000;
        mn = std::min(mn, k.cost);
      }
      lo += mn;
    }
    const int64_t budget = lo + 2304 * static_cast<int64_t>(rng.below(100));
    const KnapsackResult r = solve_knapsack(g, budget, 128);  // >= 100 cells: the gcd fits
    EXPECT_TRUE(r.exact);
    EXPECT_TRUE(r.unit % 2304 == 0 || r.unit == 1);  // 1: every group had one useful choice
    EXPECT_NEAR(r.loss, brute_force(g, budget), 1e-9);
  }
}

// Too few cells for the gcd: costs are rounded up to a coarser unit, the budget still holds and
// the answer is no better than the optimum (and no worse than the cheapest choice everywhere).
TEST(AllocationKnapsack, CoarseUnitKeepsTheBudget) {
  Rng rng(11);
  for (int trial = 0; trial < 100; ++trial) {
    const Groups g = random_groups(rng, 6, 4, 1000);
    const int64_t budget = static_cast<int64_t>(rng.below(6000)) + 3000;
    double cheapest = 0.0;
    int64_t min_cost = 0;
    for (const auto& c : g) {
      const KnapsackChoice* m = &c[0];
      for (const auto& k : c)
        if (k.cost < m->cost || (k.cost == m->cost && k.loss < m->loss)) m = &k;
      cheapest += m->loss;
      min_cost += m->cost;
    }
    if (min_cost > budget) continue;
    const KnapsackResult r = solve_knapsack(g, budget, 16);
    EXPECT_LE(r.cost, budget);
    EXPECT_GE(r.loss, brute_force(g, budget) - 1e-9);
    EXPECT_LE(r.loss, cheapest + 1e-9);
  }
}

TEST(AllocationKnapsack, BudgetBelowTheCheapestIsAnError) {
  const Groups g = {{{10, 1.0}, {20, 0.5}}, {{7, 2.0}}};
  EXPECT_NE(test::error_of([&] { solve_knapsack(g, 16); }).find("below the smallest possible size"),
            std::string::npos);
  EXPECT_EQ(solve_knapsack(g, 17).cost, 17);
}

}  // namespace
}  // namespace cdq
