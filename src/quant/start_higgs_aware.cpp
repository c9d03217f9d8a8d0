// The higgs-gptq and higgs-cd starts (method_registry.cpp): data-aware HIGGS, what the CDQuant
// paper means by CD inside incoherence processing. The block rotation R = blockdiag(Had_h /
// sqrt(h)) changes the layer problem to W' = W R^T, H' = R H R^T (d_in zero-padded to a
// multiple of h) with the same objective; GPTQ, or GPTQ then greedy CD, picks codes on HIGGS's
// own grid there (the p = 1 Lloyd-Max levels times |w'_block| / sqrt(h)), and q = Q' R is the
// result in the model's basis. Like HIGGS itself it needs the online Hadamard at inference, so
// only float outputs store it; unlike HIGGS it reads H.
#include <fmt/format.h>

#include "quant/higgs.hpp"
#include "quant/method_stages.hpp"

namespace cdq {

void solve_higgs_rotated(const Matrix& w, const Matrix& h, Method inner,
                         const SolverOptions& options, SolveResult& res, StageState& state) {
  const int64_t block = higgs_block_for(options, w.cols);
  const Matrix w_rot = higgs_rotate_weights(w, block);  // [d_out, d_pad]
  const Matrix h_rot = higgs_rotate_hessian(h, block);  // [d_pad, d_pad], singular in the padding
  const GridConstraint grid =
      GridConstraint::kept(higgs_codebook_grid(w_rot, options.grid.bits, block));
  SolverOptions o = options;
  o.constraint = &grid;
  o.act_order = false;      // the rotation already spreads the columns' importance
  o.cd_rescale_rounds = 0;  // the block scales are HIGGS's own (codebook grids: codes only)
  o.cd_init = default_start();
  SolveResult rotated = solve_layer(w_rot, h_rot, inner, o);
  res.q = higgs_unrotate_weights(rotated.q, w.cols, block);
  res.grid = Grid{};
  res.codes.clear();
  res.convergence = std::move(rotated.convergence);
  res.moves_per_row = rotated.moves_per_row;
  res.seconds_refine = rotated.seconds_refine;
  res.notes = std::move(rotated.notes);
  res.notes.push_back(
      fmt::format("{} on the rotated problem (h = {}), {}-bit HIGGS grid: objective {:.4e} there",
                  inner.name(), block, options.grid.bits, rotated.objective));
  state.q_set = true;
  state.percdamp = options.percdamp;
}

}  // namespace cdq
