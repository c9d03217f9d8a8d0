// GPTQ with the semantics of the reference implementation (IST-DASLab/gptq, gptq.py
// fasterquant): dead inputs, damping, act-order, lazy blocks, dynamic and static groups.
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <cdquant/solver.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace cdq {

struct GptqResult {
  Grid grid;                   // with g_idx in original column order
  std::vector<uint8_t> codes;  // [d_out, d_in] in original column order
  std::vector<int64_t> perm;   // processing order: perm[j] = original column of position j
  double percdamp = 0.0;       // damping actually used (after escalations)
  std::vector<std::string> notes;
  // Only with keep_factors: in processing order, W - Q = err * u (the scaled errors times the
  // upper Cholesky factor of the damped H^-1), so (Q - W) H = -err * u^-T: a coordinate-descent
  // start gets its gradient from one triangular solve instead of a full product.
  Matrix err;  // [d_out, d_in]
  Matrix u;    // [d_in, d_in]
};

// Quantizes W [d_out, d_in] with H [d_in, d_in] using options.grid (or options.fixed_grid():
// codes only), options.percdamp, gptq_block, act_order, static_groups and threads.
// Reference details kept on purpose:
// - per-channel scales are fitted on W before the dead-column fix (as the reference), groups
//   after it;
// - act-order: stable sort of diag(H) (after the dead fix, before damping), descending;
// - a dynamic group is fitted when the pass reaches its first column (in processing order) on
//   W as last written at a block boundary: the reference reads the global W, which receives
//   the updates of the current block only at its end. Its g_idx is position / group_size.
// Not thread-safe to call from inside an OpenMP parallel region (uses BLAS and OpenMP).
GptqResult gptq_quantize(const Matrix& w, const Matrix& h, const SolverOptions& options,
                         bool keep_factors = false);

// G = (Q - W) H with the damped H, [d_out, ld] (ld >= d_in, padding zero), original column
// order, from the factors of a gptq_quantize(..., keep_factors = true) result (consumed).
std::vector<float> gptq_gradient(GptqResult& res, int64_t ld);

}  // namespace cdq
