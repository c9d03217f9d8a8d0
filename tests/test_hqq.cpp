// HQQ: its lp objective over the iterations, the early stop, the grid forms (fractional and
// integer zeros, ragged groups, per channel), and how it compares to min-max RTN. The
// comparisons assert what was measured on these seeded problems, nothing more (see the
// comments where HQQ does not win).
#include <gtest/gtest.h>

#include <cdquant/error.hpp>
#include <cdquant/grid.hpp>
#include <cdquant/rng.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "quant/hqq.hpp"
#include "support/problems.hpp"

namespace cdq {
namespace {

HqqSpec spec_of(int bits, int group) {
  HqqSpec s;
  s.bits = bits;
  s.group_size = group;
  return s;
}

double mse(const Matrix& w, const Grid& g, const std::vector<uint8_t>& codes) {
  const Matrix q = dequantize(g, codes);
  double s = 0.0;
  for (size_t i = 0; i < q.data.size(); ++i) {
    const double d = static_cast<double>(q.data[i]) - w.data[i];
    s += d * d;
  }
  return s / static_cast<double>(q.data.size());
}

struct Rtn {
  Grid grid;
  std::vector<uint8_t> codes;
};

Rtn rtn_minmax(const Matrix& w, int bits, int group) {
  GridSpec gs;
  gs.bits = bits;
  gs.group_size = group;
  Rtn r{fit_grid(w, gs, nullptr), {}};
  r.codes = round_to_grid(r.grid, w);
  return r;
}

// The "the lp objective never rises across its iterations", for what HQQ returns and
// accepts: the accepted iterates are exactly the running minima of the iterates' lp errors
// (so their objective strictly falls), and the returned grid's lp error, recomputed from its
// codes, is the last accepted one's, at most every iterate's. The raw iterates are not
// monotone (half-quadratic splitting lowers the split problem, not |W - Wr|^p): measured rises
// of up to 8e-5 relative in single iterations on these problems, which this test counts.
TEST(Hqq, ReturnedAndAcceptedLpObjectiveNeverRises) {
  int rises = 0;
  for (bool early : {false, true})
    for (double dof : {0.0, 3.0})
      for (int bits : {2, 3, 4})
        for (int group : {32, 128, 0}) {
          const Matrix w = test::layer_weights(64, 512, 17, dof);
          HqqSpec spec = spec_of(bits, group);
          spec.early_stop = early;
          const HqqResult r = hqq_quantize(w, spec);
          const std::vector<double>& lp = r.trace.lp_error;
          if (!early) {
            ASSERT_EQ(lp.size(), 21u);
          }
          std::vector<int> minima;  // running minima of the trace, computed here
          double low = std::numeric_limits<double>::infinity();
          for (size_t i = 0; i < lp.size(); ++i) {
            if (lp[i] < low) {
              low = lp[i];
              minima.push_back(static_cast<int>(i));
            }
            rises += i > 0 && lp[i] > lp[i - 1];
          }
          const auto where = ::testing::Message() << "early " << early << " dof " << dof << " bits "
                                                  << bits << " group " << group;
          EXPECT_EQ(r.trace.accepted, minima) << where;
          for (size_t a = 1; a < r.trace.accepted.size(); ++a)
            EXPECT_LT(lp[static_cast<size_t>(r.trace.accepted[a])],
                      lp[static_cast<size_t>(r.trace.accepted[a - 1])])
                << where;
          // The returned grid (scale 1/s, bias -z/s: one more rounding than the trace's
          // (Wq - z) / s) has the objective of the best iterate, never above any of them.
          EXPECT_NEAR(r.trace.final_lp_error, low, 1e-6 * low) << where;
          for (double e : lp) EXPECT_LE(r.trace.final_lp_error, e * (1.0 + 1e-6)) << where;
          EXPECT_LT(r.trace.final_lp_error, lp.front() * (1.0 - 1e-3)) << where;
        }
  // The raw iterates do rise at times: keeping the best is what makes the claim hold.
  std::printf("iterations that raised the lp error: %d\n", rises);
  EXPECT_GT(rises, 0);
}

TEST(Hqq, EarlyStopWhenMeanAbsErrorStopsFalling) {
  const Matrix w = test::layer_weights(64, 512, 3, 0.0);
  const HqqResult r = hqq_quantize(w, spec_of(4, 32));
  ASSERT_TRUE(r.trace.stopped_early);  // measured: stops after ~12 of 20 updates at g32
  const std::vector<double>& e = r.trace.mean_abs_error;
  ASSERT_EQ(static_cast<int>(e.size()), r.trace.iterations + 1);
  EXPECT_LT(r.trace.iterations, 20);
  EXPECT_GE(e.back(), e[e.size() - 2]);  // the stop: no improvement
  for (size_t i = 1; i + 1 < e.size(); ++i) EXPECT_LT(e[i], e[i - 1]);
  HqqSpec full = spec_of(4, 32);
  full.early_stop = false;
  const HqqResult f = hqq_quantize(w, full);
  EXPECT_FALSE(f.trace.stopped_early);
  EXPECT_EQ(f.trace.iterations, 20);
  // Returned zero points are the best measured lp: never worse than the min-max start.
  EXPECT_LE(r.trace.final_lp_error, r.trace.lp_error.front() * (1.0 + 1e-6));
}

TEST(Hqq, ReferenceReturnKeepsTheLastUpdate) {
  const Matrix w = test::layer_weights(32, 256, 4, 3.0);
  HqqSpec spec = spec_of(3, 32);
  spec.reference_return = true;
  const HqqResult ref = hqq_quantize(w, spec);
  spec.reference_return = false;
  const HqqResult best = hqq_quantize(w, spec);
  ASSERT_EQ(ref.trace.iterations, best.trace.iterations);
  // Both are close to converged; the best-measured choice is not worse on the lp error.
  EXPECT_LE(best.trace.final_lp_error, ref.trace.final_lp_error * (1.0 + 1e-3));
  EXPECT_NEAR(ref.trace.final_lp_error / best.trace.final_lp_error, 1.0, 1e-2);
}

TEST(Hqq, BeatsMinMaxLpErrorInSmallGroups) {
  for (double dof : {0.0, 3.0, 5.0})
    for (int bits : {2, 3, 4})
      for (int group : {32, 64}) {
        const Matrix w = test::layer_weights(64, 1024, 7, dof);
        const HqqResult h = hqq_quantize(w, spec_of(bits, group));
        const Rtn r = rtn_minmax(w, bits, group);
        EXPECT_LT(h.trace.final_lp_error, lp_error(w, r.grid, r.codes, 0.7))
            << "dof " << dof << " bits " << bits << " group " << group;
        // And always below its own min-max start (fractional zero, range not forced to 0).
        EXPECT_LT(h.trace.final_lp_error, h.trace.lp_error.front());
      }
}

TEST(Hqq, LowerWeightMseThanMinMaxRtnAtG32OnHeavyTails) {
  // Measured (256 x 1024, Student-t dof 3): g32 HQQ / RTN MSE = 0.94 (2 bits), 0.87 (3), 0.85
  // (4). Per channel there is no gain (within +-2% either way), which this test does not claim.
  for (int bits : {2, 3, 4}) {
    const Matrix w = test::layer_weights(64, 1024, 7, 3.0);
    const HqqResult h = hqq_quantize(w, spec_of(bits, 32));
    const Rtn r = rtn_minmax(w, bits, 32);
    const double ratio = mse(w, h.grid, h.codes) / mse(w, r.grid, r.codes);
    std::printf("Student-t(3) g32 %d bits: HQQ / RTN min-max weight MSE = %.3f\n", bits, ratio);
    EXPECT_LT(ratio, 0.97) << bits;
  }
}

TEST(Hqq, FractionalGridMatchesHqqFormula) {
  const Matrix w =
      test::layer_weights(8, 100, 9, 0.0);  // groups of 32: the last one holds 4 columns
  const HqqResult h = hqq_quantize(w, spec_of(3, 32));
  const Grid& g = h.grid;
  ASSERT_EQ(g.n_groups, 4);
  EXPECT_TRUE(g.zero.empty());
  EXPECT_EQ(g.maxq, 7);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c) {
      const size_t k = g.at(r, g.group_of(c));
      const double s = 1.0 / g.scale[k], z = -g.bias[k] / g.scale[k];  // HQQ's s and z
      const int q = h.codes[static_cast<size_t>(r * w.cols + c)];
      ASSERT_LE(q, 7);
      // Wr = (Wq - z) / s, to a few float roundings of the value.
      EXPECT_NEAR(g.value(r, c, q), (q - z) / s, 1e-5 * (std::abs(z / s) + 8.0 / s));
      // The code is the nearest grid value (float ties aside).
      const double err = std::abs(g.value(r, c, q) - w(r, c));
      for (int j = 0; j <= 7; ++j) EXPECT_LE(err, std::abs(g.value(r, c, j) - w(r, c)) + 1e-6 / s);
    }
}

TEST(Hqq, IntegerZeroVariantIsAnIntegerGrid) {
  const Matrix w = test::layer_weights(16, 256, 10, 3.0);
  HqqSpec spec = spec_of(4, 64);
  spec.integer_zero = true;
  const HqqResult h = hqq_quantize(w, spec);
  ASSERT_TRUE(h.grid.is_integer_grid());
  for (size_t k = 0; k < h.grid.zero.size(); ++k) {
    EXPECT_GE(h.grid.zero[k], 0);
    EXPECT_LE(h.grid.zero[k], 15);
    EXPECT_FLOAT_EQ(h.grid.bias[k], -h.grid.scale[k] * static_cast<float>(h.grid.zero[k]));
  }
  // With the scale fixed at min-max, the best integer zero is RTN's own: the integer form does
  // not beat RTN (measured: equal MSE), and must not be worse than the fractional form by much.
  const Rtn r = rtn_minmax(w, 4, 64);
  EXPECT_LE(mse(w, h.grid, h.codes), mse(w, r.grid, r.codes) * 1.02);
}

TEST(Hqq, PerChannelAnyBitsAndFlatGroups) {
  Matrix w = test::layer_weights(4, 70, 12, 0.0);
  for (int64_t c = 0; c < 70; ++c) w(3, c) = 0.5f;  // a flat row: s capped, no NaN
  for (int bits : {2, 5, 8}) {
    const HqqResult h = hqq_quantize(w, spec_of(bits, 0));
    EXPECT_EQ(h.grid.n_groups, 1);
    EXPECT_EQ(h.grid.maxq, (1 << bits) - 1);
    const Matrix q = dequantize(h.grid, h.codes);
    EXPECT_TRUE(all_finite(q.span()));
    for (int64_t c = 0; c < 70; ++c) EXPECT_NEAR(q(3, c), 0.5f, 1e-3);
  }
  EXPECT_THROW(hqq_quantize(w, spec_of(1, 0)), Error);
  EXPECT_THROW(hqq_quantize(w, spec_of(9, 0)), Error);
}

// The scale refit is cdquant's extension. Measured on 256 x 1024 layers: 1-3% lower weight MSE
// at 3-4 bits in groups of 32-128, but up to 45% higher at 2 bits on Student-t(3) weights, so
// it stays off by default; this checks only the case where it was measured to help.
TEST(Hqq, ScaleRefitIsAValidGridAndHelpsAtFourBitsInSmallGroups) {
  for (double dof : {0.0, 5.0}) {
    const Matrix w = test::layer_weights(64, 1024, 7, dof);
    HqqSpec spec = spec_of(4, 32);
    const HqqResult zero_only = hqq_quantize(w, spec);
    spec.optimize_scale = true;
    const HqqResult both = hqq_quantize(w, spec);
    for (float s : both.grid.scale) ASSERT_TRUE(s > 0.0f && std::isfinite(s));
    EXPECT_NE(both.grid.scale, zero_only.grid.scale);
    EXPECT_LT(both.trace.final_lp_error, zero_only.trace.final_lp_error) << dof;
    EXPECT_LE(both.trace.final_mean_abs_error, both.trace.mean_abs_error.front());
  }
}

TEST(Hqq, Deterministic) {
  const Matrix w = test::layer_weights(32, 512, 13, 3.0);
  const HqqResult a = hqq_quantize(w, spec_of(3, 64)), b = hqq_quantize(w, spec_of(3, 64));
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.grid.bias, b.grid.bias);
  EXPECT_EQ(a.trace.lp_error, b.trace.lp_error);
}

}  // namespace
}  // namespace cdq
