#include "quant/hessian.hpp"

#include <algorithm>
#include <cmath>

#include "linalg/linalg.hpp"

namespace cdq {

namespace {

constexpr int kMaxEscalations = 4;

void add_to_diagonal(Matrix& h, double amount) {
  const float a = static_cast<float>(amount);
  for (int64_t i = 0; i < h.rows; ++i) h(i, i) += a;
}

// U = J L^-1 J with J H J = L L^T; false when H is not positive definite in float32.
bool try_inverse_cholesky_upper(const Matrix& h, Matrix& u) {
  u = h;
  std::reverse(u.data.begin(), u.data.end());  // row-major reversal of the flat array = J H J
  if (!cholesky_inplace(u, /*upper=*/false)) return false;
  if (!triangular_inverse_inplace(u, /*upper=*/false)) return false;
  std::reverse(u.data.begin(), u.data.end());
  if (!all_finite(u.span())) return false;
  for (int64_t i = 0; i < u.rows; ++i)
    if (!(u(i, i) > 0.0f)) return false;
  return true;
}

}  // namespace

int64_t PreparedHessian::dead_count() const {
  return std::count(dead.begin(), dead.end(), uint8_t{1});
}

PreparedHessian prepare_hessian(const Matrix& h, double percdamp) {
  CDQ_CHECK(h.rows == h.cols && h.rows > 0, "H must be square and non-empty, got {}x{}", h.rows,
            h.cols);
  CDQ_CHECK(std::isfinite(percdamp) && percdamp >= 0.0, "percdamp must be >= 0, got {}", percdamp);
  const int64_t n = h.rows;
  PreparedHessian ph;
  ph.h = h;
  ph.dead.assign(static_cast<size_t>(n), 0);
  ph.diag.resize(static_cast<size_t>(n));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (ph.h(i, i) == 0.0f) {
      ph.h(i, i) = 1.0f;
      ph.dead[static_cast<size_t>(i)] = 1;
    }
    ph.diag[static_cast<size_t>(i)] = ph.h(i, i);
    sum += ph.h(i, i);
  }
  ph.mean_diag = sum / static_cast<double>(n);
  ph.percdamp = percdamp;
  ph.damp = percdamp * ph.mean_diag;
  add_to_diagonal(ph.h, ph.damp);
  return ph;
}

void zero_dead_columns(Matrix& w, const PreparedHessian& ph) {
  CDQ_ASSERT(w.cols == ph.n());
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c)
      if (ph.dead[static_cast<size_t>(c)]) w(r, c) = 0.0f;
}

Matrix permute_symmetric(const Matrix& h, const std::vector<int64_t>& perm) {
  CDQ_ASSERT(h.rows == h.cols && static_cast<int64_t>(perm.size()) == h.rows);
  const int64_t n = h.rows;
  Matrix p(n, n);
#pragma omp parallel for schedule(static) if (n * n > (int64_t{1} << 18))
  for (int64_t i = 0; i < n; ++i) {
    const float* src = h.row(perm[static_cast<size_t>(i)]);
    float* dst = p.row(i);
    for (int64_t j = 0; j < n; ++j) dst[j] = src[perm[static_cast<size_t>(j)]];
  }
  return p;
}

Matrix inverse_cholesky_upper(PreparedHessian& ph) {
  Matrix u;
  for (int attempt = 0;; ++attempt) {
    if (try_inverse_cholesky_upper(ph.h, u)) return u;
    const double old = ph.percdamp;
    CDQ_CHECK(attempt < kMaxEscalations,
              "H is not positive definite even with damping percdamp={:g} (mean diag {:g}); "
              "the calibration Hessian is broken (negative eigenvalues?)",
              old, ph.mean_diag);
    const double next = old > 0.0 ? old * 10.0 : 0.01;
    add_to_diagonal(ph.h, (next - old) * ph.mean_diag);
    ph.percdamp = next;
    ph.damp = next * ph.mean_diag;
    ph.notes.push_back(
        fmt::format("H not positive definite at percdamp={:g}; retried with {:g}", old, next));
  }
}

}  // namespace cdq
