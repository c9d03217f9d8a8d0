// The fixed summation tree (model/sum_tree.hpp) and the sharing of calibration windows
// (model/hessian_shards.hpp): however the leaves are split among ranks, the finished sum is the
// same expression, so floating-point H sums do not depend on the number of ranks.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "model/hessian_shards.hpp"
#include "model/sum_tree.hpp"

namespace cdq {
namespace {

// Sums as expression strings: "(a+b)" records exactly which pairs are added in which order.
using Expr = std::string;
const auto leaf_expr = [](int64_t i) { return std::to_string(i); };
const auto add_expr = [](Expr& acc, Expr&& rhs) { acc = "(" + acc + "+" + rhs + ")"; };

// The root's expression with leaves [0, n) split at the cut points into one range per rank.
Expr finished(int64_t n, const std::vector<int64_t>& firsts) {  // firsts: ranks + 1 entries
  const int ranks = static_cast<int>(firsts.size()) - 1;
  std::vector<std::vector<Expr>> sent(static_cast<size_t>(ranks));
  std::vector<size_t> next(static_cast<size_t>(ranks), 0);
  for (int r = 0; r < ranks; ++r)
    for (TreeNode node : tree_frontier(n, firsts[r], firsts[r + 1]))
      sent[static_cast<size_t>(r)].push_back(tree_sum<Expr>(node, n, leaf_expr, add_expr));
  const auto owner = [&](TreeNode node) {
    for (int r = 0; r < ranks; ++r)
      if (firsts[r] <= node.lo && node.end(n) <= firsts[r + 1]) return r;
    return -1;
  };
  const auto fetch = [&](int r, TreeNode) {
    auto& v = sent[static_cast<size_t>(r)];
    EXPECT_LT(next[static_cast<size_t>(r)], v.size());  // asked for in order, each once
    return v.at(next[static_cast<size_t>(r)]++);
  };
  Expr e = tree_finish<Expr>(tree_root(n), n, owner, fetch, add_expr);
  for (int r = 0; r < ranks; ++r)
    EXPECT_EQ(next[static_cast<size_t>(r)], sent[static_cast<size_t>(r)].size()) << "unused part";
  return e;
}

TEST(SumTree, EverySplitGivesTheOneProcessExpression) {
  for (int64_t n = 1; n <= 20; ++n) {
    const Expr one = tree_sum<Expr>(tree_root(n), n, leaf_expr, add_expr);
    EXPECT_EQ(finished(n, {0, n}), one);
    // Every split into two and three contiguous ranges, empty ones included.
    for (int64_t a = 0; a <= n; ++a) {
      EXPECT_EQ(finished(n, {0, a, n}), one) << n << " split at " << a;
      for (int64_t b = a; b <= n; ++b) EXPECT_EQ(finished(n, {0, a, b, n}), one);
    }
  }
  // Pairwise, not sequential: 5 leaves are ((0+1)+(2+3))+4.
  EXPECT_EQ(tree_sum<Expr>(tree_root(5), 5, leaf_expr, add_expr), "(((0+1)+(2+3))+4)");
}

TEST(SumTree, FrontierIsSmall) {
  for (int64_t n : {1, 7, 16, 100, 1000})
    for (int64_t a = 0; a < n; a += 3)
      EXPECT_LE(tree_frontier(n, a, n).size(), static_cast<size_t>(2 * std::log2(n) + 2));
}

TEST(CalibrationShards, RanksHoldContiguousWholeChunks) {
  for (int64_t windows : {1, 5, 10, 64, 200})
    for (int ranks : {1, 2, 3, 4, 16, 20}) {
      int64_t covered = 0;
      for (int r = 0; r < ranks; ++r) {
        const CalibrationShards s(windows, 32, 64, r, ranks);  // 2 windows per chunk
        EXPECT_LE(s.n_leaves, kMaxLeaves);
        EXPECT_EQ(s.first_window(r), covered);  // contiguous, in rank order
        EXPECT_EQ(s.first_window(r) % s.chunk_seqs, 0);
        covered += s.windows_of(r);
      }
      EXPECT_EQ(covered, windows);
    }
}

}  // namespace
}  // namespace cdq
