#include "linalg/linalg.hpp"

#include <cblas.h>
#include <lapacke.h>

namespace cdq {

int blas_threads() {
  return openblas_get_num_threads();
}
void set_blas_threads(int n) {
  openblas_set_num_threads(n);
}

void gemm(bool trans_a, bool trans_b, float alpha, const MatrixView& a, const MatrixView& b,
          float beta, const MatrixView& c) {
  const int64_t m = trans_a ? a.cols : a.rows;
  const int64_t k = trans_a ? a.rows : a.cols;
  const int64_t kb = trans_b ? b.cols : b.rows;
  const int64_t n = trans_b ? b.rows : b.cols;
  CDQ_ASSERT(k == kb && c.rows == m && c.cols == n);
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), alpha, a.ptr, static_cast<blasint>(a.ld), b.ptr,
              static_cast<blasint>(b.ld), beta, c.ptr, static_cast<blasint>(c.ld));
}

void solve_right_upper_transposed(const MatrixView& u, const MatrixView& b) {
  CDQ_ASSERT(u.rows == u.cols && b.cols == u.rows);
  if (b.rows == 0 || b.cols == 0) return;
  cblas_strsm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit,
              static_cast<blasint>(b.rows), static_cast<blasint>(b.cols), 1.0f, u.ptr,
              static_cast<blasint>(u.ld), b.ptr, static_cast<blasint>(b.ld));
}

void syrk_accumulate(const float* x, int64_t n, int64_t d, float alpha, Matrix& h) {
  CDQ_ASSERT(h.rows == d && h.cols == d);
  if (n == 0) return;
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<blasint>(d),
              static_cast<blasint>(n), alpha, x, static_cast<blasint>(d), 1.0f, h.data.data(),
              static_cast<blasint>(d));
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < i; ++j) h(i, j) = h(j, i);
}

bool cholesky_inplace(Matrix& a, bool upper) {
  CDQ_ASSERT(a.rows == a.cols);
  const int64_t n = a.rows;
  const int info = LAPACKE_spotrf(LAPACK_ROW_MAJOR, upper ? 'U' : 'L', static_cast<int>(n),
                                  a.data.data(), static_cast<int>(n));
  if (info != 0) return false;
  for (int64_t i = 0; i < n; ++i)  // zero the other triangle
    for (int64_t j = 0; j < n; ++j)
      if (upper ? j < i : j > i) a(i, j) = 0.0f;
  return true;
}

bool triangular_inverse_inplace(Matrix& a, bool upper) {
  CDQ_ASSERT(a.rows == a.cols);
  // Row-major upper is column-major lower: call LAPACK on the same memory without a copy.
  const int n = static_cast<int>(a.rows);
  return LAPACKE_strtri(LAPACK_COL_MAJOR, upper ? 'L' : 'U', 'N', n, a.data.data(), n) == 0;
}

bool spd_inverse_inplace(Matrix& a) {
  const int64_t n = a.rows;
  int info = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', static_cast<int>(n), a.data.data(),
                            static_cast<int>(n));
  if (info != 0) return false;
  info = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'L', static_cast<int>(n), a.data.data(),
                        static_cast<int>(n));
  if (info != 0) return false;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) a(i, j) = a(j, i);
  return true;
}

}  // namespace cdq
