// Seeded synthetic layer problems with the statistics of real LLM layers: correlated,
// heavy-tailed activations with a few outlier channels, and weights with rare outliers.
// The defaults were matched to the Hessians of the real checkpoints in ../shared/models
// (stories260K, babyllama): a power-law correlation spectrum (top eigenvalues of the
// 128-dim correlation matrix ~21, 14, 9, ... against ~20-37, 8-13, 6-7 measured) and a
// per-channel variance spread of p10/p90 ~0.6/1.7 x the median (measured 0.6-0.75/1.4-1.8).
#pragma once

#include <cdquant/matrix.hpp>
#include <cstdint>

namespace cdq {

struct SyntheticOptions {
  uint64_t seed = 1;
  int64_t n_samples = 0;           // calibration tokens; 0: min(2 * d_in, 4096)
  int factors = 0;                 // shared (correlated) components; 0: min(d_in, 1024)
  double decay = 1.0;              // component k has variance ~ (k + 1)^-decay (a power-law
                                   // spectrum, as real activation Hessians have)
  double noise = 0.15;             // std of the independent per-channel part
  double channel_spread = 0.2;     // std of the log of the per-channel activation scales
  double outlier_channels = 0.01;  // fraction of input channels with larger activations
  double outlier_scale = 3.0;      // their extra scale factor
  double weight_outliers = 0.001;  // fraction of weights drawn ~8x wider
};

struct LayerProblem {
  Matrix w;  // [d_out, d_in]
  Matrix h;  // [d_in, d_in] = (2/n) X^T X
};

// Calibration inputs X [n, d_in]: x = (t S V + noise * z) * D with t and z Student-t(4),
// V [factors, d_in] Gaussian / sqrt(d_in), S the power-law component strengths, D log-normal
// per-channel scales with rare outlier channels.
Matrix synthetic_inputs(int64_t d_in, const SyntheticOptions& opt);

// Weights W [d_out, d_in]: Gaussian with std 1/sqrt(d_in) and rare outliers.
Matrix synthetic_weights(int64_t d_out, int64_t d_in, const SyntheticOptions& opt);

// H = (2/n) X^T X.
Matrix hessian_from_inputs(const Matrix& x);

LayerProblem make_synthetic_problem(int64_t d_out, int64_t d_in, const SyntheticOptions& opt);

}  // namespace cdq
