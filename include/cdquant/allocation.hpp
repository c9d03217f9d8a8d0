// Size-budget bit allocation (ALGORITHMS.md, "Bit allocation"; HIGGS's linearity theorem): the
// increase of KL (float || quantized) is modelled as sum_l alpha_l * t_l^2, alpha_l the
// model's sensitivity to relative error in linear l and t_l^2 the relative error a candidate
// type leaves there. This header measures both on calibration windows and picks one candidate
// per allocation unit under a byte budget (the knapsack: src/quant/allocation_knapsack.hpp).
// Which candidates exist, their sizes and grids are the output format's business (src/export).
#pragma once

#include <cdquant/grid_constraint.hpp>
#include <cdquant/method.hpp>
#include <cdquant/model.hpp>
#include <cdquant/solver.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace cdq {

// ---- sensitivity ---------------------------------------------------------------------------

struct SensitivityOptions {
  // Relative noise levels t: W + N with |N|_F = t |W|_F exactly (a Gaussian direction rescaled).
  std::vector<double> levels = {0.02, 0.05, 0.1};
  int max_windows = 32;  // calibration windows the KL is measured on (the first ones)
  uint64_t seed = 1;
  std::function<void(const std::string&)> progress;  // one line per linear
};

struct TensorSensitivity {
  int layer = 0;
  Linear linear = Linear::Q;
  double alpha = 0.0;      // KL ~ alpha * t^2, fitted through the origin
  std::vector<double> t;   // the levels
  std::vector<double> kl;  // mean KL(float || perturbed) over the windows' positions, per level
};

// w + N, N Gaussian from seed rescaled so that |N|_F = t |w|_F (relative error exactly t^2).
void add_relative_noise(Matrix& w, double t, uint64_t seed);
// Least-squares slope through the origin: argmin_a sum (y_i - a x_i)^2.
double fit_through_origin(const std::vector<double>& x, const std::vector<double>& y);
// alpha of one tensor: response(w + noise at level t) at each level, fitted against t^2.
TensorSensitivity fit_sensitivity(const Matrix& w, const std::vector<double>& levels, uint64_t seed,
                                  const std::function<double(const Matrix& perturbed)>& response);
// Every linear of the model, one at a time, with the KL of its next-token distributions from
// the float model's on the windows (equal-length token windows) as the response.
std::vector<TensorSensitivity> measure_sensitivity(const Model& model,
                                                   const std::vector<std::vector<int>>& windows,
                                                   const SensitivityOptions& options);

// ---- candidates and their errors -----------------------------------------------------------

// How one candidate of one linear is solved: the solver options (e.g. its bits) and the grid the
// format fixes, if any.
struct CandidateSetup {
  SolverOptions solver;
  std::optional<GridConstraint> constraint;
};
using CandidateSetupFn = std::function<CandidateSetup(
    int layer, Linear linear, const std::string& candidate, const Matrix& w, const Matrix& h)>;

// Linears of one block that take one candidate together (one linear, or the q/k/v or gate/up a
// loader fuses), with the candidates' names and their bytes (all members together).
struct AllocUnit {
  int layer = 0;
  std::vector<Linear> linears;
  std::vector<std::string> candidates;  // "Q4_0", "4 bits", ...
  std::vector<int64_t> bytes;           // [candidates]
  // [member][candidate], filled by measure_candidate_errors: |Q - W|_F^2 / |W|_F^2, and the
  // layer objective L(Q) / tr(W H W^T) with the float model's H.
  std::vector<std::vector<double>> t2_weight, t2_objective;
};

// Solves every candidate of every unit with `method` on the float model's own H (float inputs,
// not the sequential ones: a cheap pass), recording both relative errors.
void measure_candidate_errors(const Model& model, const std::vector<std::vector<int>>& windows,
                              Method method, const CandidateSetupFn& setup,
                              std::vector<AllocUnit>& units,
                              const std::function<void(const std::string&)>& progress = {});

// ---- the plan ------------------------------------------------------------------------------

enum class AllocationError { Weight, Objective };  // which t^2 the linear model uses

struct AllocationEntry {
  int layer = 0;
  std::vector<Linear> linears;
  std::string candidate;
  int64_t bytes = 0;
  double predicted = 0.0;                // sum over members of alpha * t^2 at this candidate
  std::vector<double> member_predicted;  // [linears] each member's alpha * t^2
};

struct AllocationPlan {
  std::vector<AllocationEntry> entries;  // one per unit, in unit order
  int64_t budget = 0;                    // bytes the units could take
  int64_t bytes = 0;                     // bytes they take
  double predicted = 0.0;                // predicted KL increase (sum of the entries')
  bool exact = true;                     // the knapsack's answer is optimal (not coarsened)
  AllocationError error = AllocationError::Weight;
};

// One candidate per unit minimising the predicted KL increase within `budget` bytes. alpha is
// looked up by (layer, linear). Throws Error when the budget is below every unit's cheapest.
AllocationPlan plan_allocation(const std::vector<AllocUnit>& units,
                               const std::vector<TensorSensitivity>& sensitivity, int64_t budget,
                               AllocationError error);

// The plan as a table: tensor, candidate, bytes, predicted delta.
std::string format_allocation_plan(const AllocationPlan& plan);

}  // namespace cdq
