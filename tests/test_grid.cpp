// Grid layout, min-max scales, MSE and OWC scale search, nearest().
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/grid.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/solver.hpp>
#include <cmath>
#include <limits>

#include "quant/scale_search.hpp"
#include "support/problems.hpp"

namespace cdq {
namespace {

using test::correlated_hessian;
using test::random_weights;
using ::testing::HasSubstr;

Matrix row_matrix(std::initializer_list<float> v) {
  Matrix m(1, static_cast<int64_t>(v.size()));
  std::copy(v.begin(), v.end(), m.data.begin());
  return m;
}

GridSpec spec_of(int bits, int group, bool sym, ScaleSearch search = ScaleSearch::MinMax) {
  GridSpec s;
  s.bits = bits;
  s.group_size = group;
  s.symmetric = sym;
  s.search = search;
  return s;
}

TEST(MinMax, MatchesHandComputedAsymmetric) {
  // range [-1, 2] -> scale 3/3 = 1, zero round(1/1) = 1
  const Grid g = fit_grid(row_matrix({-1.0f, 0.5f, 2.0f, 0.25f}), spec_of(2, 0, false), nullptr);
  EXPECT_FLOAT_EQ(g.scale[0], 1.0f);
  EXPECT_EQ(g.zero[0], 1);
  EXPECT_FLOAT_EQ(g.bias[0], -1.0f);
  // all positive: the range is forced to include 0 -> [0, 1.5], 4 bits: scale 0.1, zero 0
  const Grid p = fit_grid(row_matrix({0.5f, 1.5f}), spec_of(4, 0, false), nullptr);
  EXPECT_FLOAT_EQ(p.scale[0], 1.5f / 15.0f);
  EXPECT_EQ(p.zero[0], 0);
  // range [-0.3, 0.9], 3 bits: scale 1.2/7, zero round(0.3 * 7 / 1.2) = round(1.75) = 2
  const Grid a = fit_grid(row_matrix({-0.3f, 0.9f, 0.1f}), spec_of(3, 0, false), nullptr);
  EXPECT_FLOAT_EQ(a.scale[0], 1.2f / 7.0f);
  EXPECT_EQ(a.zero[0], 2);
}

TEST(MinMax, MatchesHandComputedSymmetric) {
  // max |w| = 2 -> range [-2, 2], 2 bits: scale 4/3, zero 2
  const Grid g = fit_grid(row_matrix({-1.0f, 0.5f, 2.0f}), spec_of(2, 0, true), nullptr);
  EXPECT_FLOAT_EQ(g.scale[0], 4.0f / 3.0f);
  EXPECT_EQ(g.zero[0], 2);
  // 8 bits: zero 128, scale 2 * 3 / 255
  const Grid e = fit_grid(row_matrix({-3.0f, 1.0f}), spec_of(8, 0, true), nullptr);
  EXPECT_FLOAT_EQ(e.scale[0], 6.0f / 255.0f);
  EXPECT_EQ(e.zero[0], 128);
  // all nonnegative: the reference keeps xmin = 0, so scale = max / maxq with the zero at 8
  // (positive values beyond about max/2 clip): kept as is for exact agreement
  const Grid p = fit_grid(row_matrix({0.5f, 1.5f}), spec_of(4, 0, true), nullptr);
  EXPECT_FLOAT_EQ(p.scale[0], 0.1f);
  EXPECT_EQ(p.zero[0], 8);
  // all-zero group: range [-1, 1]
  const Grid z = fit_grid(row_matrix({0.0f, 0.0f}), spec_of(4, 0, true), nullptr);
  EXPECT_FLOAT_EQ(z.scale[0], 2.0f / 15.0f);
  EXPECT_EQ(z.zero[0], 8);
}

TEST(Layout, RaggedLastGroupHasItsOwnScale) {
  const int64_t d_in = 172;
  Matrix w = random_weights(3, d_in, 1);
  for (int group : {32, 64, 128}) {
    const int64_t last0 = (d_in - 1) / group * group;
    Matrix wl = w;
    for (int64_t r = 0; r < 3; ++r)  // make the ragged group's range distinct
      for (int64_t c = last0; c < d_in; ++c) wl(r, c) *= 0.01f;
    const Grid g = fit_grid(wl, spec_of(4, group, false), nullptr);
    EXPECT_EQ(g.n_groups, (d_in + group - 1) / group);
    for (int64_t c = 0; c < d_in; ++c) EXPECT_EQ(g.group_of(c), c / group);
    for (int64_t r = 0; r < 3; ++r) {
      float s = 0.0f;
      int32_t z = 0;
      minmax_params(wl.row(r) + last0, d_in - last0, 4, false, s, z);
      EXPECT_EQ(g.scale[g.at(r, g.n_groups - 1)], s);
      EXPECT_EQ(g.zero[g.at(r, g.n_groups - 1)], z);
      EXPECT_LT(g.scale[g.at(r, g.n_groups - 1)], 0.1f * g.scale[g.at(r, 0)]);
    }
  }
}

TEST(Rtn, EveryBitWidthRoundsWithinHalfAStep) {
  const Matrix w = random_weights(6, 100, 2);
  for (int bits : {2, 3, 4, 8})
    for (bool sym : {false, true})
      for (int group : {0, 32}) {
        const Grid g = fit_grid(w, spec_of(bits, group, sym), nullptr);
        EXPECT_EQ(g.maxq, (1 << bits) - 1);
        const auto codes = round_to_grid(g, w);
        const Matrix q = dequantize(g, codes);
        for (int64_t r = 0; r < w.rows; ++r)
          for (int64_t c = 0; c < w.cols; ++c) {
            EXPECT_LE(codes[static_cast<size_t>(r * w.cols + c)], g.maxq);
            const int gi = g.group_of(c);
            const float s = g.scale[g.at(r, gi)];
            // The reference's symmetric grid of an all-nonnegative group keeps xmin = 0, so its
            // top is near max/2 (see MatchesHandComputedSymmetric): no half-step bound there.
            const int64_t c0 = gi * (group > 0 ? group : w.cols);
            const int64_t n = std::min<int64_t>(group > 0 ? group : w.cols, w.cols - c0);
            if (sym && *std::min_element(w.row(r) + c0, w.row(r) + c0 + n) >= 0.0f) continue;
            // the min-max grid covers the range up to the rounding of the zero point (s/2)
            EXPECT_LE(std::abs(q(r, c) - w(r, c)), 0.5f * s * (1.0f + 1e-4f))
                << bits << " bits, sym " << sym << ", group " << group;
          }
      }
}

TEST(Nearest, IsTheTrueNearestGridPoint) {
  Rng rng(3);
  const Matrix w = random_weights(4, 40, 4);
  for (int bits : {2, 3, 4, 8}) {
    Grid g = fit_grid(w, spec_of(bits, 16, false), nullptr);
    Grid nonint = g;  // a non-integer grid with offsets: scale * q + bias
    nonint.zero.clear();
    for (float& b : nonint.bias) b += 0.37f * nonint.scale[&b - nonint.bias.data()];
    for (const Grid* grid : {&g, &nonint})
      for (int64_t r = 0; r < 4; ++r)
        for (int64_t c = 0; c < 40; ++c) {
          const float x = static_cast<float>(1.5 * w(r, c) + 0.1 * rng.normal());  // some outside
          const int q = grid->nearest(r, c, x);
          ASSERT_GE(q, 0);
          ASSERT_LE(q, grid->maxq);
          const float best = std::abs(grid->value(r, c, q) - x);
          for (int k = 0; k <= grid->maxq; ++k)
            EXPECT_LE(best, std::abs(grid->value(r, c, k) - x) * (1.0f + 1e-6f) + 1e-7f)
                << "bits " << bits << " code " << q << " vs " << k;
        }
  }
}

// Per (row, group) scores of a grid by the search's own criterion.
double group_score(const Matrix& w, const Grid& g, const GridSpec& spec, const Matrix& h, int64_t r,
                   int gi, int64_t gs) {
  const int64_t c0 = gi * gs, n = std::min<int64_t>(gs, w.cols - c0);
  const size_t k = g.at(r, gi);
  if (spec.search == ScaleSearch::Mse)
    return mse_score(w.row(r) + c0, n, g.maxq, g.scale[k], g.zero[k], spec.mse_norm);
  return owc_score(w.row(r) + c0, n, g.maxq, g.scale[k], g.zero[k], h.row(c0) + c0, h.cols);
}

// Candidate i of the GPTQ reference quantizer's search, written out independently.
std::pair<float, int32_t> reference_candidate(const float* w, int64_t n, const GridSpec& spec,
                                              int i) {
  float xmin = 0.0f, xmax = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    xmin = std::min(xmin, w[j]);
    xmax = std::max(xmax, w[j]);
  }
  if (spec.symmetric) {
    xmax = std::max(-xmin, xmax);
    if (xmin < 0.0f) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  const float p = static_cast<float>(1.0 - i / static_cast<double>(spec.search_points));
  const float lo = p * xmin, hi = p * xmax;
  const float s = (hi - lo) / static_cast<float>(spec.maxq());
  const int32_t z =
      spec.symmetric ? (spec.maxq() + 1) / 2 : static_cast<int32_t>(std::nearbyint(-lo / s));
  return {s, z};
}

TEST(ScaleSearch, MseAndOwcNeverScoreWorseThanMinMaxAndPickTheBestCandidate) {
  const int64_t d_in = 96;
  const Matrix w = random_weights(10, d_in, 5);
  const Matrix h = correlated_hessian(d_in, 6);
  for (ScaleSearch search : {ScaleSearch::Mse, ScaleSearch::Owc})
    for (int bits : {2, 3, 4, 8})
      for (int group : {0, 32})
        for (bool sym : {false, true}) {
          GridSpec spec = spec_of(bits, group, sym, search);
          spec.mse_norm = bits == 3 ? 2.4f : 2.0f;  // the reference's norm too
          const Grid best = fit_grid(w, spec, &h);
          const Grid base = fit_grid(w, spec_of(bits, group, sym), nullptr);
          const int64_t gs = group > 0 ? group : d_in;
          for (int64_t r = 0; r < w.rows; ++r)
            for (int gi = 0; gi < best.n_groups; ++gi) {
              const double s_best = group_score(w, best, spec, h, r, gi, gs);
              EXPECT_LE(s_best, group_score(w, base, spec, h, r, gi, gs) * (1 + 1e-6));
              // brute force over the candidates: no candidate scores lower
              const int64_t c0 = gi * gs, n = std::min<int64_t>(gs, d_in - c0);
              for (int i = 0; i < scale_candidates(spec); ++i) {
                const auto [s, z] = reference_candidate(w.row(r) + c0, n, spec, i);
                const double sc =
                    search == ScaleSearch::Mse
                        ? mse_score(w.row(r) + c0, n, spec.maxq(), s, z, spec.mse_norm)
                        : owc_score(w.row(r) + c0, n, spec.maxq(), s, z, h.row(c0) + c0, h.cols);
                EXPECT_LE(s_best, sc * (1 + 1e-6) + 1e-12) << "candidate " << i;
              }
            }
        }
}

TEST(ScaleSearch, OwcBeatsMinMaxOnHWeightedErrorForCorrelatedH) {
  const int64_t d_in = 128;
  const Matrix w = random_weights(32, d_in, 7);
  const Matrix h = correlated_hessian(d_in, 8);
  for (int bits : {2, 3, 4}) {
    const GridSpec owc = spec_of(bits, 0, false, ScaleSearch::Owc);
    const GridSpec mm = spec_of(bits, 0, false);
    const Matrix q_owc = dequantize(fit_grid(w, owc, &h), round_to_grid(fit_grid(w, owc, &h), w));
    const Grid gm = fit_grid(w, mm, nullptr);
    const Matrix q_mm = dequantize(gm, round_to_grid(gm, w));
    EXPECT_LT(layer_objective(w, q_owc, h), layer_objective(w, q_mm, h)) << bits;
  }
}

TEST(ScaleSearch, ScreenedOwcIsNeverWorseThanMinMaxAndCloseToExact) {
  // Force the wide-group path (diagonal screen + exact refinement) on a small problem.
  const int64_t d_in = 80;
  const Matrix w = random_weights(16, d_in, 9);
  const Matrix h = correlated_hessian(d_in, 10);
  GridSpec exact = spec_of(3, 0, false, ScaleSearch::Owc);
  exact.owc_refine = -1;
  GridSpec screened = exact;
  screened.owc_refine = 4;
  screened.owc_exact_cols = 16;
  const Grid ge = fit_grid(w, exact, &h), gs = fit_grid(w, screened, &h);
  const Grid gm = fit_grid(w, spec_of(3, 0, false), nullptr);
  double total_exact = 0, total_screened = 0;
  for (int64_t r = 0; r < w.rows; ++r) {
    const double se = group_score(w, ge, exact, h, r, 0, d_in);
    const double ss = group_score(w, gs, exact, h, r, 0, d_in);
    EXPECT_LE(ss, group_score(w, gm, exact, h, r, 0, d_in) * (1 + 1e-6));
    EXPECT_LE(se, ss * (1 + 1e-6));  // exact search is the optimum over the candidates
    total_exact += se;
    total_screened += ss;
  }
  EXPECT_LE(total_screened, 1.05 * total_exact);
}

TEST(ScaleSearch, GroupFitMatchesTheGridFit) {
  const Matrix w = random_weights(5, 70, 11);
  const Matrix h = correlated_hessian(70, 12);
  for (ScaleSearch search : {ScaleSearch::MinMax, ScaleSearch::Mse, ScaleSearch::Owc}) {
    const GridSpec spec = spec_of(3, 32, false, search);
    const Grid g = fit_grid(w, spec, &h);
    const int64_t c0 = 64, n = 6;  // the ragged last group
    Matrix hb(n, n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) hb(i, j) = h(c0 + i, c0 + j);
    for (int64_t r = 0; r < 5; ++r) {
      float s = 0.0f;
      int32_t z = 0;
      fit_group_params(w.row(r) + c0, n, spec, hb.data.data(), s, z);
      const float gs = g.scale[g.at(r, 2)];
      const int32_t gz = g.zero[g.at(r, 2)];
      if (search != ScaleSearch::Owc) {  // per-row scalar arithmetic in both: exact
        EXPECT_EQ(s, gs);
        EXPECT_EQ(z, gz);
        continue;
      }
      // OWC scores one row here but all rows in one BLAS product in fit_grid, whose kernels
      // sum in another order: a near-tie may pick the other candidate, never a worse one.
      const double a = owc_score(w.row(r) + c0, n, spec.maxq(), s, z, hb.data.data(), n);
      const double b = owc_score(w.row(r) + c0, n, spec.maxq(), gs, gz, hb.data.data(), n);
      EXPECT_NEAR(a, b, 4.0 * n * std::numeric_limits<float>::epsilon() * std::max(a, b))
          << "row " << r;
    }
  }
}

TEST(ScaleSearch, OwcMethodIsRtnOnTheOwcGrid) {
  const Matrix w = random_weights(8, 64, 13);
  const Matrix h = correlated_hessian(64, 14);
  SolverOptions opt;
  opt.grid = spec_of(3, 0, false);
  const SolveResult owc = solve_layer(w, h, parse_method("owc"), opt);
  const SolveResult rtn = solve_layer(w, h, parse_method("rtn"), opt);
  // per-channel: OWC minimises each row's own objective over candidates including min-max
  EXPECT_LE(owc.objective, rtn.objective);
  GridSpec s = opt.grid;
  s.search = ScaleSearch::Owc;
  EXPECT_EQ(owc.grid.scale, fit_grid(w, s, &h).scale);
}

TEST(ScaleSearch, BadInputIsRejected) {
  const Matrix w = random_weights(2, 8, 15);
  try {
    fit_grid(w, spec_of(4, 0, false, ScaleSearch::Owc), nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("needs the Hessian"));
  }
  EXPECT_THROW(fit_grid(w, spec_of(9, 0, false), nullptr), Error);
  EXPECT_THROW(parse_scale_search("best"), Error);
  EXPECT_EQ(parse_scale_search("owc"), ScaleSearch::Owc);
}

TEST(ScaleSearch, CandidateCountFollowsTheReferenceLoop) {
  GridSpec s = spec_of(4, 0, false, ScaleSearch::Mse);
  s.max_shrink = 0.8f;
  EXPECT_EQ(scale_candidates(s), 80);
  s.max_shrink = 0.7f;  // 0.7f * 100 = 69.99999 in float: still 70 as in Python
  EXPECT_EQ(scale_candidates(s), 70);
  s.max_shrink = 0.0f;
  EXPECT_EQ(scale_candidates(s), 1);
  s.search = ScaleSearch::MinMax;
  EXPECT_EQ(scale_candidates(s), 1);
}

}  // namespace
}  // namespace cdq
