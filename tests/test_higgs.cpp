// HIGGS: the relative error on Gaussian rows is the grid's MSE per dimension, the block layout
// (padding, default block size, bits per weight), and the rotated-space pieces of the
// data-aware variant (R via FWHT = dense blockdiag product, same objective, codebook grid).
#include <gtest/gtest.h>

#include <cdquant/error.hpp>
#include <cdquant/rng.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "quant/higgs.hpp"
#include "support/problems.hpp"
#include "transform/hadamard.hpp"

namespace cdq {
namespace {

constexpr double kEps = std::numeric_limits<float>::epsilon();

double relative_error(const Matrix& w, const HiggsSpec& spec) {
  const HiggsCodes q = higgs_quantize(w, spec);
  const Matrix back = higgs_dequantize(q);
  EXPECT_EQ(back.rows, w.rows);
  EXPECT_EQ(back.cols, w.cols);
  return test::squared_distance(back, w) / test::squared_norm(w);
}

TEST(Higgs, RelativeErrorOnGaussianRowsIsTheGridMse) {
  const Matrix w = test::random_weights(64, 1024, 3, 0.02);
  for (int dim : {1, 2})
    for (int bits : {2, 3, 4}) {
      HiggsSpec spec;
      spec.bits = bits;
      spec.dim = dim;
      spec.h = 256;
      const double rel = relative_error(w, spec);
      const double grid_mse = normal_grid(bits, dim).mse;
      std::printf("HIGGS p=%d %d bits h=256: relative MSE %.5f (grid %.5f)\n", dim, bits, rel,
                  grid_mse);
      // 64 x 1024 = 65536 entries: the sampled MSE is within a few % of the grid's; the fp16
      // scale adds a relative 2^-11 at most.
      EXPECT_NEAR(rel / grid_mse, 1.0, 0.05) << "p=" << dim << " bits=" << bits;
    }
}

TEST(Higgs, ThreeBitScalarGivesPublishedError) {
  const Matrix w = test::random_weights(128, 512, 8);
  HiggsSpec spec;
  spec.bits = 3;
  EXPECT_NEAR(relative_error(w, spec), 0.03455, 0.03455 * 0.05);
}

TEST(Higgs, DequantizeIsScaledInverseTransformOfGridValues) {
  // w_hat = s Had(g) / sqrt(h) per block, against a dense product in double.
  const int64_t h = 64;
  const Matrix w = test::random_weights(3, 2 * h, 21);
  HiggsSpec spec;
  spec.bits = 2;
  spec.h = h;
  const HiggsCodes q = higgs_quantize(w, spec);
  const Matrix back = higgs_dequantize(q);
  const Matrix had = hadamard_matrix(h);
  const NormalGrid& g = normal_grid(2, 1);
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t b = 0; b < 2; ++b) {
      const double s = q.scales[static_cast<size_t>(r * 2 + b)];
      for (int64_t i = 0; i < h; ++i) {
        double ref = 0.0;
        for (int64_t j = 0; j < h; ++j)
          ref += had(i, j) * g.points[q.codes[static_cast<size_t>(r * 2 * h + b * h + j)]];
        ref *= s / std::sqrt(static_cast<double>(h));
        EXPECT_NEAR(back(r, b * h + i), ref, h * kEps * std::abs(s) * 4.0);
      }
    }
}

TEST(Higgs, PadsRaggedRowsAndDropsThePadding) {
  const Matrix w = test::random_weights(8, 200, 5);  // 200 = 3 * 64 + 8
  HiggsSpec spec;
  spec.bits = 4;
  spec.h = 64;
  const HiggsCodes q = higgs_quantize(w, spec);
  EXPECT_EQ(q.n_blocks, 4);
  EXPECT_EQ(q.d_pad(), 256);
  EXPECT_EQ(q.codes.size(), 8u * 256u);
  EXPECT_EQ(q.scales.size(), 8u * 4u);
  const Matrix back = higgs_dequantize(q);
  ASSERT_EQ(back.cols, 200);
  EXPECT_LT(test::squared_distance(back, w) / test::squared_norm(w), 0.02);
  // The last block holds 8 weights and 56 zeros: its scale is |w_tail| / sqrt(64).
  double tail = 0.0;
  for (int64_t c = 192; c < 200; ++c) tail += static_cast<double>(w(0, c)) * w(0, c);
  EXPECT_NEAR(q.scales[3], std::sqrt(tail) / 8.0, 1e-3 * std::sqrt(tail) / 8.0);
}

TEST(Higgs, ZeroBlocksStayZero) {
  Matrix w = test::random_weights(2, 128, 4);
  for (int64_t c = 0; c < 64; ++c) w(1, c) = 0.0f;
  HiggsSpec spec;
  spec.h = 64;
  const Matrix back = higgs_dequantize(higgs_quantize(w, spec));
  for (int64_t c = 0; c < 64; ++c) EXPECT_EQ(back(1, c), 0.0f);
}

TEST(Higgs, DefaultBlockAndBitsPerWeight) {
  EXPECT_EQ(higgs_default_block(4096), 512);
  EXPECT_EQ(higgs_default_block(512), 512);
  EXPECT_EQ(higgs_default_block(300), 512);  // 300 rounds up to 512
  EXPECT_EQ(higgs_default_block(200), 256);
  EXPECT_EQ(higgs_default_block(100), 128);
  EXPECT_EQ(higgs_default_block(16), 64);
  EXPECT_DOUBLE_EQ(higgs_bits_per_weight(3, 512), 3.03125);
  EXPECT_DOUBLE_EQ(higgs_bits_per_weight(4, 64), 4.25);
  const Matrix w = test::random_weights(4, 1024, 1);
  HiggsSpec spec;
  spec.bits = 4;
  spec.dim = 2;
  spec.h = 128;
  EXPECT_DOUBLE_EQ(higgs_stored_bits_per_weight(higgs_quantize(w, spec)), 4.125);
}

TEST(Higgs, DeterministicAndRejectsBadBlocks) {
  const Matrix w = test::random_weights(16, 256, 9);
  HiggsSpec spec;
  spec.dim = 2;
  spec.h = 128;
  const HiggsCodes a = higgs_quantize(w, spec), b = higgs_quantize(w, spec);
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.scales, b.scales);
  spec.h = 96;
  EXPECT_THROW(higgs_quantize(w, spec), Error);
  spec.h = 64;
  spec.bits = 5;
  EXPECT_THROW(higgs_quantize(w, spec), Error);
}

// Dense R = blockdiag(Had_h / sqrt(h)) [n, n] in double.
std::vector<double> dense_rotation(int64_t n, int64_t h) {
  const Matrix had = hadamard_matrix(h);
  std::vector<double> r(static_cast<size_t>(n * n), 0.0);
  for (int64_t b = 0; b < n; b += h)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < h; ++j)
        r[static_cast<size_t>((b + i) * n + b + j)] = had(i, j) / std::sqrt(static_cast<double>(h));
  return r;
}

TEST(Higgs, RotationViaFwhtEqualsDenseBlockDiagonalProduct) {
  const int64_t h = 16, d_in = 40, d_pad = 48, d_out = 4;  // 40 pads to 48
  const Matrix w = test::random_weights(d_out, d_in, 31);
  const Matrix hess = test::correlated_hessian(d_in, 32);
  const Matrix wr = higgs_rotate_weights(w, h);
  const Matrix hr = higgs_rotate_hessian(hess, h);
  ASSERT_EQ(wr.cols, d_pad);
  ASSERT_EQ(hr.rows, d_pad);
  const std::vector<double> r = dense_rotation(d_pad, h);
  auto wpad = [&](int64_t i, int64_t k) { return k < d_in ? static_cast<double>(w(i, k)) : 0.0; };
  auto hpad = [&](int64_t k, int64_t l) {
    return k < d_in && l < d_in ? static_cast<double>(hess(k, l)) : 0.0;
  };
  for (int64_t i = 0; i < d_out; ++i)
    for (int64_t j = 0; j < d_pad; ++j) {
      double ref = 0.0;
      for (int64_t k = 0; k < d_pad; ++k) ref += wpad(i, k) * r[static_cast<size_t>(j * d_pad + k)];
      EXPECT_NEAR(wr(i, j), ref, d_pad * kEps * 4.0);
    }
  double hmax = 0.0;
  for (float v : hess.data) hmax = std::max(hmax, static_cast<double>(std::abs(v)));
  for (int64_t i = 0; i < d_pad; ++i)
    for (int64_t j = 0; j < d_pad; ++j) {
      double ref = 0.0;
      for (int64_t k = 0; k < d_pad; ++k)
        for (int64_t l = 0; l < d_pad; ++l)
          ref += r[static_cast<size_t>(i * d_pad + k)] * hpad(k, l) *
                 r[static_cast<size_t>(j * d_pad + l)];
      EXPECT_NEAR(hr(i, j), ref, 2.0 * d_pad * kEps * hmax);
    }
  const Matrix back = higgs_unrotate_weights(wr, d_in, h);
  EXPECT_LE(std::sqrt(test::squared_distance(back, w)),
            4.0 * std::log2(h) * kEps * std::sqrt(test::squared_norm(w)));
}

// tr(E H E^T) for E [d_out, n], in double.
double objective(const Matrix& e, const Matrix& hess) {
  double s = 0.0;
  for (int64_t r = 0; r < e.rows; ++r)
    for (int64_t i = 0; i < e.cols; ++i)
      for (int64_t j = 0; j < e.cols; ++j) s += static_cast<double>(e(r, i)) * hess(i, j) * e(r, j);
  return s;
}

TEST(Higgs, CodebookInRotatedSpaceKeepsTheObjectiveAndMatchesHiggs) {
  const int64_t h = 64, d_in = 128;
  const Matrix w = test::random_weights(6, d_in, 41);
  const Matrix hess = test::correlated_hessian(d_in, 42);
  const Matrix wr = higgs_rotate_weights(w, h);
  const Grid grid = higgs_codebook_grid(wr, 3, h);
  const std::vector<uint8_t> codes = round_to_grid(grid, wr);
  const Matrix qr = dequantize(grid, codes);  // Q' in the rotated basis
  const Matrix q = higgs_unrotate_weights(qr, d_in, h);
  // The layer objective is the same in both bases (R orthogonal).
  Matrix er(wr.rows, wr.cols), e(w.rows, w.cols);
  for (size_t i = 0; i < er.data.size(); ++i) er.data[i] = qr.data[i] - wr.data[i];
  for (size_t i = 0; i < e.data.size(); ++i) e.data[i] = q.data[i] - w.data[i];
  const double l = objective(e, hess), lr = objective(er, higgs_rotate_hessian(hess, h));
  EXPECT_NEAR(lr / l, 1.0, 1e-4);
  // Rounding to the codebook in the rotated basis is HIGGS p = 1: same weights back.
  HiggsSpec spec;
  spec.bits = 3;
  spec.h = h;
  const Matrix direct = higgs_dequantize(higgs_quantize(w, spec));
  EXPECT_LE(test::squared_distance(direct, q),
            1e-3 * test::squared_distance(w, q));  // all but float near-ties agree
  EXPECT_NEAR(test::squared_distance(w, q) / test::squared_norm(w), 0.03455, 0.03455 * 0.15);
}

TEST(Higgs, CodebookNearestIsTheClosestLevel) {
  Matrix wr = test::random_weights(2, 64, 50);
  const Grid grid = higgs_codebook_grid(wr, 4, 64);
  for (int64_t c = 0; c < 64; ++c) {
    const int k = grid.nearest(0, c, wr(0, c));
    const double d = std::abs(grid.value(0, c, k) - wr(0, c));
    for (int j = 0; j < 16; ++j) EXPECT_LE(d, std::abs(grid.value(0, c, j) - wr(0, c)) + 1e-7);
  }
}

}  // namespace
}  // namespace cdq
