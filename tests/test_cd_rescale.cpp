// The scale refit of the CD family (cd_rescale_rounds): refitted scales are optimal for their
// codes (checked in double precision against the closed form), the codes stay coordinate-wise
// optimal, the objective never rises, and the grid stays an integer grid formats can store.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/half.hpp>
#include <cdquant/solver.hpp>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "quant/cd.hpp"
#include "quant/ggml_quants.hpp"
#include "support/cd_checks.hpp"
#include "support/errors.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;
using namespace cdq::test;  // NOLINT: small_problem, damped, objective, ...

constexpr double kStopTol = 1e-4;  // as test_cd.cpp: relative gains CD may leave

// The largest relative decrease of one row's objective that refitting a single group's scale
// (codes and zero fixed) could still give: (v^T H e)^2 / (v^T H_GG v) over the row objective,
// v the group's values and e = Q - w.
double best_rescale_gain(const Matrix& w, const Matrix& h, const Grid& grid,
                         const std::vector<uint8_t>& codes) {
  const int64_t n = w.cols;
  double worst = 0.0;
  for (int64_t r = 0; r < w.rows; ++r) {
    std::vector<double> e(static_cast<size_t>(n)), he(static_cast<size_t>(n), 0.0);
    for (int64_t j = 0; j < n; ++j) e[j] = grid.value(r, j, codes[r * n + j]) - w(r, j);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) he[i] += h(i, j) * e[j];
    const double f = row_objective(w, h, grid, codes, r);
    for (int g = 0; g < grid.n_groups; ++g) {
      double vg = 0.0, vhv = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        if (grid.group_of(i) != g) continue;
        const double vi = grid.value(r, i, codes[r * n + i]);
        vg += vi * he[i];
        for (int64_t j = 0; j < n; ++j)
          if (grid.group_of(j) == g) vhv += vi * h(i, j) * grid.value(r, j, codes[r * n + j]);
      }
      if (vhv > 0.0) worst = std::max(worst, vg * vg / vhv / f);
    }
  }
  return worst;
}

TEST(CdRescale, ScalesAndCodesEndJointlyOptimalAndTheObjectiveNeverRises) {
  const GridConfig configs[] = {
      {2, 0, false, false, 8}, {3, 0, false, true, 10}, {3, 0, true, false, 10},
      {4, 4, false, true, 12}, {3, 5, true, true, 12},  {2, 4, false, false, 10},
  };
  for (const GridConfig& cf : configs) {
    for (uint64_t seed = 1; seed <= 3; ++seed) {
      const LayerProblem p = small_problem(6, cf.d_in, seed);
      SolverOptions opt = cf.options();
      opt.cd_rescale_rounds = 50;  // enough to converge: ends on a refit that moved nothing
      const std::string ctx = fmt::format("{} seed={}", cf.name(), seed);
      const SolveResult gq = solve_layer(p.w, p.h, parse_method("gptq"), opt);
      const SolveResult r = solve_layer(p.w, p.h, parse_method("cd"), opt);
      const Matrix h = damped(p.h, opt.percdamp);
      const double f_gptq = objective(p.w, h, gq.grid, gq.codes);
      const double f = objective(p.w, h, r.grid, r.codes);

      ASSERT_TRUE(r.grid.is_integer_grid()) << ctx;
      EXPECT_EQ(r.grid.g_idx, gq.grid.g_idx) << ctx;
      for (size_t k = 0; k < r.grid.scale.size(); ++k) {
        EXPECT_GT(r.grid.scale[k], 0.0f) << ctx;
        EXPECT_EQ(r.grid.bias[k], -r.grid.scale[k] * static_cast<float>(r.grid.zero[k])) << ctx;
        EXPECT_GE(r.grid.zero[k], 0) << ctx;
        EXPECT_LE(r.grid.zero[k], r.grid.maxq) << ctx;
        // Zero points move only on per-channel asymmetric rows, by one step at most.
        const int moved = std::abs(r.grid.zero[k] - gq.grid.zero[k]);
        EXPECT_LE(moved, cf.sym || cf.group > 0 ? 0 : 1) << ctx;
      }
      for (int64_t i = 0; i < p.w.size(); ++i)
        ASSERT_EQ(r.q.data[i], r.grid.value(i / p.w.cols, i % p.w.cols, r.codes[i])) << ctx;

      EXPECT_LE(f, f_gptq * (1 + 1e-12)) << ctx;
      EXPECT_LE(r.objective, gq.objective * (1 + 1e-9)) << ctx;
      ASSERT_GE(r.convergence.size(), 2u) << ctx;
      EXPECT_NEAR(r.convergence.front(), f_gptq, 1e-5 * f_gptq) << ctx;
      EXPECT_NEAR(r.convergence.back(), f, 1e-5 * f) << ctx;
      for (size_t k = 1; k < r.convergence.size(); ++k)
        EXPECT_LE(r.convergence[k], r.convergence[k - 1]) << ctx;
      EXPECT_LE(best_rescale_gain(p.w, h, r.grid, r.codes), kStopTol) << ctx;
      EXPECT_LE(best_single_gain(p.w, h, r.grid, r.codes), kStopTol) << ctx;
    }
  }
}

TEST(CdRescale, LowersTheObjectiveBelowCodesOnlyCd) {
  const LayerProblem p = make_synthetic_problem(32, 96, SyntheticOptions{});
  for (bool sym : {false, true}) {
    for (int group : {0, 32}) {
      SolverOptions opt;
      opt.grid.bits = 3;
      opt.grid.symmetric = sym;
      opt.grid.group_size = group;
      opt.act_order = true;
      opt.cd_rescale_rounds = 0;
      const SolveResult codes_only = solve_layer(p.w, p.h, parse_method("cd"), opt);
      opt.cd_rescale_rounds = 4;
      const SolveResult rescaled = solve_layer(p.w, p.h, parse_method("cd"), opt);
      EXPECT_LT(rescaled.objective, codes_only.objective) << "sym=" << sym << " group=" << group;
      EXPECT_NE(rescaled.grid.scale, codes_only.grid.scale);
    }
  }
}

TEST(CdRescale, Fp16ScalesStayRepresentable) {
  const LayerProblem p = small_problem(8, 24, 5);
  SolverOptions opt;
  opt.grid.bits = 3;
  opt.grid.group_size = 8;
  opt.grid.fp16_scales = true;
  const SolveResult r = solve_layer(p.w, p.h, parse_method("bcd"), opt);
  for (float s : r.grid.scale) EXPECT_EQ(s, fp16_to_float(float_to_fp16(s)));
  EXPECT_LE(r.objective, solve_layer(p.w, p.h, parse_method("gptq"), opt).objective);
}

TEST(CdRescale, CyclicRefitsToo) {
  const LayerProblem p = small_problem(6, 16, 2);
  SolverOptions opt;
  opt.grid.bits = 2;
  opt.cd_rescale_rounds = 0;
  const SolveResult plain = solve_layer(p.w, p.h, parse_method("cyclic"), opt);
  opt.cd_rescale_rounds = 4;
  const SolveResult refit = solve_layer(p.w, p.h, parse_method("cyclic"), opt);
  EXPECT_LT(refit.objective, plain.objective);
}

// Every ggml type stores its block scale d as a free fp16 multiplier of integer sub-scales (1
// for the 32-weight types; Q4_0/Q5_0's d is often negative: the rule divides the signed extreme
// by -8 or -16). Refitting d lowers the objective, moving the K-quants' sub-scales within their
// bit fields lowers it further; zero points and biases stay, and the file's bytes decode to
// exactly the solver's weights.
TEST(CdRescale, RefitsTheBlockScalesOfEveryGgmlType) {
  const LayerProblem p = make_synthetic_problem(16, 256, SyntheticOptions{});
  for (const GgmlTypeTraits& tr : ggml_all_types()) {
    if (!tr.quantized()) continue;
    SCOPED_TRACE(tr.name);
    QuantizedBlocks qb = choose_block_scales(p.w, tr.type, nullptr);
    const Grid grid = qb.to_grid();
    const std::vector<int16_t> sub = qb.group_sub_scales();
    SolverOptions opt;
    GridConstraint constraint = GridConstraint::kept(grid);
    opt.constraint = &constraint;
    const SolveResult codes_only = solve_layer(p.w, p.h, parse_method("cd"), opt);
    EXPECT_EQ(codes_only.grid.scale, grid.scale);
    constraint =
        GridConstraint::ggml_block(grid, sub, static_cast<int>(qb.groups_per_block()), 1, 1);
    const SolveResult d_only = solve_layer(p.w, p.h, parse_method("cd"), opt);
    const SubScaleRange range = ggml_sub_scale_range(tr.type);
    constraint.sub_lo = range.lo;
    constraint.sub_hi = range.hi;
    const SolveResult refit = solve_layer(p.w, p.h, parse_method("cd"), opt);
    EXPECT_LT(d_only.objective, codes_only.objective);
    EXPECT_EQ(d_only.sub_scale, sub);
    ASSERT_EQ(refit.sub_scale.size(), sub.size());
    if (range.lo < range.hi) {  // K-quants, IQ4_XS: the sub-scales move too, within their fields
      EXPECT_LE(refit.objective, d_only.objective);
      // One sub-scale step is 1.5-3% of a group's scale: coarse against the optimal moves at 5
      // bits (Q5_K moved none here), not at 2-4 bits or with Q6_K's 8-bit sub-scales.
      if (tr.type != GgmlType::Q5_K) {
        EXPECT_LT(refit.objective, d_only.objective);
        EXPECT_NE(refit.sub_scale, sub);
      }
      for (int16_t v : refit.sub_scale) {
        EXPECT_GE(v, range.lo);
        EXPECT_LE(v, range.hi);
      }
    } else {
      EXPECT_EQ(refit.objective, d_only.objective);
    }
    EXPECT_EQ(refit.grid.zero, grid.zero);
    if (!grid.is_integer_grid()) {
      EXPECT_EQ(refit.grid.bias, grid.bias);
    }
    int moved_negative = 0;
    for (size_t k = 0; k < grid.scale.size(); ++k) {
      const float s = refit.grid.scale[k];
      EXPECT_EQ(s > 0.0f, grid.scale[k] > 0.0f);
      moved_negative += grid.scale[k] < 0.0f && s != grid.scale[k];
    }
    if (tr.type == GgmlType::Q4_0 || tr.type == GgmlType::Q5_0) {
      EXPECT_GT(moved_negative, 0);
    }
    qb.take_scales(refit.grid, refit.sub_scale);  // throws unless scale = fp16 d * sub everywhere
    const Matrix back = dequantize_tensor(tr.type, pack_codes(qb, refit.codes), 16, 256);
    // ggml's decoder and Grid::value are two code paths (the compiler may fuse a multiply-add
    // in one of them): equal to one rounding of each term, d * sub * q and the min.
    ASSERT_EQ(back.data.size(), refit.q.data.size());
    for (int64_t r = 0; r < back.rows; ++r)
      for (int64_t c = 0; c < back.cols; ++c) {
        const size_t k = refit.grid.at(r, refit.grid.group_of(c));
        const int code = refit.codes[static_cast<size_t>(r * back.cols + c)];
        const float q =
            grid.is_codebook() ? grid.levels[static_cast<size_t>(code)] : static_cast<float>(code);
        const float bound = 2 * std::numeric_limits<float>::epsilon() *
                            (std::abs(refit.grid.scale[k] * q) + std::abs(refit.grid.bias[k]));
        ASSERT_NEAR(back(r, c), refit.q(r, c), bound) << tr.name << " " << r << "," << c;
      }
  }
}

TEST(CdRescale, RefusesAScaleBiasGridWithoutSubScales) {
  const LayerProblem p = small_problem(2, 8, 1);
  Grid grid = minmax_grid(p.w, 2);
  grid.zero.clear();  // scale/bias only, as ggml's Q4_1 or Q4_K grids
  std::vector<uint8_t> codes = round_to_grid(grid, p.w);
  CdOptions opt;
  opt.rescale_rounds = 1;
  EXPECT_THAT(error_of([&] { refine_codes(p.w, damped(p.h), grid, codes, opt); }),
              HasSubstr("uniform integer grid"));
}

}  // namespace
}  // namespace cdq
