#include "quant/allocation_knapsack.hpp"

#include <algorithm>
#include <cdquant/error.hpp>
#include <limits>
#include <numeric>

namespace cdq {

namespace {

struct Candidate {
  int index;      // into the group's choices
  int64_t extra;  // cost above the group's cheapest, in bytes
  double loss;
};

// The choices of one group that no other beats: sorted by extra cost, each strictly lower in
// loss than every cheaper one (a dearer, no better choice is never optimal).
std::vector<Candidate> pareto(const std::vector<KnapsackChoice>& g, int64_t cheapest,
                              int64_t slack) {
  std::vector<Candidate> all;
  for (size_t i = 0; i < g.size(); ++i)
    if (g[i].cost - cheapest <= slack)
      all.push_back({static_cast<int>(i), g[i].cost - cheapest, g[i].loss});
  std::sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) {
    return a.extra != b.extra ? a.extra < b.extra : a.loss < b.loss;
  });
  std::vector<Candidate> kept;
  for (const Candidate& c : all)
    if (kept.empty() || c.loss < kept.back().loss) kept.push_back(c);
  return kept;
}

}  // namespace

KnapsackResult solve_knapsack(const std::vector<std::vector<KnapsackChoice>>& groups,
                              int64_t budget, int64_t max_cells) {
  CDQ_ASSERT(max_cells > 0);
  int64_t base = 0;
  std::vector<int64_t> cheapest(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    CDQ_CHECK(!groups[g].empty(), "allocation: tensor group {} has no candidate", g);
    int64_t c = std::numeric_limits<int64_t>::max();
    for (const KnapsackChoice& k : groups[g]) {
      CDQ_ASSERT(k.cost >= 0);
      c = std::min(c, k.cost);
    }
    cheapest[g] = c;
    base += c;
  }
  CDQ_CHECK(base <= budget,
            "allocation: the budget of {} bytes is below the smallest possible size, {} bytes "
            "(every tensor at its cheapest candidate)",
            budget, base);
  std::vector<std::vector<Candidate>> cand(groups.size());
  int64_t unit = 0, reach = 0;  // reach: the most the groups can spend above their cheapest
  for (size_t g = 0; g < groups.size(); ++g) {
    cand[g] = pareto(groups[g], cheapest[g], budget - base);
    for (const Candidate& c : cand[g]) unit = std::gcd(unit, c.extra);
    reach += cand[g].back().extra;
  }
  // Bytes above the cheapest choices that the program must track.
  const int64_t slack = std::min(budget - base, reach);
  KnapsackResult res;
  if (unit == 0) unit = 1;  // every group has one useful choice
  if (slack / unit + 1 > max_cells) {
    unit = (slack + max_cells - 1) / max_cells;
    res.exact = false;
  }
  res.unit = unit;
  const int64_t cells = slack / unit + 1;
  const auto units = [&](int64_t extra) { return (extra + unit - 1) / unit; };  // rounded up
  const double inf = std::numeric_limits<double>::infinity();
  // best[c]: least loss of the groups so far within c units; pick[g][c]: group g's choice there.
  std::vector<double> best(static_cast<size_t>(cells), 0.0), next(best.size());
  std::vector<std::vector<uint16_t>> pick(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    CDQ_ASSERT(cand[g].size() < 65536);
    pick[g].assign(static_cast<size_t>(cells), 0);
    std::fill(next.begin(), next.end(), inf);
    for (size_t j = 0; j < cand[g].size(); ++j) {
      const int64_t w = units(cand[g][j].extra);
      const double loss = cand[g][j].loss;
      for (int64_t c = w; c < cells; ++c) {
        const double v = best[static_cast<size_t>(c - w)] + loss;
        if (v < next[static_cast<size_t>(c)]) {
          next[static_cast<size_t>(c)] = v;
          pick[g][static_cast<size_t>(c)] = static_cast<uint16_t>(j);
        }
      }
    }
    std::swap(best, next);
  }
  // best is non-increasing in c (within c units means within c + 1), so the last cell is best.
  int64_t c = cells - 1;
  res.choice.assign(groups.size(), 0);
  for (size_t g = groups.size(); g-- > 0;) {
    const Candidate& k = cand[g][pick[g][static_cast<size_t>(c)]];
    res.choice[g] = k.index;
    c -= units(k.extra);
    CDQ_ASSERT(c >= 0);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    const KnapsackChoice& k = groups[g][static_cast<size_t>(res.choice[g])];
    res.cost += k.cost;
    res.loss += k.loss;
  }
  CDQ_ASSERT(res.cost <= budget);
  return res;
}

}  // namespace cdq
