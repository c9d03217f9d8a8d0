// EasyQuant: outlier split per row, then a scalar gradient descent on the step of one
// symmetric grid per row. Rows are independent (OpenMP); each row's scratch is reused.
#include "quant/easyquant.hpp"

#include <algorithm>
#include <cdquant/error.hpp>
#include <cmath>

namespace cdq {

namespace {

// Columns of row w [n] that stay in float: beyond n_sigma from the mean, at most cap of them
// (the farthest, ties to the lower column), returned in ascending column order.
std::vector<int32_t> find_outliers(const float* w, int64_t n, double n_sigma, int64_t cap) {
  double mean = 0.0, var = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += w[i];
  mean /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) var += (w[i] - mean) * (w[i] - mean);
  const double limit = n_sigma * std::sqrt(var / static_cast<double>(n));
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i)
    if (std::abs(w[i] - mean) > limit) out.push_back(static_cast<int32_t>(i));
  if (static_cast<int64_t>(out.size()) > cap) {
    std::stable_sort(out.begin(), out.end(), [&](int32_t a, int32_t b) {
      return std::abs(w[a] - mean) > std::abs(w[b] - mean);
    });
    out.resize(static_cast<size_t>(cap));
    std::sort(out.begin(), out.end());
  }
  return out;
}

struct LossGrad {
  double loss = 0.0, grad = 0.0;  // |Q_s(x) - x|^2 and its straight-through d/ds
};

LossGrad loss_and_grad(const std::vector<float>& x, float s, float qmax) {
  LossGrad lg;
  for (float v : x) {
    const float t = v / s;
    const float r = std::nearbyint(t);
    const bool clipped = std::abs(r) > qmax;
    const float q = clipped ? std::copysign(qmax, r) : r;
    const double e = static_cast<double>(s) * q - v;
    lg.loss += e * e;
    lg.grad += 2.0 * e * (clipped ? q : r - t);
  }
  return lg;
}

// Gradient descent on log s (steps scaled by the loss, so the rate needs no units); the step
// with the lowest loss seen is returned with its loss in best_loss, the start's in start_loss.
float optimise_step(const std::vector<float>& x, float qmax, const EasyQuantSpec& spec,
                    double& start_loss, double& best_loss) {
  float amax = 0.0f;
  for (float v : x) amax = std::max(amax, std::abs(v));
  float s = amax > 0.0f ? amax / qmax : 1.0f;  // min-max start (all-zero rows: any step)
  float best = s;
  best_loss = start_loss = loss_and_grad(x, s, qmax).loss;
  for (int it = 0; it < spec.steps && best_loss > 0.0; ++it) {
    const LossGrad lg = loss_and_grad(x, s, qmax);
    if (lg.loss < best_loss) {
      best_loss = lg.loss;
      best = s;
    }
    if (lg.loss == 0.0) break;
    s *= static_cast<float>(std::exp(-spec.lr * s * lg.grad / lg.loss));
  }
  const double last = loss_and_grad(x, s, qmax).loss;
  if (last < best_loss) {
    best_loss = last;
    best = s;
  }
  return best;
}

}  // namespace

EasyQuantResult easyquant_quantize(const Matrix& w, const EasyQuantSpec& spec) {
  CDQ_CHECK(spec.bits >= 2 && spec.bits <= 8, "EasyQuant bits must be 2..8, got {}", spec.bits);
  CDQ_CHECK(spec.n_sigma > 0.0 && spec.max_outlier_fraction >= 0.0 && spec.steps >= 0,
            "EasyQuant needs n_sigma > 0, max_outlier_fraction >= 0 and steps >= 0");
  CDQ_CHECK(all_finite(w.span()), "EasyQuant: weights contain NaN or Inf");
  EasyQuantResult res;
  res.grid = make_grid_layout(w.rows, w.cols, 0, (1 << spec.bits) - 1);
  const int32_t zero = 1 << (spec.bits - 1);
  const auto qmax = static_cast<float>(zero - 1);
  res.grid.scale.resize(static_cast<size_t>(w.rows));
  res.grid.bias.resize(static_cast<size_t>(w.rows));
  res.grid.zero.assign(static_cast<size_t>(w.rows), zero);
  res.codes.assign(static_cast<size_t>(w.size()), static_cast<uint8_t>(zero));
  res.start_mse.resize(static_cast<size_t>(w.rows));
  res.final_mse.resize(static_cast<size_t>(w.rows));
  const auto cap = static_cast<int64_t>(spec.max_outlier_fraction * static_cast<double>(w.cols));
  std::vector<std::vector<int32_t>> outlier_cols(static_cast<size_t>(w.rows));
#pragma omp parallel
  {
    std::vector<float> inliers;  // reused across rows
    inliers.reserve(static_cast<size_t>(w.cols));
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = 0; r < w.rows; ++r) {
      const float* row = w.row(r);
      std::vector<int32_t>& out = outlier_cols[static_cast<size_t>(r)];
      out = find_outliers(row, w.cols, spec.n_sigma, cap);
      inliers.clear();
      for (int64_t c = 0, k = 0; c < w.cols; ++c) {
        if (k < static_cast<int64_t>(out.size()) && out[static_cast<size_t>(k)] == c) {
          ++k;
          continue;
        }
        inliers.push_back(row[c]);
      }
      const float s = optimise_step(inliers, qmax, spec, res.start_mse[static_cast<size_t>(r)],
                                    res.final_mse[static_cast<size_t>(r)]);
      res.grid.scale[static_cast<size_t>(r)] = s;
      res.grid.bias[static_cast<size_t>(r)] = -s * static_cast<float>(zero);
      for (int64_t c = 0, k = 0; c < w.cols; ++c) {
        if (k < static_cast<int64_t>(out.size()) && out[static_cast<size_t>(k)] == c) {
          ++k;
          continue;  // keeps the zero code
        }
        const float q = std::clamp(std::nearbyint(row[c] / s), -qmax, qmax);
        res.codes[static_cast<size_t>(r * w.cols + c)] = static_cast<uint8_t>(q + zero);
      }
    }
  }
  Outliers& o = res.outliers;
  o.row_start.assign(1, 0);
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int32_t c : outlier_cols[static_cast<size_t>(r)]) {
      o.col.push_back(c);
      o.value.push_back(w(r, c));
    }
    o.row_start.push_back(static_cast<int64_t>(o.col.size()));
  }
  return res;
}

Matrix easyquant_dequantize(const EasyQuantResult& q) {
  Matrix out = dequantize(q.grid, q.codes);  // [d_out, d_in]
  for (int64_t r = 0; r < out.rows; ++r)
    for (int64_t k = q.outliers.row_start[static_cast<size_t>(r)];
         k < q.outliers.row_start[static_cast<size_t>(r + 1)]; ++k)
      out(r, q.outliers.col[static_cast<size_t>(k)]) = q.outliers.value[static_cast<size_t>(k)];
  return out;
}

}  // namespace cdq
