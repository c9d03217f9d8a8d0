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
  // out: the start filled SolveResult::q itself (float-only methods: kept outliers, HIGGS's
  // rotated codes); solve_layer then takes it instead of dequantize(grid, codes).
  bool q_set = false;
};

// Starts: grid and codes of RTN on the options.grid grid, RTN on the OWC grid, GPTQ. Under a
// fixed grid (options.fixed_grid()) every start picks codes on it.
void start_rtn(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
               StageState& state);
void start_owc(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
               StageState& state);
void start_gptq(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
                StageState& state);

// Data-free starts (HessianUse::Never: H is not read). start_hqq.cpp: RTN on HQQ's grid.
// start_easyquant.cpp: EasyQuant, outliers kept in float (fills res.q). start_higgs.cpp: HIGGS
// with p = 1 or p = 2 grids (fills res.q; grid and codes left empty).
void start_hqq(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
               StageState& state);
void start_easyquant(const Matrix& w, const Matrix& h, const SolverOptions& options,
                     SolveResult& res, StageState& state);
void start_higgs(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
                 StageState& state);
void start_higgs_p2(const Matrix& w, const Matrix& h, const SolverOptions& options,
                    SolveResult& res, StageState& state);

// Data-aware HIGGS (start_higgs_aware.cpp): `inner` (GPTQ, or CD from GPTQ) on the
// Hadamard-rotated problem with HIGGS's p = 1 grid; fills res.q in the model's basis.
void solve_higgs_rotated(const Matrix& w, const Matrix& h, Method inner,
                         const SolverOptions& options, SolveResult& res, StageState& state);

// Whether the hqq start uses integer zero points (start_hqq.cpp), `refined`: a refinement follows.
bool hqq_integer_zero(const SolverOptions& options, bool refined);

// Their bits per weight (MethodInfo::bits_per_weight).
double hqq_bits_per_weight(const SolverOptions& options, int64_t d_in);
double easyquant_bits_per_weight(const SolverOptions& options, int64_t d_in);
double higgs_p1_bits_per_weight(const SolverOptions& options, int64_t d_in);
double higgs_p2_bits_per_weight(const SolverOptions& options, int64_t d_in);

// Checks the HIGGS options (--bits 2..4, --higgs-block) and returns the block size to use for
// d_in inputs. Throws Error with the flag's name.
int64_t higgs_block_for(const SolverOptions& options, int64_t d_in);

// The coordinate-descent refinement of a start's codes, `kind` (cd.hpp). Fills grid, codes,
// sub_scale, convergence, moves_per_row and seconds_refine of `res`.
void refine_cd(CdKind kind, const Matrix& w, const Matrix& h, const SolverOptions& options,
               SolveResult& res, StageState& state);

}  // namespace cdq
