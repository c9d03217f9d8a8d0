// HQQ, half-quadratic quantization (dropbox/hqq, hqq/core/optimize.py): an asymmetric integer
// grid per group, Wq = clamp(round(W s + z), 0, 2^b - 1), Wr = (Wq - z) / s, whose zero points
// z are optimised for the lp error sum |W - Wr|^p (p = 0.7, robust to outliers) by
// half-quadratic splitting; the scale s stays at its min-max start s = (2^b - 1) / (max - min)
// (the stored scale is 1/s; optimize_scale also refits it, an extension). Per iteration, with e = W
// - Wr:
//     We = sign(e) max(|e| - |e|^(p-1) / beta, 0);  z = mean_group(Wq - (W - We) s);  beta *= kappa
// and the loop stops early when mean|W - Wr| over the whole matrix stops falling (as HQQ, one
// criterion for the whole tensor). The zero points returned are those of the iterate with the
// lowest lp error (HqqSpec::reference_return: HQQ's last update instead).
//
// Two grid forms (cdq::Grid, value = scale q + bias):
//  - fractional zeros (HQQ's own form): scale = 1/s, bias = -z/s, `zero` empty;
//  - integer zeros (formats that store them, e.g. GPTQ v2 checkpoints): after the optimisation
//    z becomes floor(z) or ceil(z) in [0, 2^b - 1], whichever has the lower lp error on the
//    group; `zero` filled, bias = -scale zero. The scale stays 1/s (not refitted).
// Internal header: include as "quant/hqq.hpp".
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <cstdint>
#include <vector>

namespace cdq {

struct HqqSpec {
  int bits = 4;         // 2..8
  int group_size = 64;  // <= 0: one group per row; a ragged last group is allowed
  double p = 0.7;       // lp norm of the error
  double beta = 10.0;   // initial penalty
  double kappa = 1.01;  // beta growth per iteration
  int iters = 20;
  bool early_stop = true;     // stop when mean|W - Wr| stops falling
  bool integer_zero = false;  // integer zero points (see above)
  // cdquant's extension, not in HQQ: also refit the scale each iteration, as the least-squares
  // fit of Wq ~ s (W - We) + z on the group (the same split HQQ fits z on).
  bool optimize_scale = false;
  // Which zero points to return. false: those with the lowest lp error sum |W - Wr|^p seen
  // (the start included; HqqTrace::accepted), so the returned objective is never above any
  // earlier iterate's nor min-max's. true: HQQ's own, the zero points of the last update
  // (computed in the iteration that failed to improve, or after the last one).
  bool reference_return = false;
};

struct HqqTrace {
  // Of the zero points iteration i started from (entry 0: the min-max start):
  std::vector<double> lp_error;        // sum |W - Wr|^p
  std::vector<double> mean_abs_error;  // mean |W - Wr|
  // Iterates (indices into lp_error) that lowered the lp error below every earlier one, in
  // order: their lp errors strictly fall, and the last is the one returned (reference_return
  // false). Half-quadratic splitting lowers the split problem, not the lp error itself, so an
  // iteration can raise it (measured: up to 8e-5 relative); such iterates are not accepted.
  std::vector<int> accepted;
  int iterations = 0;  // updates applied
  bool stopped_early = false;
  double final_lp_error = 0.0;  // of the returned grid and codes
  double final_mean_abs_error = 0.0;
};

struct HqqResult {
  Grid grid;                   // [d_out, n_groups] scales and biases (and zeros if integer)
  std::vector<uint8_t> codes;  // [d_out, d_in] nearest codes on `grid`
  HqqTrace trace;
};

// Whole-matrix HQQ of W [d_out, d_in]. OpenMP over rows; deterministic.
HqqResult hqq_quantize(const Matrix& w, const HqqSpec& spec);

// The same iterations from given inverse scales s (> 0) and zero points z [d_out, n_groups]
// instead of the min-max start (entry 0 of the trace is that start): a caller whose scales
// are fixed elsewhere (ggml's quantized sub-block scales, ggml_hqq.cpp) fits the zero points
// to them.
HqqResult hqq_quantize_from(const Matrix& w, const HqqSpec& spec, std::vector<float> inv_scale,
                            std::vector<float> zero);

// sum |W - dequantize(grid, codes)|^p (double), the criterion HQQ lowers.
double lp_error(const Matrix& w, const Grid& grid, const std::vector<uint8_t>& codes, double p);

}  // namespace cdq
