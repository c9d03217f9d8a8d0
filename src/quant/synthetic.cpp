#include <algorithm>
#include <cdquant/rng.hpp>
#include <cdquant/synthetic.hpp>
#include <cmath>

#include "linalg/linalg.hpp"

namespace cdq {

Matrix synthetic_inputs(int64_t d_in, const SyntheticOptions& opt) {
  const int64_t n = opt.n_samples > 0 ? opt.n_samples : std::min<int64_t>(2 * d_in, 4096);
  Rng rng(opt.seed * 1000003ULL + 17);
  std::vector<float> chan_scale(static_cast<size_t>(d_in));
  for (auto& s : chan_scale) {
    s = static_cast<float>(std::exp(opt.channel_spread * rng.normal()));
    if (rng.uniform() < opt.outlier_channels) s *= static_cast<float>(opt.outlier_scale);
  }
  const int64_t factors = opt.factors > 0 ? opt.factors : std::min<int64_t>(d_in, 1024);
  Matrix v(factors, d_in);
  for (float& x : v.data) x = static_cast<float>(rng.normal());
  Matrix t(n, factors);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < factors; ++k)
      t(i, k) = static_cast<float>(rng.student_t(4) * std::pow(k + 1.0, -opt.decay / 2));
  Matrix x(n, d_in);
  for (float& e : x.data) e = static_cast<float>(opt.noise * rng.student_t(4));
  gemm(false, false, 1.0f, view(t), view(v), 1.0f, view(x));  // x = t V + z
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d_in; ++c) x(i, c) *= chan_scale[static_cast<size_t>(c)];
  return x;
}

Matrix synthetic_weights(int64_t d_out, int64_t d_in, const SyntheticOptions& opt) {
  Rng rng(opt.seed * 7919ULL + 3);
  Matrix w(d_out, d_in);
  const double std = 1.0 / std::sqrt(static_cast<double>(d_in));
  for (float& e : w.data) {
    const double wide = rng.uniform() < opt.weight_outliers ? 8.0 : 1.0;
    e = static_cast<float>(rng.normal() * std * wide);
  }
  return w;
}

Matrix hessian_from_inputs(const Matrix& x) {
  Matrix h(x.cols, x.cols);
  if (x.rows == 0) return h;
  syrk_accumulate(x.data.data(), x.rows, x.cols, 2.0f / static_cast<float>(x.rows), h);
  return h;
}

LayerProblem make_synthetic_problem(int64_t d_out, int64_t d_in, const SyntheticOptions& opt) {
  CDQ_CHECK(d_out > 0 && d_in > 0, "synthetic shape must be positive, got {}x{}", d_out, d_in);
  return {synthetic_weights(d_out, d_in, opt), hessian_from_inputs(synthetic_inputs(d_in, opt))};
}

}  // namespace cdq
