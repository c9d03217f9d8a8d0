// The starts of the method registry: RTN, OWC and GPTQ (method_stages.hpp).
#include "quant/method_stages.hpp"

namespace cdq {

namespace {

// RTN on the fixed grid, or on the grid `spec` fits.
void round_start(const Matrix& w, const Matrix& h, const GridSpec& spec,
                 const SolverOptions& options, SolveResult& res, StageState& state) {
  res.grid = options.fixed_grid() ? *options.fixed_grid() : fit_grid(w, spec, &h);
  res.codes = round_to_grid(res.grid, w);
  state.percdamp = options.percdamp;
}

// The gradient from GPTQ's factors (gptq_gradient) carries the float rounding of W, about
// 2^bits times smaller than the quantization error e: fine up to 6 bits (~1e-6 of e), too
// coarse for 8-bit grids (~3e-5 measured), which take the full product instead.
bool gradient_from_gptq(const SolverOptions& options) {
  const int maxq = options.fixed_grid() ? options.fixed_grid()->maxq : options.grid.maxq();
  return maxq <= 63;
}

}  // namespace

void start_rtn(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
               StageState& state) {
  round_start(w, h, options.grid, options, res, state);
  // On a format's grid, rounding to nearest is what the format's own quantizer does.
  if (options.constraint != nullptr && !options.constraint->rule_codes.empty()) {
    CDQ_ASSERT(options.constraint->rule_codes.size() == res.codes.size());
    res.codes = options.constraint->rule_codes;
  }
}

void start_owc(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
               StageState& state) {
  GridSpec spec = options.grid;
  spec.search = ScaleSearch::Owc;
  round_start(w, h, spec, options, res, state);
}

void start_gptq(const Matrix& w, const Matrix& h, const SolverOptions& options, SolveResult& res,
                StageState& state) {
  GptqResult& g = state.gptq;
  g = gptq_quantize(w, h, options, state.refined && gradient_from_gptq(options));
  res.grid = std::move(g.grid);
  res.codes = std::move(g.codes);
  res.notes.insert(res.notes.end(), g.notes.begin(), g.notes.end());
  state.percdamp = g.percdamp;
}

}  // namespace cdq
