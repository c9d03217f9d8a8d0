// EasyQuant (arXiv 2403.02775), data-free: per output channel the weights far from the row's
// mean, |w - mean| > n sigma, stay in float (outliers); the rest are quantized on a symmetric
// per-channel grid Q_s(w) = s clamp(round(w / s), -q_max, q_max), q_max = 2^(b-1) - 1, whose
// step s is optimised by gradient descent on |Q_s(w) - w|^2 with the straight-through gradient
//     dQ/ds = round(w/s) - w/s inside the range,  +-q_max where clipped,
// starting at min-max (s = max|w| / q_max over the inliers). The best step seen is kept, so the
// result never has a higher MSE than the start.
//
// The grid is a cdq::Grid with integer zero 2^(b-1) (value = s (q - 2^(b-1))), per channel;
// codes use 1 .. 2^b - 1 (the symmetric range), and outlier positions hold the zero code.
// Internal header: include as "quant/easyquant.hpp".
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <cstdint>
#include <vector>

namespace cdq {

struct EasyQuantSpec {
  int bits = 4;                        // 2..8
  double n_sigma = 3.0;                // outlier threshold in standard deviations of the row
  double max_outlier_fraction = 0.01;  // per row at most floor(fraction * d_in), the largest
  int steps = 100;                     // gradient steps on the step size
  double lr = 0.02;  // relative: log s moves by -lr (s dL/ds) / L per step (scale-free)
};

// Outliers row by row (CSR): row r's are entries row_start[r] .. row_start[r + 1] - 1,
// columns ascending.
struct Outliers {
  std::vector<int64_t> row_start;  // [d_out + 1]
  std::vector<int32_t> col;        // [n_outliers]
  std::vector<float> value;        // [n_outliers] the original weights
};

struct EasyQuantResult {
  Grid grid;                   // per channel, symmetric: scale [d_out], zero 2^(b-1)
  std::vector<uint8_t> codes;  // [d_out, d_in]; the zero code at outliers
  Outliers outliers;
  std::vector<double> start_mse;  // [d_out] inlier |Q_s(w) - w|^2 at the min-max step
  std::vector<double> final_mse;  // [d_out] the same at the returned step
};

// Whole-matrix EasyQuant of W [d_out, d_in]. OpenMP over rows; deterministic.
EasyQuantResult easyquant_quantize(const Matrix& w, const EasyQuantSpec& spec);

// W_hat [d_out, d_in]: the grid values, with the outliers put back exactly.
Matrix easyquant_dequantize(const EasyQuantResult& q);

}  // namespace cdq
