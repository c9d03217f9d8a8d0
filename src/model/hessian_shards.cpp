#include "model/hessian_shards.hpp"

#include <algorithm>
#include <chrono>
#include <map>

#include "linalg/linalg.hpp"

namespace cdq {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int64_t input_dim(const ModelConfig& c, int input) {
  switch (static_cast<BlockInput>(input)) {
    case BlockInput::AttnNorm:
    case BlockInput::FfnNorm:
      return c.dim;
    case BlockInput::AttnOut:
      return c.q_dim();
    case BlockInput::FfnAct:
      return c.hidden_dim;
  }
  CDQ_ASSERT(false);
  return 0;
}

// acc += rhs elementwise, input by input (the same additions on any thread count).
void add_into(HessianSet& acc, HessianSet&& rhs) {
  for (int i = 0; i < kInputs; ++i) {
    Matrix& a = acc[static_cast<size_t>(i)];
    const Matrix& b = rhs[static_cast<size_t>(i)];
    if (b.empty()) continue;
    CDQ_ASSERT(a.size() == b.size());
    float* pa = a.data.data();
    const float* pb = b.data.data();
#pragma omp parallel for simd schedule(static) if (a.size() >= (1 << 20))
    for (int64_t j = 0; j < a.size(); ++j) pa[j] += pb[j];
  }
}

// Rows [r0, r0 + rows) of x through the block, written to out when given.
void forward_rows(const BlockWeights& block, const ModelConfig& c, int64_t seqlen, const Matrix& x,
                  int64_t r0, int64_t rows, const BlockInputsCallback* capture, Matrix* out) {
  Matrix chunk(rows, x.cols);
  std::copy(x.row(r0), x.row(r0) + rows * x.cols, chunk.data.begin());
  block_forward(block, c, chunk, capture, seqlen);
  if (out != nullptr) std::copy(chunk.data.begin(), chunk.data.end(), out->row(r0));
}

// One leaf's H: its chunks in order, each H += (2 / N) X^T X.
HessianSet leaf_hessians(const BlockWeights& block, const ModelConfig& c,
                         const CalibrationShards& s, const Matrix& x, const InputMask& wanted,
                         int64_t leaf, QuantizeTimings& time) {
  const auto t0 = Clock::now();
  double syrk_seconds = 0.0;
  const auto alpha =
      static_cast<float>(2.0 / static_cast<double>(s.n_windows * s.seqlen));  // 2 / N
  HessianSet hs;
  for (int i = 0; i < kInputs; ++i)
    if (wanted[static_cast<size_t>(i)])
      hs[static_cast<size_t>(i)] = Matrix(input_dim(c, i), input_dim(c, i));
  const BlockInputsCallback capture = [&](BlockInput in, const Matrix& act) {
    const auto i = static_cast<size_t>(in);
    if (!wanted[i]) return;
    const auto ts = Clock::now();
    syrk_accumulate(act.data.data(), act.rows, act.cols, alpha, hs[i]);
    syrk_seconds += seconds_since(ts);
  };
  const int64_t own_first = s.first_window(s.rank);
  for (int64_t chunk = s.first_chunk(leaf); chunk < s.first_chunk(leaf + 1); ++chunk) {
    const int64_t w0 = chunk * s.chunk_seqs;
    const int64_t w1 = std::min(s.n_windows, w0 + s.chunk_seqs);
    forward_rows(block, c, s.seqlen, x, (w0 - own_first) * s.seqlen, (w1 - w0) * s.seqlen, &capture,
                 nullptr);
  }
  time.hessian += syrk_seconds;
  time.forward += seconds_since(t0) - syrk_seconds;
  return hs;
}

void send_set(Communicator& comm, HessianSet& hs, int to) {
  for (Matrix& m : hs)
    if (!m.empty()) comm.send(matrix_bytes(m), to);
}

HessianSet recv_set(Communicator& comm, const ModelConfig& c, const InputMask& wanted, int from) {
  HessianSet hs;
  for (int i = 0; i < kInputs; ++i) {
    if (!wanted[static_cast<size_t>(i)]) continue;
    Matrix& m = hs[static_cast<size_t>(i)];
    m = Matrix(input_dim(c, i), input_dim(c, i));
    comm.recv(matrix_bytes(m), from);
  }
  return hs;
}

}  // namespace

CalibrationShards::CalibrationShards(int64_t windows, int64_t len, int64_t chunk_tokens, int r,
                                     int n_ranks)
    : seqlen(len), n_windows(windows), rank(r), ranks(n_ranks) {
  CDQ_ASSERT(windows > 0 && len > 0 && n_ranks > 0 && r >= 0 && r < n_ranks);
  chunk_seqs = std::max<int64_t>(1, chunk_tokens / len);
  n_chunks = (windows + chunk_seqs - 1) / chunk_seqs;
  n_leaves = std::min(n_chunks, kMaxLeaves);
}

int64_t CalibrationShards::first_window(int r) const {
  return std::min(n_windows, first_chunk(first_leaf(r)) * chunk_seqs);
}

int CalibrationShards::owner(TreeNode node) const {
  for (int r = 0; r < ranks; ++r)
    if (first_leaf(r) <= node.lo && node.end(n_leaves) <= first_leaf(r + 1)) return r;
  return -1;
}

std::span<std::byte> matrix_bytes(Matrix& m) {
  return std::as_writable_bytes(std::span<float>(m.data));
}

HessianSet block_hessians(const BlockWeights& block, const ModelConfig& c,
                          const CalibrationShards& s, const Matrix& x, const InputMask& wanted,
                          Communicator* comm, QuantizeTimings& time) {
  CDQ_ASSERT(x.rows == s.windows_of(s.rank) * s.seqlen);
  const auto leaf = [&](int64_t i) { return leaf_hessians(block, c, s, x, wanted, i, time); };
  const auto add = [&](HessianSet& acc, HessianSet&& rhs) {
    const auto t0 = Clock::now();
    add_into(acc, std::move(rhs));
    time.hessian += seconds_since(t0);
  };
  // This rank's frontier, all of it before any exchange (a blocking send would otherwise hold
  // this rank's forward until rank 0 gets to it).
  std::map<int64_t, HessianSet> own;
  const std::vector<TreeNode> frontier =
      tree_frontier(s.n_leaves, s.first_leaf(s.rank), s.first_leaf(s.rank + 1));
  for (const TreeNode& node : frontier)
    own[node.lo] = tree_sum<HessianSet>(node, s.n_leaves, leaf, add);
  if (s.ranks == 1) return std::move(own.at(0));

  const auto t0 = Clock::now();
  const double hessian_before = time.hessian;
  HessianSet hs;
  if (s.rank == 0) {
    const auto owner = [&](TreeNode node) { return s.owner(node); };
    const auto fetch = [&](int r, TreeNode node) {
      return r == 0 ? std::move(own.at(node.lo)) : recv_set(*comm, c, wanted, r);
    };
    hs = tree_finish<HessianSet>(tree_root(s.n_leaves), s.n_leaves, owner, fetch, add);
  } else {
    for (const TreeNode& node : frontier) send_set(*comm, own.at(node.lo), 0);
    own.clear();
    for (int i = 0; i < kInputs; ++i)
      if (wanted[static_cast<size_t>(i)])
        hs[static_cast<size_t>(i)] = Matrix(input_dim(c, i), input_dim(c, i));
  }
  for (Matrix& m : hs)
    if (!m.empty()) comm->broadcast(matrix_bytes(m), 0);
  time.exchange += seconds_since(t0) - (time.hessian - hessian_before);
  return hs;
}

void block_outputs(const BlockWeights& block, const ModelConfig& c, const CalibrationShards& s,
                   Matrix& x) {
  const int64_t chunk_rows = s.chunk_seqs * s.seqlen;
  for (int64_t r0 = 0; r0 < x.rows; r0 += chunk_rows)
    forward_rows(block, c, s.seqlen, x, r0, std::min(chunk_rows, x.rows - r0), nullptr, &x);
}

}  // namespace cdq
