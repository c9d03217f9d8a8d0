#include "linalg/linalg.hpp"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>

namespace cdq {

namespace {

// OpenBLAS's own threads make results depend on their number: its threaded sgemm blocks the
// inner dimension differently (measured with 0.3.21: a 1000^3 product differs between 1 and
// 3, 5, 8 or 16 threads, as do spotrf, strtri and spotri from n = 100), so cdquant never lets
// it thread. Every product is cut into tiles of C whose bounds depend only on the shapes, each
// tile one single-threaded call on all of the inner dimension, and OpenMP runs the tiles: each
// element of C is then the same sum whatever the thread count. LAPACK calls run on one thread.
constexpr int64_t kTileRows = 128;
constexpr int64_t kTileCols = 1024;
// Below this many multiply-adds a product runs its tiles on the calling thread: waking the
// team costs more than the product (the embedded models' products are all below it).
constexpr int64_t kParallelWork = int64_t{1} << 21;

void serial_blas() {
  static const bool once = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
}

int64_t tiles(int64_t extent, int64_t tile) {
  return (extent + tile - 1) / tile;
}

}  // namespace

void gemm(bool trans_a, bool trans_b, float alpha, const MatrixView& a, const MatrixView& b,
          float beta, const MatrixView& c) {
  serial_blas();
  const int64_t m = trans_a ? a.cols : a.rows;
  const int64_t k = trans_a ? a.rows : a.cols;
  const int64_t kb = trans_b ? b.cols : b.rows;
  const int64_t n = trans_b ? b.rows : b.cols;
  CDQ_ASSERT(k == kb && c.rows == m && c.cols == n);
  if (m == 0 || n == 0) return;
  const int64_t tm = tiles(m, kTileRows), tn = tiles(n, kTileCols);
#pragma omp parallel for schedule(dynamic, 1) if (tm * tn > 1 && m * n * k >= kParallelWork)
  for (int64_t t = 0; t < tm * tn; ++t) {
    const int64_t i0 = (t / tn) * kTileRows, j0 = (t % tn) * kTileCols;
    const int64_t mi = std::min(kTileRows, m - i0), nj = std::min(kTileCols, n - j0);
    // Row i0 of op(A) and column j0 of op(B), in row-major storage.
    const float* ap = trans_a ? a.ptr + i0 : a.ptr + i0 * a.ld;
    const float* bp = trans_b ? b.ptr + j0 * b.ld : b.ptr + j0;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(mi),
                static_cast<blasint>(nj), static_cast<blasint>(k), alpha, ap,
                static_cast<blasint>(a.ld), bp, static_cast<blasint>(b.ld), beta,
                c.ptr + i0 * c.ld + j0, static_cast<blasint>(c.ld));
  }
}

void solve_right_upper_transposed(const MatrixView& u, const MatrixView& b) {
  CDQ_ASSERT(u.rows == u.cols && b.cols == u.rows);
  if (b.rows == 0 || b.cols == 0) return;
  serial_blas();
  // Rows of B are independent solves.
  const int64_t tm = tiles(b.rows, kTileRows);
#pragma omp parallel for schedule(dynamic, \
                                  1) if (tm > 1 && b.rows * b.cols * b.cols >= kParallelWork)
  for (int64_t t = 0; t < tm; ++t) {
    const int64_t i0 = t * kTileRows, mi = std::min(kTileRows, b.rows - i0);
    cblas_strsm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit,
                static_cast<blasint>(mi), static_cast<blasint>(b.cols), 1.0f, u.ptr,
                static_cast<blasint>(u.ld), b.ptr + i0 * b.ld, static_cast<blasint>(b.ld));
  }
}

void syrk_accumulate(const float* x, int64_t n, int64_t d, float alpha, Matrix& h) {
  CDQ_ASSERT(h.rows == d && h.cols == d);
  if (n == 0) return;
  serial_blas();
  // Panel p holds rows [i0, i1) of the upper triangle: its diagonal block by ssyrk, the rest of
  // its rows, columns [i1, d), by one sgemm.
  const int64_t panels = tiles(d, kTileRows);
#pragma omp parallel for schedule(dynamic, 1) if (panels > 1 && n * d * d / 2 >= kParallelWork)
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t i0 = p * kTileRows, i1 = std::min(d, i0 + kTileRows);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<blasint>(i1 - i0),
                static_cast<blasint>(n), alpha, x + i0, static_cast<blasint>(d), 1.0f,
                h.row(i0) + i0, static_cast<blasint>(d));
    if (i1 < d)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<blasint>(i1 - i0),
                  static_cast<blasint>(d - i1), static_cast<blasint>(n), alpha, x + i0,
                  static_cast<blasint>(d), x + i1, static_cast<blasint>(d), 1.0f, h.row(i0) + i1,
                  static_cast<blasint>(d));
  }
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < i; ++j) h(i, j) = h(j, i);
}

bool cholesky_inplace(Matrix& a, bool upper) {
  CDQ_ASSERT(a.rows == a.cols);
  serial_blas();
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
  serial_blas();
  // Row-major upper is column-major lower: call LAPACK on the same memory without a copy.
  const int n = static_cast<int>(a.rows);
  return LAPACKE_strtri(LAPACK_COL_MAJOR, upper ? 'L' : 'U', 'N', n, a.data.data(), n) == 0;
}

bool spd_inverse_inplace(Matrix& a) {
  serial_blas();
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
