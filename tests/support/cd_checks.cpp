#include "support/cd_checks.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "quant/hessian.hpp"

namespace cdq::test {

LayerProblem small_problem(int64_t d_out, int64_t d_in, uint64_t seed) {
  SyntheticOptions so;
  so.seed = seed;
  so.factors = 3;
  so.n_samples = 3 * d_in;  // correlated enough that moves interact
  return make_synthetic_problem(d_out, d_in, so);
}

Matrix damped(const Matrix& h, double percdamp) {
  return prepare_hessian(h, percdamp).h;
}

double row_objective(const Matrix& w, const Matrix& h, const Grid& grid,
                     const std::vector<uint8_t>& codes, int64_t r) {
  const int64_t n = w.cols;
  std::vector<double> e(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j)
    e[j] = static_cast<double>(grid.value(r, j, codes[r * n + j])) - w(r, j);
  double f = 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) f += e[i] * h(i, j) * e[j];
  return f;
}

double objective(const Matrix& w, const Matrix& h, const Grid& grid,
                 const std::vector<uint8_t>& codes) {
  double f = 0.0;
  for (int64_t r = 0; r < w.rows; ++r) f += row_objective(w, h, grid, codes, r);
  return f;
}

double best_single_gain(const Matrix& w, const Matrix& h, const Grid& grid,
                        std::vector<uint8_t> codes) {
  double worst = -1.0;
  for (int64_t r = 0; r < w.rows; ++r) {
    const double f0 = row_objective(w, h, grid, codes, r);
    for (int64_t j = 0; j < w.cols; ++j) {
      const uint8_t keep = codes[r * w.cols + j];
      for (int q = 0; q <= grid.maxq; ++q) {
        codes[r * w.cols + j] = static_cast<uint8_t>(q);
        worst = std::max(worst, (f0 - row_objective(w, h, grid, codes, r)) / f0);
      }
      codes[r * w.cols + j] = keep;
    }
  }
  return worst;
}

Grid minmax_grid(const Matrix& w, int bits, int group, bool sym) {
  GridSpec spec;
  spec.bits = bits;
  spec.group_size = group;
  spec.symmetric = sym;
  return fit_grid(w, spec, nullptr);
}

SolverOptions GridConfig::options() const {
  SolverOptions opt;
  opt.grid.bits = bits;
  opt.grid.group_size = group;
  opt.grid.symmetric = sym;
  opt.act_order = act_order;
  return opt;
}

std::string GridConfig::name() const {
  return fmt::format("bits={} group={} sym={} ao={}", bits, group, sym, act_order);
}

}  // namespace cdq::test
