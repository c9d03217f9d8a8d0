// A fixed pairwise summation tree over n leaves, so that a sum of floating-point partials
// (the calibration H of groups of windows) comes out bit for bit the same however the leaves
// are shared among processes: the tree's shape depends on n alone.
//
// Node (lo, size), size a power of two and lo a multiple of it, covers leaves
// [lo, min(lo + size, n)); its value is left + right with left = (lo, size / 2) and
// right = (lo + size / 2, size / 2), or just left when right covers no leaf. The root is
// (0, the smallest power of two >= n).
//
// A process that holds the contiguous leaves [begin, end) computes the maximal nodes inside
// its range (its frontier: at most 2 log2 n of them, tree_frontier) and hands them on. The
// process that finishes the sum walks the tree from the root and stops at every node that lies
// wholly in one process's range: that node is in that process's frontier, because its parent
// was not wholly in that range. So the finished sum adds exactly the same pairs in the same
// order as one process holding all leaves.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace cdq {

struct TreeNode {
  int64_t lo = 0;
  int64_t size = 1;
  int64_t end(int64_t n) const { return lo + size < n ? lo + size : n; }
};

inline TreeNode tree_root(int64_t n) {
  int64_t size = 1;
  while (size < n) size *= 2;
  return {0, size};
}

namespace detail {
inline void frontier(TreeNode node, int64_t n, int64_t begin, int64_t end,
                     std::vector<TreeNode>& out) {
  if (node.lo >= n || node.lo >= end || node.end(n) <= begin) return;
  if (node.lo >= begin && node.end(n) <= end) {
    out.push_back(node);
    return;
  }
  const int64_t half = node.size / 2;
  frontier({node.lo, half}, n, begin, end, out);
  frontier({node.lo + half, half}, n, begin, end, out);
}
}  // namespace detail

// The maximal nodes inside [begin, end), in leaf order.
inline std::vector<TreeNode> tree_frontier(int64_t n, int64_t begin, int64_t end) {
  std::vector<TreeNode> out;
  if (n > 0 && begin < end) detail::frontier(tree_root(n), n, begin, end, out);
  return out;
}

// The value of a node from its leaves: leaf(i) -> V, add(V& acc, V&& rhs) adds rhs into acc.
// Holds one value per level of the tree at a time.
template <class V, class Leaf, class Add>
V tree_sum(TreeNode node, int64_t n, Leaf&& leaf, Add&& add) {
  if (node.size == 1) return leaf(node.lo);
  const int64_t half = node.size / 2;
  V left = tree_sum<V>(TreeNode{node.lo, half}, n, leaf, add);
  if (node.lo + half >= n) return left;
  add(left, tree_sum<V>(TreeNode{node.lo + half, half}, n, leaf, add));
  return left;
}

// The root's value from every process's frontier: owner(node) is the process whose range
// holds the node wholly, or -1; fetch(process, node) gives that frontier node's value (nodes
// of one process are asked for in leaf order).
template <class V, class Owner, class Fetch, class Add>
V tree_finish(TreeNode node, int64_t n, Owner&& owner, Fetch&& fetch, Add&& add) {
  const int p = owner(node);
  if (p >= 0) return fetch(p, node);
  const int64_t half = node.size / 2;
  V left = tree_finish<V>(TreeNode{node.lo, half}, n, owner, fetch, add);
  if (node.lo + half >= n) return left;
  add(left, tree_finish<V>(TreeNode{node.lo + half, half}, n, owner, fetch, add));
  return left;
}

}  // namespace cdq
