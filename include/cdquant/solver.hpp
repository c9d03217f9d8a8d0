// The layer solvers: given W [d_out, d_in], H [d_in, d_in] and a grid, choose integer codes
// that minimise L(Q) = tr((Q - W) H (Q - W)^T). Rows are independent; every solver is
// parallel across rows.
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/grid_constraint.hpp>
#include <cdquant/matrix.hpp>
#include <cdquant/method.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace cdq {

struct SolverOptions {
  GridSpec grid;
  double percdamp = 0.01;            // damping: percdamp * mean(diag H) added to the diagonal
  int gptq_block = 128;              // GPTQ lazy-update block
  bool act_order = false;            // GPTQ column order by descending diag(H)
  bool static_groups = false;        // GPTQ: fit all group scales up front on the original W
  Method cd_init = default_start();  // start of cd/bcd/cyclic: a refinable start (start_names())
  double cd_budget = 1.0;            // CD steps per row = cd_budget * d_in (early stop at optimum)
  int bcd_block = 2;                 // coordinates moved jointly per BCD step
  int cyclic_sweeps = 4;             // full passes over the coordinates for cyclic CD
  int cd_warm_sweeps = 0;            // Cd/Bcd: cyclic passes before the greedy steps (cheap start)
  // CD family on integer grids: rounds of "refit every group scale to its optimum for the
  // current codes (zero points kept), then descend again". 0: codes only, on the start's grid.
  int cd_rescale_rounds = 4;
  // hqq: integer zero points (floor or ceil of HQQ's, whichever has the lower lp error) even
  // where fractional ones could be stored. hqq uses integer zero points anyway where they are
  // needed: with fp16_scales (GPTQ checkpoints store integer zeros) and before a refinement that
  // refits scales (cd_rescale_rounds > 0). Elsewhere (float outputs, `cdquant layer`) it keeps
  // HQQ's fractional ones (value = scale q + bias), where its gain over RTN lies: with the scale
  // at min-max, the best integer zero is RTN's own. --scales hqq is always integer.
  bool hqq_integer_zero = false;
  // higgs, higgs-p2: inputs per Hadamard block, a power of two in 64..1024; 0: the default,
  // higgs_default_block(d_in) (min(512, next power of two of d_in), at least 64).
  int higgs_block = 0;
  // What the output format leaves the solver to choose about the grid (grid_constraint.hpp).
  // Null: a free integer grid, fitted from `grid`.
  const GridConstraint* constraint = nullptr;
  int threads = 0;  // 0: OpenMP default

  // The grid the constraint fixes, or null when the solver fits its own from `grid`.
  const Grid* fixed_grid() const { return constraint ? constraint->fixed_grid() : nullptr; }
};

struct SolveResult {
  Method method;
  Grid grid;
  std::vector<uint8_t> codes;  // [d_out, d_in]
  // Refined methods under a GridConstraint with sub-scales: the sub-scales of `grid`
  // (scale = d * sub_scale), refitted within their range; empty otherwise (the given ones stand).
  std::vector<int16_t> sub_scale;  // [d_out, n_groups]
  // [d_out, d_in] the quantized weights: dequantize(grid, codes), or what a float-only method
  // (MethodInfo::float_only_reason) made, which grid and codes do not hold in full.
  Matrix q;
  double objective = 0.0;           // L(Q) with the undamped H
  double reference = 0.0;           // tr(W H W^T), undamped
  double seconds = 0.0;             // whole solve, including the start of refined methods
  double seconds_refine = 0.0;      // refined methods: the refinement alone
  std::vector<double> convergence;  // refined: damped objective after each sweep-equivalent
  double moves_per_row = 0.0;       // refined: accepted moves per row (mean)
  std::vector<std::string> notes;   // e.g. damping escalations

  double relative() const { return reference > 0 ? objective / reference : 0.0; }
};

// Validates a layer problem: shapes agree, H square and symmetric, no NaN/Inf. Throws Error.
void validate_layer_problem(const Matrix& w, const Matrix& h);

// tr((Q - W) H (Q - W)^T): float products (BLAS), summed in double.
double layer_objective(const Matrix& w, const Matrix& q, const Matrix& h);
// tr(W H W^T), the objective of Q = 0 (the denominator of the relative error).
double layer_reference(const Matrix& w, const Matrix& h);

// Solves one layer with one method: its start (MethodInfo::start, or options.cd_init), then its
// refinement if it has one.
SolveResult solve_layer(const Matrix& w, const Matrix& h, Method method,
                        const SolverOptions& options);

}  // namespace cdq
