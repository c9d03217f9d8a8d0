// The BPE merge loop shared by all tokenizers: a doubly linked list of symbols and a priority
// queue of candidate pairs, so a text of n symbols costs O(n log n) instead of the O(n^2)
// rescans of llama2.c. The result is identical to repeatedly merging the best pair, ties
// going to the leftmost pair (what llama2.c, SentencePiece and HF tokenizers all do).
#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <vector>

namespace cdq::tok {

// One symbol: bytes [begin, end) of the text being merged, and its token id (-1: the piece
// is not in the vocabulary; such a symbol may still merge when the merge rule allows it).
struct BpeSymbol {
  int id = -1;
  uint32_t begin = 0;
  uint32_t end = 0;
};

// A possible merge of two adjacent symbols: lower priority merges first.
struct BpeMerge {
  double priority = 0;
  int id = -1;
};

// Merges `syms` (adjacent, non-empty, in text order) in place. `pair(left, right)` returns
// the merge of two adjacent symbols or nullopt when they cannot merge; it must depend only on
// the two symbols' contents.
template <class PairFn>
void bpe_merge(std::vector<BpeSymbol>& syms, PairFn&& pair) {
  const int n = static_cast<int>(syms.size());
  if (n < 2) return;
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    double priority;
    int left, right;
    uint32_t len;  // merged length when queued: detects stale entries
    int id;
  };
  auto later = [](const Candidate& a, const Candidate& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.left > b.left;  // ties: leftmost first
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  auto consider = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    if (std::optional<BpeMerge> m = pair(syms[l], syms[r]))
      queue.push({m->priority, l, r, syms[r].end - syms[l].begin, m->id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);
  std::vector<bool> dead(n, false);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    if (dead[c.left] || dead[c.right] || next[c.left] != c.right ||
        syms[c.right].end - syms[c.left].begin != c.len)
      continue;
    syms[c.left].end = syms[c.right].end;
    syms[c.left].id = c.id;
    dead[c.right] = true;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    consider(prev[c.left], c.left);
    consider(c.left, next[c.left]);
  }
  int out = 0;
  for (int i = 0; i < n; ++i)
    if (!dead[i]) syms[out++] = syms[i];
  syms.resize(out);
}

}  // namespace cdq::tok
