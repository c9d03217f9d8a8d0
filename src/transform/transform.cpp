// The transform stage: the dense orthogonal reference and the registry of named transforms.
#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/transform.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "linalg/linalg.hpp"

namespace cdq {

namespace {

// Largest |R R^T - I| entry: orthogonality to float rounding needs it below ~ n * eps.
double orthogonality_defect(Matrix& r) {
  Matrix rrt(r.rows, r.rows);
  gemm(false, true, 1.0f, view(r), view(r), 0.0f, view(rrt));
  double worst = 0.0;
  for (int64_t i = 0; i < r.rows; ++i)
    for (int64_t j = 0; j < r.rows; ++j)
      worst = std::max(worst, std::abs(static_cast<double>(rrt(i, j)) - (i == j ? 1.0 : 0.0)));
  return worst;
}

constexpr TransformInfo kTransforms[] = {
    {"identity", "no change of basis: the solver sees W and H as they are",
     []() -> TransformFactory {
       return [](int, int, int64_t) { return std::make_unique<IdentityTransform>(); };
     }},
};

}  // namespace

DenseOrthogonalTransform::DenseOrthogonalTransform(Matrix r, std::string name)
    : r_(std::move(r)), name_(std::move(name)) {
  CDQ_CHECK(r_.rows == r_.cols && r_.rows > 0, "transform '{}': R must be square, got {}x{}", name_,
            r_.rows, r_.cols);
  CDQ_CHECK(all_finite(r_.span()), "transform '{}': R contains NaN or Inf", name_);
  const double bound = 8.0 * static_cast<double>(r_.rows) * std::numeric_limits<float>::epsilon();
  const double defect = orthogonality_defect(r_);
  CDQ_CHECK(defect <= bound, "transform '{}': R is not orthogonal (|R R^T - I| = {:.3e} > {:.3e})",
            name_, defect, bound);
}

void DenseOrthogonalTransform::apply(Matrix& w, Matrix& h) const {
  CDQ_ASSERT(w.cols == r_.rows && h.rows == r_.rows && h.cols == r_.rows);
  Matrix& r = const_cast<Matrix&>(r_);  // read only: BLAS views are mutable
  Matrix wr(w.rows, w.cols);
  gemm(false, true, 1.0f, view(w), view(r), 0.0f, view(wr));  // W R^T
  w = std::move(wr);
  Matrix rh(h.rows, h.cols);
  gemm(false, false, 1.0f, view(r), view(h), 0.0f, view(rh));  // R H
  gemm(false, true, 1.0f, view(rh), view(r), 0.0f, view(h));   // (R H) R^T
  // Symmetric to rounding only: restore exact symmetry, which the solvers check.
  for (int64_t i = 0; i < h.rows; ++i)
    for (int64_t j = i + 1; j < h.cols; ++j) h(j, i) = h(i, j);
}

void DenseOrthogonalTransform::undo(Matrix& q) const {
  CDQ_ASSERT(q.cols == r_.rows);
  Matrix& r = const_cast<Matrix&>(r_);
  Matrix qr(q.rows, q.cols);
  gemm(false, false, 1.0f, view(q), view(r), 0.0f, view(qr));  // Q' R
  q = std::move(qr);
}

std::span<const TransformInfo> transform_registry() {
  return kTransforms;
}

TransformFactory make_transform(std::string_view name) {
  std::string known;
  for (const TransformInfo& t : kTransforms) {
    if (name == t.name) return t.make();
    known += known.empty() ? t.name : std::string(", ") + t.name;
  }
  fail("unknown transform '{}' (known: {})", name, known);
}

}  // namespace cdq
