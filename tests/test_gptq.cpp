// GPTQ against a straightforward unblocked reference, plus its guarantees and failure modes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/solver.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "quant/gptq.hpp"
#include "quant/hessian.hpp"
#include "quant/scale_search.hpp"
#include "support/gptq_reference.hpp"
#include "support/problems.hpp"

namespace cdq {
namespace {

using test::correlated_hessian;
using test::random_weights;
using ::testing::HasSubstr;

struct Case {
  std::string name;
  int bits = 4;
  int group = 0;
  bool sym = false;
  bool act_order = false;
  bool static_groups = false;
  int block = 128;
  int dead = 0;  // inputs with zero H row/column
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.name;
}

class GptqVsReference : public ::testing::TestWithParam<Case> {};

// The blocked solver works in float32 with lazy updates and U from J L^-1 J; the reference in
// double with eager updates and U from chol(inv(chol)). So every pre-rounding value differs by
// float rounding (~ n * eps * cond(H) relative). A code can differ only where that value lies
// within that distance of a rounding boundary, which is rare (well under 1% of entries at
// these sizes), and then the error feedback of later columns may flip a few more. Each flip
// moves an entry by one grid step where both neighbours were nearly equally good, so the
// objectives differ by a small multiple of the mismatch fraction: we allow
// |L - L_ref| / L_ref <= 1e-5 (float evaluation) + 4 * mismatch fraction.
TEST_P(GptqVsReference, AgreesWithUnblockedReference) {
  const Case& c = GetParam();
  const int64_t d_out = 24, d_in = 172;  // 172: no power-of-two group divides it
  const Matrix w = random_weights(d_out, d_in, 3);
  Matrix h = correlated_hessian(d_in, 4);
  for (int k = 0; k < c.dead; ++k) test::kill_input(h, 7 + 41 * k);

  SolverOptions opt;
  opt.grid.bits = c.bits;
  opt.grid.group_size = c.group;
  opt.grid.symmetric = c.sym;
  opt.act_order = c.act_order;
  opt.static_groups = c.static_groups;
  opt.gptq_block = c.block;
  const GptqResult got = gptq_quantize(w, h, opt);

  test::GptqReferenceOptions ro;
  ro.grid = opt.grid;
  ro.act_order = c.act_order;
  ro.static_groups = c.static_groups;
  ro.fit_block = c.block;
  const test::GptqReference ref = test::gptq_reference(w, h, ro);

  ASSERT_EQ(got.grid.n_groups, ref.n_groups);
  EXPECT_EQ(got.grid.g_idx, ref.g_idx);
  for (size_t k = 0; k < ref.scale.size(); ++k)
    EXPECT_NEAR(got.grid.scale[k], ref.scale[k], 1e-4 * std::abs(ref.scale[k])) << k;

  int64_t mismatches = 0;
  for (size_t k = 0; k < ref.codes.size(); ++k) mismatches += got.codes[k] != ref.codes[k];
  const double frac = static_cast<double>(mismatches) / static_cast<double>(ref.codes.size());
  EXPECT_LE(frac, 0.02) << mismatches << " codes differ";

  const Matrix q = dequantize(got.grid, got.codes);
  const double l_got = layer_objective(w, q, h);
  const double l_ref = layer_objective(w, ref.q, h);
  EXPECT_NEAR(l_got, l_ref, (1e-5 + 4.0 * frac) * l_ref) << "mismatch fraction " << frac;
}

INSTANTIATE_TEST_SUITE_P(
    Configs, GptqVsReference,
    ::testing::Values(Case{"perchannel_4bit_asym", 4, 0, false, false, false, 128},
                      Case{"perchannel_4bit_sym_block_divides", 4, 0, true, false, false, 43},
                      Case{"perchannel_2bit", 2, 0, false, false, false, 128},
                      Case{"perchannel_3bit_sym", 3, 0, true, false, false, 64},
                      Case{"perchannel_8bit", 8, 0, false, false, false, 128},
                      Case{"g32_groups_start_mid_block", 4, 32, false, false, false, 128},
                      Case{"g64_sym_groups_straddle_blocks", 4, 64, true, false, false, 43},
                      Case{"g128_small_blocks", 3, 128, false, false, false, 16},
                      Case{"g32_2bit", 2, 32, false, false, false, 128},
                      Case{"g32_8bit_sym", 8, 32, true, false, false, 128},
                      Case{"actorder_perchannel", 4, 0, false, true, false, 128},
                      Case{"actorder_dynamic_g32", 4, 32, false, true, false, 128},
                      Case{"actorder_dynamic_g64_block_divides", 3, 64, true, true, false, 43},
                      Case{"actorder_static_g64", 4, 64, false, true, true, 128},
                      Case{"static_g32_sym", 2, 32, true, false, true, 50},
                      Case{"dead_inputs_perchannel", 4, 0, false, false, false, 128, 3},
                      Case{"dead_inputs_actorder_g32", 3, 32, false, true, false, 64, 3},
                      Case{"dead_inputs_actorder_static", 4, 64, true, true, true, 128, 3}),
    [](const auto& info) { return info.param.name; });

SolverOptions options(int bits, int group) {
  SolverOptions opt;
  opt.grid.bits = bits;
  opt.grid.group_size = group;
  return opt;
}

TEST(Gptq, BeatsRtnOnCorrelatedH) {
  const Matrix w = random_weights(64, 128, 5);
  const Matrix h = correlated_hessian(128, 6);
  for (int bits : {2, 3, 4}) {
    for (int group : {0, 32}) {
      const SolverOptions opt = options(bits, group);
      const SolveResult rtn = solve_layer(w, h, parse_method("rtn"), opt);
      const SolveResult gptq = solve_layer(w, h, parse_method("gptq"), opt);
      EXPECT_LT(gptq.objective, rtn.objective) << bits << " bits, group " << group;
    }
  }
}

TEST(Gptq, ReportedObjectiveIsRecomputedFromQ) {
  const Matrix w = random_weights(16, 96, 7);
  const Matrix h = correlated_hessian(96, 8);
  SolverOptions opt = options(3, 32);
  opt.act_order = true;
  const SolveResult res = solve_layer(w, h, parse_method("gptq"), opt);
  // q is the grid's value of each code: value() is one multiply (and add) per weight, the
  // very operations dequantize must do, so equality is exact.
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c)
      ASSERT_EQ(res.q(r, c), res.grid.value(r, c, res.codes[static_cast<size_t>(r * w.cols + c)]))
          << r << "," << c;
  // The objectives against a plain double loop, independent of the BLAS path under test.
  // Bound: the float products carry <= n * eps_f relative error on each |e_i| |H_ij| |e_j|.
  const auto quadratic = [&](const Matrix& x, double& abs_sum) {
    double sum = 0.0;
    abs_sum = 0.0;
    for (int64_t r = 0; r < x.rows; ++r)
      for (int64_t i = 0; i < x.cols; ++i)
        for (int64_t j = 0; j < x.cols; ++j) {
          const double t = static_cast<double>(x(r, i)) * h(i, j) * x(r, j);
          sum += t;
          abs_sum += std::abs(t);
        }
    return sum;
  };
  Matrix e(w.rows, w.cols);
  for (int64_t i = 0; i < e.size(); ++i)
    e.data[static_cast<size_t>(i)] =
        res.q.data[static_cast<size_t>(i)] - w.data[static_cast<size_t>(i)];
  const double tol = static_cast<double>(w.cols) * std::numeric_limits<float>::epsilon();
  double abs_e = 0.0, abs_w = 0.0;
  const double want_objective = quadratic(e, abs_e);
  const double want_reference = quadratic(w, abs_w);
  EXPECT_NEAR(res.objective, want_objective, tol * abs_e);
  EXPECT_NEAR(res.reference, want_reference, tol * abs_w);
  EXPECT_GT(res.objective, 0.0);
  EXPECT_LT(res.objective, res.reference);
  EXPECT_TRUE(res.notes.empty());
}

TEST(Gptq, FixedGridGivesTheSameCodesAsItsOwnPerChannelFit) {
  // Per-channel GPTQ fits min-max on the original W, which is exactly fit_grid(W).
  const Matrix w = random_weights(12, 80, 9);
  const Matrix h = correlated_hessian(80, 10);
  SolverOptions opt = options(4, 0);
  const GptqResult own = gptq_quantize(w, h, opt);
  const Grid grid = fit_grid(w, opt.grid, nullptr);
  const GridConstraint kept = GridConstraint::kept(grid);
  opt.constraint = &kept;
  opt.grid.bits = 2;  // ignored with a fixed grid
  const GptqResult fixed = gptq_quantize(w, h, opt);
  EXPECT_EQ(fixed.grid.scale, grid.scale);
  EXPECT_EQ(fixed.codes, own.codes);
}

TEST(Gptq, ActOrderDynamicGroupsFollowThePermutation) {
  const Matrix w = random_weights(8, 100, 11);
  const Matrix h = correlated_hessian(100, 12);
  SolverOptions opt = options(4, 32);
  opt.act_order = true;
  const GptqResult res = gptq_quantize(w, h, opt);
  for (int64_t j = 0; j < 100; ++j)
    EXPECT_EQ(res.grid.g_idx[static_cast<size_t>(res.perm[static_cast<size_t>(j)])], j / 32);
  for (int64_t j = 1; j < 100; ++j)  // descending diag(H)
    EXPECT_GE(h(res.perm[j - 1], res.perm[j - 1]), h(res.perm[j], res.perm[j]));
}

TEST(Gptq, StaticGroupsUseTheGridOfTheOriginalW) {
  const Matrix w = random_weights(8, 100, 13);
  const Matrix h = correlated_hessian(100, 14);
  SolverOptions opt = options(3, 32);
  opt.act_order = true;
  opt.static_groups = true;
  const GptqResult res = gptq_quantize(w, h, opt);
  const Grid up_front = fit_grid(w, opt.grid, nullptr);
  EXPECT_EQ(res.grid.g_idx, up_front.g_idx);
  EXPECT_EQ(res.grid.scale, up_front.scale);
  EXPECT_EQ(res.grid.zero, up_front.zero);
}

TEST(Gptq, ScaleSearchesFitPerChannelUpFrontAndGroupsOnTheirColumns) {
  const int64_t d_in = 72, gs = 24;
  const Matrix w = random_weights(6, d_in, 24);
  const Matrix h = correlated_hessian(d_in, 25);
  for (ScaleSearch search : {ScaleSearch::Mse, ScaleSearch::Owc}) {
    SolverOptions opt = options(3, 0);
    opt.grid.search = search;
    const GptqResult pc = gptq_quantize(w, h, opt);
    EXPECT_EQ(pc.grid.scale, fit_grid(w, opt.grid, &h).scale);
    // act-order dynamic groups: the first group (positions 0..gs) is fitted before any update,
    // on the columns perm[0..gs) with H restricted to them in that order
    opt.grid.group_size = static_cast<int>(gs);
    opt.act_order = true;
    const GptqResult g = gptq_quantize(w, h, opt);
    Matrix hb(gs, gs);
    for (int64_t a = 0; a < gs; ++a)
      for (int64_t b = 0; b < gs; ++b) hb(a, b) = h(g.perm[a], g.perm[b]);
    for (int64_t r = 0; r < w.rows; ++r) {
      std::vector<float> vals(static_cast<size_t>(gs));
      for (int64_t a = 0; a < gs; ++a) vals[static_cast<size_t>(a)] = w(r, g.perm[a]);
      float s = 0.0f;
      int32_t z = 0;
      fit_group_params(vals.data(), gs, opt.grid, hb.data.data(), s, z);
      const float got_s = g.grid.scale[g.grid.at(r, 0)];
      const int32_t got_z = g.grid.zero[g.grid.at(r, 0)];
      if (search != ScaleSearch::Owc) {  // per-row scalar arithmetic in both: exact
        EXPECT_EQ(got_s, s);
        EXPECT_EQ(got_z, z);
        continue;
      }
      // OWC: GPTQ scores all rows in one BLAS product, this one row alone; the kernels sum in
      // another order, so a near-tie may pick the other candidate, never a worse one.
      const int maxq = opt.grid.maxq();
      const double a = owc_score(vals.data(), gs, maxq, s, z, hb.data.data(), gs);
      const double b = owc_score(vals.data(), gs, maxq, got_s, got_z, hb.data.data(), gs);
      EXPECT_NEAR(a, b, 4.0 * gs * std::numeric_limits<float>::epsilon() * std::max(a, b))
          << "row " << r;
    }
    EXPECT_TRUE(all_finite(dequantize(g.grid, g.codes).span()));
  }
}

TEST(Hessian, InverseCholeskyUpperFactorsTheInverse) {
  const int64_t n = 40;
  Matrix h = correlated_hessian(n, 15);
  test::kill_input(h, 5);
  PreparedHessian ph = prepare_hessian(h, 0.01);
  EXPECT_EQ(ph.dead_count(), 1);
  EXPECT_EQ(ph.h(5, 5), static_cast<float>(1.0 + ph.damp));
  const Matrix u = inverse_cholesky_upper(ph);
  // (U^T U) H = I
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      if (j < i) {
        EXPECT_EQ(u(i, j), 0.0f);
      }
      double s = 0.0;
      for (int64_t k = 0; k < n; ++k) {
        double hinv_ik = 0.0;
        for (int64_t t = 0; t <= std::min(i, k); ++t) hinv_ik += double(u(t, i)) * u(t, k);
        s += hinv_ik * ph.h(k, j);
      }
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-3) << i << "," << j;
    }
}

TEST(Gptq, RankDeficientHWithoutDampingEscalatesWithANote) {
  const Matrix w = random_weights(8, 64, 16);
  const Matrix h = test::low_rank_hessian(64, 8, 17);
  SolverOptions opt = options(4, 0);
  opt.percdamp = 0.0;
  const SolveResult res = solve_layer(w, h, parse_method("gptq"), opt);
  ASSERT_FALSE(res.notes.empty());
  EXPECT_THAT(res.notes[0], HasSubstr("H not positive definite at percdamp=0; retried with 0.01"));
  EXPECT_TRUE(std::isfinite(res.objective));
  EXPECT_TRUE(all_finite(res.q.span()));
}

TEST(Gptq, AllZeroHIsAllDeadAndFinite) {
  const Matrix w = random_weights(4, 20, 18);
  for (double damp : {0.0, 0.01}) {
    SolverOptions opt = options(3, 8);
    opt.percdamp = damp;
    const SolveResult res = solve_layer(w, Matrix(20, 20), parse_method("gptq"), opt);
    EXPECT_EQ(res.objective, 0.0);
    EXPECT_TRUE(all_finite(res.q.span()));
    for (float v : res.q.data) EXPECT_EQ(v, 0.0f);  // dead columns are zeroed, 0 is on the grid
  }
}

TEST(Gptq, IndefiniteHFailsWithAClearError) {
  Matrix h(2, 2);
  h(0, 0) = h(1, 1) = 1.0f;
  h(0, 1) = h(1, 0) = 1000.0f;  // eigenvalues -999 and 1001: no damping we try fixes it
  const Matrix w = random_weights(3, 2, 19);
  try {
    solve_layer(w, h, parse_method("gptq"), options(4, 0));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not positive definite even with damping"));
  }
}

TEST(Gptq, NanInputsAreRejected) {
  Matrix w = random_weights(4, 16, 20);
  Matrix h = correlated_hessian(16, 21);
  w(1, 3) = std::numeric_limits<float>::quiet_NaN();
  try {
    solve_layer(w, h, parse_method("gptq"), options(4, 0));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("W contains NaN"));
  }
  w(1, 3) = 0.5f;
  h(2, 2) = std::numeric_limits<float>::quiet_NaN();
  try {
    solve_layer(w, h, parse_method("gptq"), options(4, 0));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("H contains NaN"));
  }
}

TEST(Gptq, BadBlockSizeIsRejected) {
  const Matrix w = random_weights(4, 16, 22);
  SolverOptions opt = options(4, 0);
  opt.gptq_block = 0;
  EXPECT_THROW(solve_layer(w, correlated_hessian(16, 23), parse_method("gptq"), opt), Error);
}

}  // namespace
}  // namespace cdq
