// The layer solvers: given W [d_out, d_in], H [d_in, d_in] and a grid, choose integer codes
// that minimise L(Q) = tr((Q - W) H (Q - W)^T). Rows are independent; every solver is
// parallel across rows.
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace cdq {

enum class Method {
  Rtn,     // round to nearest on the min-max (or spec.search) grid
  Owc,     // RTN on the OWC grid
  Gptq,    // GPTQ, reference semantics
  Cd,      // greedy coordinate descent from cd_init
  Bcd,     // block coordinate descent from cd_init
  Cyclic,  // cyclic coordinate descent from cd_init
  OwcCd,   // CD started from OWC codes
  OwcBcd,  // BCD started from OWC codes
};

Method parse_method(std::string_view name);  // "rtn", "gptq", "cd", "owc-cd", ...
const char* method_name(Method m);
bool is_cd_family(Method m);

struct SolverOptions {
  GridSpec grid;
  double percdamp = 0.01;         // damping: percdamp * mean(diag H) added to the diagonal
  int gptq_block = 128;           // GPTQ lazy-update block
  bool act_order = false;         // GPTQ column order by descending diag(H)
  bool static_groups = false;     // GPTQ: fit all group scales up front on the original W
  Method cd_init = Method::Gptq;  // start of Cd/Bcd/Cyclic: Rtn, Owc or Gptq
  double cd_budget = 1.0;         // CD steps per row = cd_budget * d_in (early stop at optimum)
  int bcd_block = 2;              // coordinates moved jointly per BCD step
  int cyclic_sweeps = 4;          // full passes over the coordinates for cyclic CD
  int cd_warm_sweeps = 0;         // Cd/Bcd: cyclic passes before the greedy steps (cheap start)
  // CD family on integer grids: rounds of "refit every group scale to its optimum for the
  // current codes (zero points kept), then descend again". 0: codes only, on the start's grid.
  int cd_rescale_rounds = 4;
  const Grid* fixed_grid = nullptr;  // when set, every solver picks codes on this grid
  // How the format stores fixed_grid's scales, when the CD family may refit them: the scale of
  // group k of row r is d * fixed_sub_scale[r, k], one free fp16 d per block of
  // fixed_block_groups consecutive groups of the row (ggml: Q4_0's d per 32-weight group with
  // sub-scale 1, Q4_K's per 8 groups with 6-bit sub-scales). Every d is refitted; codes,
  // sub-scales, zero points and biases are kept. Null: fixed_grid is kept as it is.
  const int16_t* fixed_sub_scale = nullptr;  // [d_out, n_groups]
  int fixed_block_groups = 1;
  // With fixed_sub_scale: the range each integer sub-scale may move within (ggml K-quants: the
  // bit field's, see ggml_sub_scale_range); lo == hi: the sub-scales stay.
  int fixed_sub_lo = 1;
  int fixed_sub_hi = 1;
  int threads = 0;  // 0: OpenMP default
};

struct SolveResult {
  Method method = Method::Rtn;
  Grid grid;
  std::vector<uint8_t> codes;  // [d_out, d_in]
  // CD family with options.fixed_sub_scale: the sub-scales of `grid` (scale = d * sub_scale),
  // refitted within their range; empty otherwise (the given ones stand).
  std::vector<int16_t> sub_scale;   // [d_out, n_groups]
  Matrix q;                         // [d_out, d_in] dequantized weights
  double objective = 0.0;           // L(Q) with the undamped H
  double reference = 0.0;           // tr(W H W^T), undamped
  double seconds = 0.0;             // whole solve, including the start for the CD family
  double seconds_refine = 0.0;      // CD family: the refinement alone
  std::vector<double> convergence;  // CD family: damped objective after each sweep-equivalent
  double moves_per_row = 0.0;       // CD family: accepted moves per row (mean)
  std::vector<std::string> notes;   // e.g. damping escalations

  double relative() const { return reference > 0 ? objective / reference : 0.0; }
};

// Validates a layer problem: shapes agree, H square and symmetric, no NaN/Inf. Throws Error.
void validate_layer_problem(const Matrix& w, const Matrix& h);

// tr((Q - W) H (Q - W)^T): float products (BLAS), summed in double.
double layer_objective(const Matrix& w, const Matrix& q, const Matrix& h);
// tr(W H W^T), the objective of Q = 0 (the denominator of the relative error).
double layer_reference(const Matrix& w, const Matrix& h);

// Solves one layer with one method.
SolveResult solve_layer(const Matrix& w, const Matrix& h, Method method,
                        const SolverOptions& options);

}  // namespace cdq
