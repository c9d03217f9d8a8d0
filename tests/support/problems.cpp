#include "support/problems.hpp"

#include <cdquant/rng.hpp>
#include <cmath>

#include "linalg/linalg.hpp"

namespace cdq::test {

Matrix random_weights(int64_t d_out, int64_t d_in, uint64_t seed, double std) {
  Rng rng(seed * 31 + 7);
  Matrix w(d_out, d_in);
  for (float& v : w.data) v = static_cast<float>(std * rng.normal());
  return w;
}

Matrix correlated_hessian(int64_t n, uint64_t seed, double rho, int64_t samples) {
  const int64_t s = samples > 0 ? samples : 4 * n;
  Rng rng(seed * 131 + 11);
  std::vector<double> chan(static_cast<size_t>(n));
  for (double& c : chan) c = std::exp(0.5 * rng.normal());
  Matrix x(s, n);
  const double innov = std::sqrt(1.0 - rho * rho);
  for (int64_t i = 0; i < s; ++i) {
    double prev = rng.normal();
    for (int64_t j = 0; j < n; ++j) {
      prev = rho * prev + innov * rng.normal();
      x(i, j) = static_cast<float>(prev * chan[static_cast<size_t>(j)]);
    }
  }
  Matrix h(n, n);
  syrk_accumulate(x.data.data(), s, n, 2.0f / static_cast<float>(s), h);
  return h;
}

Matrix low_rank_hessian(int64_t n, int64_t rank, uint64_t seed) {
  Rng rng(seed * 17 + 5);
  Matrix x(rank, n);
  for (float& v : x.data) v = static_cast<float>(rng.normal());
  Matrix h(n, n);
  syrk_accumulate(x.data.data(), rank, n, 2.0f / static_cast<float>(rank), h);
  return h;
}

void kill_input(Matrix& h, int64_t i) {
  for (int64_t j = 0; j < h.rows; ++j) {
    h(i, j) = 0.0f;
    h(j, i) = 0.0f;
  }
}

Matrix layer_weights(int64_t rows, int64_t cols, uint64_t seed, double dof) {
  Rng rng(seed);
  Matrix w(rows, cols);
  for (float& v : w.data)
    v = static_cast<float>(0.02 * (dof > 0 ? rng.student_t(dof) : rng.normal()));
  return w;
}

double squared_distance(const Matrix& a, const Matrix& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const double d = static_cast<double>(a.data[i]) - b.data[i];
    s += d * d;
  }
  return s;
}

double squared_norm(const Matrix& a) {
  double s = 0.0;
  for (float v : a.data) s += static_cast<double>(v) * v;
  return s;
}

}  // namespace cdq::test
