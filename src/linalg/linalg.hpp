// Thin wrappers over OpenBLAS / LAPACKE. Everything is row-major float32. Results do not
// depend on the thread count: OpenBLAS runs on one thread, and products are split into tiles
// that depend on the shapes alone, run by OpenMP (linalg.cpp).
#pragma once

#include <cdquant/matrix.hpp>

namespace cdq {

// C = alpha * op(A) * op(B) + beta * C on views (row-major).
void gemm(bool trans_a, bool trans_b, float alpha, const MatrixView& a, const MatrixView& b,
          float beta, const MatrixView& c);

// B = B * U^{-T} in place, U [n, n] upper triangular, B [m, n] (a triangular solve: half the
// work of a product with a full matrix).
void solve_right_upper_transposed(const MatrixView& u, const MatrixView& b);

// H += alpha * X^T X for X [n, d] (upper and lower filled). H must be [d, d].
void syrk_accumulate(const float* x, int64_t n, int64_t d, float alpha, Matrix& h);

// In-place Cholesky of a symmetric positive definite matrix: returns false when it is not
// positive definite (the matrix is then unspecified). upper=true gives U with A = U^T U.
bool cholesky_inplace(Matrix& a, bool upper);

// In-place inverse of a triangular matrix (the other triangle is left untouched): returns false
// when it is singular.
bool triangular_inverse_inplace(Matrix& a, bool upper);

// Inverse of an SPD matrix via its Cholesky factor; returns false when not positive definite.
bool spd_inverse_inplace(Matrix& a);

}  // namespace cdq
