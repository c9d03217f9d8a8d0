// Checks shared by the coordinate-descent tests: small seeded problems, the damped H, and
// objectives and optimality gaps computed straightforwardly in double precision.
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <cdquant/solver.hpp>
#include <cdquant/synthetic.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace cdq::test {

// A synthetic problem with few factors, so that the moves of different coordinates interact.
LayerProblem small_problem(int64_t d_out, int64_t d_in, uint64_t seed);

// H + percdamp * mean(diag) I (dead inputs fixed), as CD's damped objective.
Matrix damped(const Matrix& h, double percdamp = 0.01);

// (Q_r - w_r)^T H (Q_r - w_r) in double.
double row_objective(const Matrix& w, const Matrix& h, const Grid& grid,
                     const std::vector<uint8_t>& codes, int64_t r);

// Sum of row_objective over all rows.
double objective(const Matrix& w, const Matrix& h, const Grid& grid,
                 const std::vector<uint8_t>& codes);

// Largest decrease any single-coordinate change to any grid value achieves, relative to the
// row objective, over all rows (<= 0 at a coordinate-wise optimum).
double best_single_gain(const Matrix& w, const Matrix& h, const Grid& grid,
                        std::vector<uint8_t> codes);

// A grid layout and GPTQ order for the solver tests, with the problem's d_in.
struct GridConfig {
  int bits;
  int group;
  bool sym;
  bool act_order;
  int64_t d_in;

  SolverOptions options() const;  // bits, group_size, symmetric, act_order set
  std::string name() const;       // "bits=3 group=16 sym=1 ao=0"
};

// Min-max integer grid of W.
Grid minmax_grid(const Matrix& w, int bits, int group = 0, bool sym = false);

}  // namespace cdq::test
