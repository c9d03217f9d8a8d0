// Gaussian grids: the published Lloyd-Max table satisfies the optimality conditions on N(0, 1)
// and has the published MSE; the Lloyd iteration reproduces it; the fitted p = 2 grids beat
// p = 1 at equal bits, match the published MSE, and are deterministic under their seed.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cdquant/error.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "quant/normal_grid.hpp"

namespace cdq {
namespace {

std::vector<double> table_levels(int bits) {
  const auto half = lloyd_max_table(bits);
  std::vector<double> v;
  for (auto it = half.rbegin(); it != half.rend(); ++it) v.push_back(-*it);
  for (double x : half) v.push_back(x);
  return v;
}

double published_mse(int bits) {
  return bits == 2 ? 0.1175 : bits == 3 ? 0.03455 : 0.00950;
}

TEST(NormalGrid, TableLevelsAreCentroidsOfTheirMidpointCells) {
  for (int bits : {2, 3, 4}) {
    const std::vector<double> c = table_levels(bits);
    const auto n = static_cast<int64_t>(c.size());
    ASSERT_EQ(n, int64_t{1} << bits);
    const double inf = std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      const double a = i == 0 ? -inf : 0.5 * (c[i - 1] + c[i]);
      const double b = i == n - 1 ? inf : 0.5 * (c[i] + c[i + 1]);
      EXPECT_NEAR(gaussian_cell_mean(a, b), c[static_cast<size_t>(i)], 1e-3)
          << bits << " bits, level " << i;
    }
  }
}

TEST(NormalGrid, SearchBoundariesAreMidpointsOfNeighbouringLevels) {
  // The nearest-point search (argmax 2 u g - g^2) switches from level i to i + 1 exactly at
  // their midpoint: bisect the switch point.
  for (int bits : {2, 3, 4}) {
    const NormalGrid& g = normal_grid(bits, 1);
    for (int64_t i = 0; i + 1 < g.n_points(); ++i) {
      float lo = g.points[static_cast<size_t>(i)], hi = g.points[static_cast<size_t>(i + 1)];
      ASSERT_EQ(nearest_point(g, &lo), i);
      ASSERT_EQ(nearest_point(g, &hi), i + 1);
      for (int it = 0; it < 40; ++it) {
        float mid = 0.5f * (lo + hi);
        (nearest_point(g, &mid) <= i ? lo : hi) = mid;
      }
      const double midpoint =
          0.5 * (g.points[static_cast<size_t>(i)] + g.points[static_cast<size_t>(i + 1)]);
      EXPECT_NEAR(lo, midpoint, 1e-5) << bits << " bits, boundary " << i;
    }
  }
}

TEST(NormalGrid, TableMseMatchesPublished) {
  for (int bits : {2, 3, 4}) {
    const double mse = gaussian_mse(table_levels(bits));
    EXPECT_NEAR(mse / published_mse(bits), 1.0, 1e-3) << bits << " bits: " << mse;
    EXPECT_NEAR(normal_grid(bits, 1).mse, mse, 1e-12);
  }
}

TEST(NormalGrid, LloydIterationReproducesTheTable) {
  for (int bits : {2, 3, 4}) {
    const std::vector<double> computed = lloyd_max_levels(bits);
    const std::vector<double> table = table_levels(bits);
    ASSERT_EQ(computed.size(), table.size());
    for (size_t i = 0; i < table.size(); ++i) EXPECT_NEAR(computed[i], table[i], 1e-3) << bits;
    // The fixed point is optimal among neighbours: its MSE is not above the (rounded) table's.
    EXPECT_LE(gaussian_mse(computed), gaussian_mse(table) + 1e-9);
  }
}

TEST(NormalGrid, GaussianMseClosedFormMatchesSampling) {
  const NormalGrid& g = normal_grid(3, 1);
  // 2^20 samples: the MSE estimate has relative standard error ~ sqrt(2.5 / 2^20) ~ 0.15%.
  EXPECT_NEAR(sampled_mse(g, int64_t{1} << 20, 99) / g.mse, 1.0, 0.01);
}

TEST(NormalGrid, KMeansInOneDimensionFindsLloydMax) {
  KMeansOptions opts;
  opts.samples = int64_t{1} << 17;
  const NormalGrid g = fit_gaussian_grid(3, 1, opts);
  std::vector<double> lv(g.points.begin(), g.points.end());
  std::sort(lv.begin(), lv.end());
  const std::vector<double> table = table_levels(3);
  for (size_t i = 0; i < lv.size(); ++i) EXPECT_NEAR(lv[i], table[i], 0.03) << i;
}

TEST(NormalGrid, VectorGridsBeatScalarAndMatchPublished) {
  for (int bits : {2, 3, 4}) {
    const auto t0 = std::chrono::steady_clock::now();
    const NormalGrid& g2 = normal_grid(bits, 2);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(g2.n_points(), int64_t{1} << (2 * bits));
    const double fresh = sampled_mse(g2, int64_t{1} << 19, 12345);
    std::printf("p=2 %d bits: %lld points, fit MSE %.5f, fresh-sample MSE %.5f, fit %.2f s\n", bits,
                static_cast<long long>(g2.n_points()), g2.mse, fresh, seconds);
    EXPECT_LT(fresh, normal_grid(bits, 1).mse) << bits;
    if (bits == 3) {
      EXPECT_NEAR(fresh / 0.0295, 1.0, 0.025);
    }
    if (bits == 4) {
      EXPECT_NEAR(fresh / 0.00775, 1.0, 0.025);
    }
  }
}

TEST(NormalGrid, FitIsDeterministicUnderItsSeedAndCached) {
  KMeansOptions opts;
  opts.samples = int64_t{1} << 15;
  const NormalGrid a = fit_gaussian_grid(3, 2, opts);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);  // partial sums in fixed chunks: the thread count must not matter
  const NormalGrid b = fit_gaussian_grid(3, 2, opts);
  omp_set_num_threads(threads);
  EXPECT_EQ(a.points, b.points);  // same code path, same seed: bit for bit
  opts.seed += 1;
  const NormalGrid c = fit_gaussian_grid(3, 2, opts);
  EXPECT_NE(a.points, c.points);
  EXPECT_EQ(&normal_grid(3, 2), &normal_grid(3, 2));
}

TEST(NormalGrid, NearestPointsAgreesWithScalarSearch) {
  // 16 points: tile scan; 64 and 256: cell index. Up to +-6: the far vectors fall outside the
  // index's box and take the full scan.
  std::vector<float> u(2 * 1000);
  for (size_t i = 0; i < u.size(); ++i) u[i] = static_cast<float>(std::sin(0.37 * i) * 6.0);
  for (int bits : {2, 3, 4}) {
    const NormalGrid& g = normal_grid(bits, 2);
    std::vector<uint8_t> codes(1000);
    nearest_points(g, u.data(), 1000, codes.data());
    auto d2 = [&](int64_t i, int32_t p) {
      const float* q = g.point(p);
      return std::pow(u[2 * i] - q[0], 2.0) + std::pow(u[2 * i + 1] - q[1], 2.0);
    };
    for (int64_t i = 0; i < 1000; ++i) {
      const int32_t k = nearest_point(g, u.data() + 2 * i);
      // Two code paths may round a near-tie differently: then both points are equally near.
      if (codes[static_cast<size_t>(i)] != k) {
        EXPECT_NEAR(d2(i, codes[static_cast<size_t>(i)]), d2(i, k), 1e-5) << bits << " " << i;
      }
      for (int32_t p = 0; p < g.n_points(); ++p)  // and it is the nearest of all points
        ASSERT_LE(d2(i, k), d2(i, p) + 1e-5);
    }
  }
}

TEST(NormalGrid, RejectsUnknownSizes) {
  EXPECT_THROW(lloyd_max_table(5), Error);
  EXPECT_THROW(normal_grid(5, 1), Error);
  EXPECT_THROW(normal_grid(3, 3), Error);
}

}  // namespace
}  // namespace cdq
