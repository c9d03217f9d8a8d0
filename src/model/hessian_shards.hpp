// The calibration H of a block's linear inputs, over windows shared among ranks.
//
// The windows are cut into forward chunks of chunk_tokens / seqlen windows (the unit of one
// block_forward call), the chunks into at most kMaxLeaves leaves of consecutive chunks, and
// the leaves into one contiguous range per rank. A leaf's H is accumulated chunk by chunk in
// order; the leaves' H are summed by the fixed pairwise tree of sum_tree.hpp. Nothing of this
// depends on the number of ranks, so neither do the bytes of H, and one process does the same
// additions in the same order as any number of them.
#pragma once

#include <array>
#include <cdquant/communicator.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/matrix.hpp>
#include <cdquant/model.hpp>
#include <cdquant/quantize.hpp>
#include <cstdint>

#include "model/sum_tree.hpp"

namespace cdq {

constexpr int kInputs = 4;                       // distinct linear inputs of a block (BlockInput)
using HessianSet = std::array<Matrix, kInputs>;  // per BlockInput; empty where not wanted
using InputMask = std::array<bool, kInputs>;

// More leaves let more ranks share the forward; each level of the tree holds one more H per
// input while it is summed (log2 16 + 1 = 5 at most).
constexpr int64_t kMaxLeaves = 16;

struct CalibrationShards {
  int64_t seqlen = 0;
  int64_t n_windows = 0;
  int64_t chunk_seqs = 1;  // windows per forward chunk
  int64_t n_chunks = 0;
  int64_t n_leaves = 0;
  int rank = 0;
  int ranks = 1;

  CalibrationShards(int64_t n_windows, int64_t seqlen, int64_t chunk_tokens, int rank, int ranks);
  int64_t first_chunk(int64_t leaf) const { return leaf * n_chunks / n_leaves; }
  int64_t first_leaf(int r) const { return r * n_leaves / ranks; }
  int64_t first_window(int r) const;  // rank r holds windows [first_window(r), first_window(r+1))
  int64_t windows_of(int r) const { return first_window(r + 1) - first_window(r); }
  int owner(TreeNode node) const;  // the rank whose leaves hold the node wholly, or -1
};

// (2 / N) sum_t x_t x_t^T over all N calibration tokens of every wanted input, on every rank,
// from this rank's activations x [its windows * seqlen, dim] (left unchanged).
HessianSet block_hessians(const BlockWeights& block, const ModelConfig& config,
                          const CalibrationShards& shards, const Matrix& x, const InputMask& wanted,
                          Communicator* comm, QuantizeTimings& time);

// x <- the block's outputs, chunk by chunk (the next block's input).
void block_outputs(const BlockWeights& block, const ModelConfig& config,
                   const CalibrationShards& shards, Matrix& x);

// Raw float bytes of a matrix (for a Communicator).
std::span<std::byte> matrix_bytes(Matrix& m);

}  // namespace cdq
