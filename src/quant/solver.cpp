// solve_layer: validation, dispatch through the method's registry row, and the true objective
// (of res.q, whichever stage made it).
#include <cdquant/solver.hpp>
#include <chrono>
#include <cmath>
#include <utility>

#include "linalg/linalg.hpp"
#include "quant/method_stages.hpp"

namespace cdq {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void validate_layer_problem(const Matrix& w, const Matrix& h) {
  CDQ_CHECK(w.rows > 0 && w.cols > 0, "W is empty ({}x{})", w.rows, w.cols);
  CDQ_CHECK(h.rows == h.cols, "H must be square, got {}x{}", h.rows, h.cols);
  CDQ_CHECK(h.rows == w.cols, "shape mismatch: W is [{}, {}] so H must be [{}, {}], got [{}, {}]",
            w.rows, w.cols, w.cols, w.cols, h.rows, h.cols);
  const std::pair<const Matrix*, const char*> inputs[] = {{&w, "W"}, {&h, "H"}};
  for (const auto& [m, name] : inputs) {
    if (all_finite(m->span())) continue;
    int64_t i = 0;
    while (std::isfinite(m->data[static_cast<size_t>(i)])) ++i;
    fail("{} contains NaN or Inf ({}[{}, {}] = {})", name, name, i / m->cols, i % m->cols,
         m->data[static_cast<size_t>(i)]);
  }
  for (int64_t i = 0; i < h.rows; ++i) {
    CDQ_CHECK(h(i, i) >= 0.0f, "H is not positive semi-definite: H[{},{}] = {}", i, i, h(i, i));
    for (int64_t j = i + 1; j < h.cols; ++j) {
      const float a = h(i, j), b = h(j, i);
      const float tol = 1e-5f * (std::abs(a) + std::abs(b)) + 1e-30f;
      CDQ_CHECK(std::abs(a - b) <= tol, "H is not symmetric: H[{},{}] = {} but H[{},{}] = {}", i, j,
                a, j, i, b);
    }
  }
}

namespace {

// sum_r x_r^T H x_r for the rows of x [rows, n], one sgemm per chunk of rows and the final
// products summed in double: measured within 1e-7 relative of a double-precision loop on
// GPTQ solutions (whose errors cancel in the H-norm), at a fraction of its cost.
double quadratic_form_sum(const Matrix& x, const Matrix& h) {
  constexpr int64_t kChunk = 512;
  const int64_t n = x.cols;
  double total = 0.0;
  Matrix xh(std::min(kChunk, x.rows), n);
  const MatrixView hv{const_cast<float*>(h.data.data()), n, n, n};
  for (int64_t r0 = 0; r0 < x.rows; r0 += kChunk) {
    const int64_t rows = std::min(kChunk, x.rows - r0);
    const MatrixView xv{const_cast<float*>(x.row(r0)), rows, n, n};
    const MatrixView out{xh.data.data(), rows, n, n};
    gemm(false, false, 1.0f, xv, hv, 0.0f, out);
    // One partial per row, summed in row order: the total does not depend on the threads.
    std::vector<double> part(static_cast<size_t>(rows), 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int64_t j = 0; j < n; ++j)
        s += static_cast<double>(xv.ptr[r * n + j]) * static_cast<double>(out.ptr[r * n + j]);
      part[static_cast<size_t>(r)] = s;
    }
    for (double s : part) total += s;
  }
  return total;
}

}  // namespace

double layer_objective(const Matrix& w, const Matrix& q, const Matrix& h) {
  CDQ_ASSERT(w.rows == q.rows && w.cols == q.cols && h.rows == w.cols);
  Matrix e(w.rows, w.cols);
  for (int64_t i = 0; i < e.size(); ++i) e.data[static_cast<size_t>(i)] = q.data[i] - w.data[i];
  return quadratic_form_sum(e, h);
}

double layer_reference(const Matrix& w, const Matrix& h) {
  CDQ_ASSERT(h.rows == w.cols);
  return quadratic_form_sum(w, h);
}

SolveResult solve_layer(const Matrix& w, const Matrix& h, Method method,
                        const SolverOptions& options) {
  validate_layer_problem(w, h);
  const auto t0 = std::chrono::steady_clock::now();
  SolveResult res;
  res.method = method;
  const MethodInfo& m = method.info();
  const GridKind kind = options.constraint ? options.constraint->kind : GridKind::Free;
  if (options.constraint && options.constraint->grid.maxq == 0) {
    // A grid with one value per weight (a linear the format keeps in a float type): nothing is
    // left to choose, whatever the method.
    res.grid = options.constraint->grid;
    res.codes.assign(static_cast<size_t>(w.size()), 0);
    res.q = dequantize(res.grid, res.codes);
    res.seconds = seconds_since(t0);
    res.objective = layer_objective(w, res.q, h);
    res.reference = layer_reference(w, h);
    return res;
  }
  CDQ_CHECK(supports(method, kind), "method '{}' cannot solve under this grid constraint", m.name);
  const Method start = start_of(method, options);
  CDQ_CHECK(supports(start, kind), "method '{}' cannot start from '{}' under this grid constraint",
            m.name, start.name());
  StageState state;
  state.refined = m.refinement != nullptr;
  start.info().start(w, h, options, res, state);
  CDQ_ASSERT(!(state.q_set && m.refinement != nullptr));  // start_of refuses such starts
  if (m.refinement != nullptr) m.refinement->run(w, h, options, res, state);
  if (!state.q_set) res.q = dequantize(res.grid, res.codes);
  res.seconds = seconds_since(t0);
  res.objective = layer_objective(w, res.q, h);
  res.reference = layer_reference(w, h);
  return res;
}

}  // namespace cdq
