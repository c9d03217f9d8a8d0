// CDQuant coordinate descent over the codes of a fixed grid: greedy CD, block CD (BCD) and
// cyclic CD. Every variant minimises, row by row,
//     f(q) = (Q(q) - w)^T H (Q(q) - w)
// with the damped H, keeping per row the gradient g = H e (e = Q - w) up to date after every
// accepted move (g += delta * H[i, :], H symmetric so the contiguous row i is used).
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/grid_constraint.hpp>
#include <cdquant/matrix.hpp>
#include <cdquant/solver.hpp>
#include <cstdint>
#include <functional>
#include <vector>

namespace cdq {

enum class CdKind {
  Greedy,  // each step: the single coordinate move with the largest decrease
  Block,   // each step: the best block move (blocks of `block` coordinates, singles included)
  Cyclic,  // sweep i = 0 .. d_in-1, each coordinate moved to its own optimum
};

constexpr int kMaxCdBlock = 4;

struct CdOptions {
  CdKind kind = CdKind::Greedy;
  double budget = 1.0;  // Greedy/Block: at most ceil(budget * d_in) steps per row
  int block = 2;        // Block: coordinates per block, 1..kMaxCdBlock
  int sweeps = 4;  // Cyclic: passes over the coordinates (stops early when one changes nothing)
  int warm_sweeps = 0;  // Greedy/Block: cyclic passes run first (cheap, cache-friendly)
  // A move is accepted only when it lowers the row objective by more than
  // tol_rel * (the row's starting objective): no float ping-pong, guaranteed termination.
  double tol_rel = 1e-6;
  // Rounds of scale refit: after the descent, every group scale of a row moves to its optimum
  // for the current codes (zero points stay), then the descent resumes; repeated at most this
  // many times, stopping early when no scale moves. Needs an integer grid, or block
  // multipliers (sub_scale below) on a scale/bias or codebook grid (a codebook's refit is the
  // same quadratic with v_j = s levels[c_j]). 0: codes only.
  int rescale_rounds = 0;
  bool fp16_scales = false;  // refitted scales are rounded to fp16 (formats that store fp16)
  // A fixed grid whose scales are d * sub_scale (GridConstraint::free_multipliers(): ggml
  // block types; biases of scale/bias grids stay): the refit moves each d and the sub-scales
  // within the constraint's range, and the grid need not be an integer grid. Null: every group
  // scale is free. sub_scale: the constraint's sub-scales, refitted in place [d_out, n_groups].
  const GridConstraint* constraint = nullptr;
  int16_t* sub_scale = nullptr;
  // With rescale_rounds > 0 on a per-channel grid: also try zero point -1 and +1 per row (the
  // codes shift along, so only codes clamped at the ends change value), refit and descend
  // again, and keep what lowers the row objective. Off for symmetric grids (zero is fixed).
  bool shift_zero = false;
  int threads = 0;  // 0: OpenMP default
  // G = (Q - W) H [d_out, padded d_in] when the caller has it cheaper than the product
  // (a GPTQ start: gptq_gradient); consumed. Null: computed here.
  std::vector<float>* initial_gradient = nullptr;
};

// One accepted move, as seen by an observer: the block (size 1 for greedy and cyclic moves),
// the codes before and after (some block members may keep their code), and the decrease of
// the damped row objective the solver computed for it.
struct CdMove {
  int64_t row = 0;
  int size = 0;
  int64_t coord[kMaxCdBlock] = {};
  int from[kMaxCdBlock] = {};
  int to[kMaxCdBlock] = {};
  double decrease = 0.0;
};
// Called after every accepted move. With an observer the rows run serially.
using CdObserver = std::function<void(const CdMove&)>;

struct CdStats {
  std::vector<double> convergence;  // damped objective: the start, then after every d_in steps
  double moves_per_row = 0.0;       // accepted moves (mean over rows)
  double start_objective = 0.0;     // damped
  double final_objective = 0.0;     // damped, as tracked by the accepted decreases
};

// Refines codes [d_out, d_in] on `grid` in place (and the grid's scales when
// options.rescale_rounds > 0). W [d_out, d_in] (dead columns already zeroed), H [d_in, d_in]
// the damped, positive-definite Hessian the objective uses.
CdStats refine_codes(const Matrix& w, const Matrix& h, Grid& grid, std::vector<uint8_t>& codes,
                     const CdOptions& options, const CdObserver* observer = nullptr);

// For each coordinate i, the bcd_block - 1 other coordinates most correlated with it
// (largest |H_ij| / sqrt(H_ii H_jj), ties to the lower index): BCD's block around seed i is
// {i} + partners. Returns [d_in, k - 1].
std::vector<int32_t> bcd_partners(const Matrix& h, int k);

}  // namespace cdq
