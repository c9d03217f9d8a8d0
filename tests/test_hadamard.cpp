// Fast Walsh-Hadamard transform against the dense Sylvester matrix, and the block rotation
// R = blockdiag(Had_h / sqrt(h)) against its dense product. Float tolerances follow the error
// of a sum of h terms (or log2(h) butterfly stages), never exact equality between code paths.
#include <gtest/gtest.h>

#include <cdquant/error.hpp>
#include <cdquant/rng.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "support/problems.hpp"
#include "transform/hadamard.hpp"

namespace cdq {
namespace {

constexpr double kEps = std::numeric_limits<float>::epsilon();

std::vector<float> gaussian_vector(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = static_cast<float>(rng.normal());
  return x;
}

double norm2(const std::vector<float>& x) {
  double s = 0.0;
  for (float v : x) s += static_cast<double>(v) * v;
  return std::sqrt(s);
}

// y = Had_h x in double from the dense matrix.
std::vector<double> dense_hadamard(const std::vector<float>& x) {
  const auto h = static_cast<int64_t>(x.size());
  const Matrix m = hadamard_matrix(h);
  std::vector<double> y(x.size(), 0.0);
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < h; ++j)
      y[static_cast<size_t>(i)] += m(i, j) * x[static_cast<size_t>(j)];
  return y;
}

TEST(Hadamard, DenseMatrixIsOrthogonalUpToHExactly) {
  for (int64_t h : {1, 2, 4, 8, 32, 128, 256}) {
    const Matrix m = hadamard_matrix(h);
    for (float v : m.data) ASSERT_TRUE(v == 1.0f || v == -1.0f);
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < h; ++j) {
        float dot = 0.0f;  // sums of +-1 below 2^24: exact in float
        for (int64_t k = 0; k < h; ++k) dot += m(i, k) * m(j, k);
        ASSERT_EQ(dot, i == j ? static_cast<float>(h) : 0.0f) << "h=" << h << " " << i << "," << j;
      }
  }
}

TEST(Hadamard, FastMatchesDenseProduct) {
  for (int64_t h : {1, 2, 4, 8, 16, 64, 512, 2048}) {
    std::vector<float> x = gaussian_vector(h, 100 + static_cast<uint64_t>(h));
    const std::vector<double> ref = dense_hadamard(x);
    const double tol = static_cast<double>(h) * kEps * norm2(x);
    fwht(x);
    for (int64_t i = 0; i < h; ++i)
      ASSERT_NEAR(x[static_cast<size_t>(i)], ref[static_cast<size_t>(i)], tol) << "h=" << h;
  }
}

TEST(Hadamard, FirstRowSumsAndBasisVectorsGiveColumns) {
  // Had e_j is column j of the Sylvester matrix: checks the ordering, not only the spectrum.
  const int64_t h = 64;
  const Matrix m = hadamard_matrix(h);
  for (int64_t j : {0, 1, 5, 63}) {
    std::vector<float> e(static_cast<size_t>(h), 0.0f);
    e[static_cast<size_t>(j)] = 1.0f;
    fwht(e);
    for (int64_t i = 0; i < h; ++i) ASSERT_EQ(e[static_cast<size_t>(i)], m(i, j));
  }
}

TEST(Hadamard, TwiceGivesHTimesX) {
  for (int64_t h : {2, 8, 256, 4096, 16384}) {
    std::vector<float> x = gaussian_vector(h, 7 + static_cast<uint64_t>(h));
    const std::vector<float> x0 = x;
    fwht(x);
    fwht(x);
    // Normwise, each of the 2 log2(h) stages adds at most ~eps of the running norm (which is
    // sqrt(2) larger per stage): |y - h x| <= 2 log2(h) eps h |x|, with slack 2.
    double err = 0.0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double d = x[i] - static_cast<double>(h) * x0[i];
      err += d * d;
    }
    const double tol = 4.0 * std::log2(static_cast<double>(h)) * kEps * h * norm2(x0);
    EXPECT_LE(std::sqrt(err), tol) << "h=" << h;
  }
}

TEST(Hadamard, NormalisedTransformPreservesNorm) {
  for (int64_t h : {4, 512, 16384}) {
    Matrix m(1, h);
    const std::vector<float> x = gaussian_vector(h, 3);
    std::copy(x.begin(), x.end(), m.data.begin());
    rotate_rows(m, h);
    const double n0 = norm2(x), n1 = norm2(m.data);
    EXPECT_NEAR(n1, n0, 2.0 * std::log2(static_cast<double>(h)) * kEps * n0) << "h=" << h;
    EXPECT_GT(std::abs(m(0, 0) - x[0]), 1e-3);  // it did change the vector
  }
}

// Dense R = blockdiag(Had_h / sqrt(h)) [n, n], in double.
std::vector<double> dense_block_rotation(int64_t n, int64_t h) {
  const Matrix had = hadamard_matrix(h);
  std::vector<double> r(static_cast<size_t>(n * n), 0.0);
  const double norm = 1.0 / std::sqrt(static_cast<double>(h));
  for (int64_t b = 0; b < n; b += h)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < h; ++j)
        r[static_cast<size_t>((b + i) * n + b + j)] = had(i, j) * norm;
  return r;
}

TEST(Hadamard, BlocksOfEveryRowMatchDenseBlockDiagonalProduct) {
  const int64_t h = 32, d_out = 5, d_in = 4 * h;
  Matrix w = test::random_weights(d_out, d_in, 11);
  const Matrix w0 = w;
  const std::vector<double> r = dense_block_rotation(d_in, h);
  Matrix unnorm = w;
  fwht_blocks(unnorm, h);
  rotate_rows(w, h);  // W R^T
  for (int64_t i = 0; i < d_out; ++i) {
    double row_norm = 0.0;
    for (int64_t k = 0; k < d_in; ++k) row_norm += static_cast<double>(w0(i, k)) * w0(i, k);
    const double tol = static_cast<double>(h) * kEps * std::sqrt(row_norm);
    for (int64_t j = 0; j < d_in; ++j) {
      double ref = 0.0;  // (W R^T)[i, j] = sum_k W[i, k] R[j, k]
      for (int64_t k = 0; k < d_in; ++k) ref += w0(i, k) * r[static_cast<size_t>(j * d_in + k)];
      ASSERT_NEAR(w(i, j), ref, tol);
      ASSERT_NEAR(unnorm(i, j), ref * std::sqrt(static_cast<double>(h)),
                  tol * std::sqrt(static_cast<double>(h)));
    }
  }
}

TEST(Hadamard, SymmetricRotationMatchesDenseRHRt) {
  const int64_t h = 16, n = 3 * h;
  Matrix a = test::correlated_hessian(n, 5);
  const Matrix a0 = a;
  rotate_symmetric(a, h);
  const std::vector<double> r = dense_block_rotation(n, h);
  double scale = 0.0;
  for (float v : a0.data) scale = std::max(scale, static_cast<double>(std::abs(v)));
  const double tol = 2.0 * n * kEps * scale;  // two sums of n products
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0.0;
      for (int64_t k = 0; k < n; ++k)
        for (int64_t l = 0; l < n; ++l)
          ref += r[static_cast<size_t>(i * n + k)] * a0(k, l) * r[static_cast<size_t>(j * n + l)];
      ASSERT_NEAR(a(i, j), ref, tol) << i << "," << j;
      ASSERT_EQ(a(i, j), a(j, i));
    }
}

TEST(Hadamard, RotationIsItsOwnInverse) {
  const int64_t h = 128;
  Matrix w = test::random_weights(3, 2 * h, 2);
  const Matrix w0 = w;
  rotate_rows(w, h);
  rotate_rows(w, h);
  for (int64_t i = 0; i < w.rows; ++i) {
    double err = 0.0, norm = 0.0;
    for (int64_t j = 0; j < w.cols; ++j) {
      err += (w(i, j) - w0(i, j)) * static_cast<double>(w(i, j) - w0(i, j));
      norm += static_cast<double>(w0(i, j)) * w0(i, j);
    }
    // 2 log2(h) stages plus two scalings, each ~eps of the norm (R is orthogonal).
    EXPECT_LE(std::sqrt(err), 4.0 * std::log2(static_cast<double>(h)) * kEps * std::sqrt(norm));
    EXPECT_GT(norm, 0.0);
  }
}

TEST(Hadamard, RejectsBadSizes) {
  std::vector<float> x(12);
  EXPECT_THROW(fwht(x), Error);
  Matrix m(2, 24);
  EXPECT_THROW(fwht_blocks(m, 16), Error);  // 16 does not tile 24
  EXPECT_THROW(fwht_blocks(m, 6), Error);   // not a power of two
  EXPECT_THROW(hadamard_matrix(3), Error);
}

}  // namespace
}  // namespace cdq
