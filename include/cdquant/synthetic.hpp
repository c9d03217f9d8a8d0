// Seeded synthetic layer problems with the statistics of real LLM layers: correlated,
// heavy-tailed activations with a few outlier channels, and weights with rare outliers.
#pragma once

#include <cdquant/matrix.hpp>

#include <cstdint>

namespace cdq {

struct SyntheticOptions {
  uint64_t seed = 1;
  int64_t n_samples = 0;       // calibration tokens; 0: min(2 * d_in, 4096)
  int factors = 16;            // rank of the shared (correlated) activation component
  double outlier_channels = 0.01;  // fraction of input channels with ~20x larger activations
  double weight_outliers = 0.001;  // fraction of weights drawn ~8x wider
};

struct LayerProblem {
  Matrix w;  // [d_out, d_in]
  Matrix h;  // [d_in, d_in] = (2/n) X^T X
};

// Calibration inputs X [n, d_in]: x = (t V + z) * D, t and z Student-t(4), V [factors, d_in]
// Gaussian, D log-normal per-channel scales with rare outlier channels.
Matrix synthetic_inputs(int64_t d_in, const SyntheticOptions& opt);

// Weights W [d_out, d_in]: Gaussian with std 1/sqrt(d_in) and rare outliers.
Matrix synthetic_weights(int64_t d_out, int64_t d_in, const SyntheticOptions& opt);

// H = (2/n) X^T X.
Matrix hessian_from_inputs(const Matrix& x);

LayerProblem make_synthetic_problem(int64_t d_out, int64_t d_in, const SyntheticOptions& opt);

}  // namespace cdq
