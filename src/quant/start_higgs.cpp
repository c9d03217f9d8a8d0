// The higgs and higgs-p2 starts (method_registry.cpp): HIGGS (quant/higgs.hpp) on W alone, H
// not read. Its codes index a Gaussian grid in the Hadamard-rotated basis, one fp16 scale per
// block of h inputs: no affine grid of the model's basis describes them, so SolveResult's grid
// and codes stay empty (a note says what HIGGS stored) and q = higgs_dequantize, in the model's
// basis, is the result. Only float outputs can store it (MethodInfo::float_only_reason).
#include <fmt/format.h>

#include "quant/higgs.hpp"
#include "quant/method_stages.hpp"

namespace cdq {

namespace {

void run_higgs(int dim, const Matrix& w, const SolverOptions& options, SolveResult& res,
               StageState& state) {
  HiggsSpec spec;
  spec.bits = options.grid.bits;
  spec.dim = dim;
  spec.h = higgs_block_for(options, w.cols);
  const HiggsCodes codes = higgs_quantize(w, spec);
  res.q = higgs_dequantize(codes);
  res.grid = Grid{};
  res.codes.clear();
  res.notes.push_back(
      fmt::format("p = {} grid, {} bits, h = {}: {:.3f} bits per weight stored "
                  "(codes in the rotated basis, not on an affine grid)",
                  dim, spec.bits, spec.h, higgs_stored_bits_per_weight(codes)));
  state.q_set = true;
  state.percdamp = options.percdamp;
}

}  // namespace

int64_t higgs_block_for(const SolverOptions& options, int64_t d_in) {
  const int bits = options.grid.bits;
  CDQ_CHECK(bits >= 2 && bits <= 4,
            "higgs needs --bits 2, 3 or 4 (its Gaussian grids exist for those), got {}", bits);
  const int h = options.higgs_block;
  if (h == 0) return higgs_default_block(d_in);
  CDQ_CHECK(h >= 64 && h <= 1024 && (h & (h - 1)) == 0,
            "--higgs-block must be a power of two in 64..1024 (or 0 for the default), got {}", h);
  return h;
}

void start_higgs(const Matrix& w, const Matrix& /*h*/, const SolverOptions& options,
                 SolveResult& res, StageState& state) {
  run_higgs(1, w, options, res, state);
}

void start_higgs_p2(const Matrix& w, const Matrix& /*h*/, const SolverOptions& options,
                    SolveResult& res, StageState& state) {
  run_higgs(2, w, options, res, state);
}

double higgs_p1_bits_per_weight(const SolverOptions& options, int64_t d_in) {
  return higgs_bits_per_weight(options.grid.bits, higgs_block_for(options, d_in));
}

double higgs_p2_bits_per_weight(const SolverOptions& options, int64_t d_in) {
  return higgs_p1_bits_per_weight(options, d_in);  // b per weight either way, fp16 per block
}

}  // namespace cdq
