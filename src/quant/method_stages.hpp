// The stages the method registry (method_registry.cpp) composes: starts (method_starts.cpp)
// and the coordinate-descent refinement (cd.cpp), with what a start hands its refinement.
#pragma once

#include <cdquant/matrix.hpp>
#include <cdquant/solver.hpp>

#include "quant/cd.hpp"
#include "quant/gptq.hpp"

namespace cdq {

struct StageState {
  bool refined = false;  // in: a refinement follows the start
  // out: the damping the start used (GPTQ may have raised it), so that the refinement
  // minimises the very objective the start did.
  double percdamp = 0.0;
  // out: a GPTQ start's factors (u.rows == 0 otherwise), from which the refinement gets its
  // first gradient.
  GptqResult gptq;
};

// Starts: grid and codes of RTN on the options.grid grid, RTN on the OWC grid, GPTQ. Under a
// fixed grid (options.fixed_grid()) every start picks codes on it.
void start_rtn(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
               StageState& state);
void start_owc(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
               StageState& state);
void start_gptq(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
                StageState& state);

// The coordinate-descent refinement of a start's codes, `kind` (cd.hpp). Fills grid, codes,
// sub_scale, convergence, moves_per_row and seconds_refine of `res`.
void refine_cd(CdKind kind, const Matrix& w, const Matrix& h, const SolverOptions& options,
               SolveResult& res, StageState& state);

}  // namespace cdq
