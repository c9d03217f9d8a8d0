// The hqq start (method_registry.cpp): round to nearest on HQQ's grid (quant/hqq.hpp), fitted
// from W alone. H is not read.
//
// Zero points (SolverOptions::hqq_integer_zero): HQQ's own fractional ones (a scale/bias grid)
// where the result may have them, since that is where HQQ gains over RTN (with its min-max
// scale the best integer zero point is RTN's own, quant/hqq.hpp). Integer ones (floor or ceil,
// whichever errs less) where an integer grid is needed: GPTQ checkpoints (GridSpec::fp16_scales,
// whose scales are then rounded to fp16 too) and a refinement that refits scales (cd
// --cd-init hqq with --cd-rescale > 0), or when asked.
#include "quant/method_stages.hpp"
#include "quant/scale_search.hpp"

namespace cdq {

bool hqq_integer_zero(const SolverOptions& options, bool refined) {
  return options.hqq_integer_zero || options.grid.fp16_scales ||
         (refined && options.cd_rescale_rounds > 0);
}

void start_hqq(const Matrix& w, const Matrix& /*h*/, const SolverOptions& options, SolveResult& res,
               StageState& state) {
  const bool integer = hqq_integer_zero(options, state.refined);
  // A fixed block grid (GGUF) was fitted by HQQ where the type allows (its writer's grid
  // chooser, uses_hqq_block_scales): round to it.
  res.grid = options.fixed_grid() ? *options.fixed_grid() : fit_hqq_grid(w, options.grid, integer);
  res.codes = round_to_grid(res.grid, w);
  state.percdamp = options.percdamp;  // the damping a refinement that follows uses
}

double hqq_bits_per_weight(const SolverOptions& options, int64_t d_in) {
  // The start alone (a refinement with the scale refit makes its zero points integer).
  if (hqq_integer_zero(options, false)) return integer_grid_bits_per_weight(options, d_in);
  // A fractional zero point is stored as a second fp16 per group.
  const int64_t group = options.grid.group_size > 0 ? options.grid.group_size : d_in;
  const int64_t n_groups = (d_in + group - 1) / group;
  return options.grid.bits + 32.0 * static_cast<double>(n_groups) / static_cast<double>(d_in);
}

}  // namespace cdq
