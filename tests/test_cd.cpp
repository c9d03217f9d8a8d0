// Coordinate descent (greedy CD, BCD, cyclic): optimality checked by brute force on problems
// small enough to enumerate, monotone objectives, and agreement with the reported figures.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cdquant/solver.hpp>
#include <cdquant/synthetic.hpp>
#include <cmath>
#include <cstdio>

#include "quant/cd.hpp"
#include "quant/hessian.hpp"
#include "support/cd_checks.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;
using namespace cdq::test;  // NOLINT: small_problem, damped, objective, ...

// The tolerance CD stops at: a move must gain more than tol_rel of the row's start objective;
// starting objectives are within a factor ~10 of the final ones on these problems.
constexpr double kStopTol = 1e-4;

TEST(CdGreedy, StopsAtACoordinatewiseOptimum) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    for (int64_t d_in : {5, 8}) {
      const LayerProblem p = small_problem(4, d_in, seed);
      const Matrix h = damped(p.h);
      Grid grid = minmax_grid(p.w, 2);
      std::vector<uint8_t> codes = round_to_grid(grid, p.w);
      CdOptions opt;
      opt.budget = 100.0;
      const CdStats st = refine_codes(p.w, h, grid, codes, opt);
      EXPECT_LE(best_single_gain(p.w, h, grid, codes), kStopTol) << seed << " " << d_in;
      EXPECT_NEAR(st.final_objective, objective(p.w, h, grid, codes), 1e-5 * st.start_objective);
    }
  }
}

TEST(CdGreedy, MovesAndImprovesFromRtn) {
  const LayerProblem p = small_problem(16, 8, 3);
  const Matrix h = damped(p.h);
  Grid grid = minmax_grid(p.w, 2);
  std::vector<uint8_t> codes = round_to_grid(grid, p.w);
  const double f0 = objective(p.w, h, grid, codes);
  const CdStats st = refine_codes(p.w, h, grid, codes, CdOptions{});
  EXPECT_GT(st.moves_per_row, 0.0);
  EXPECT_LT(objective(p.w, h, grid, codes), f0);
  EXPECT_NEAR(st.start_objective, f0, 1e-5 * f0);
}

// Every accepted move is the best single move (checked against all grid values of all
// coordinates) and lowers the exact objective by the amount reported.
TEST(CdGreedy, EveryStepIsTheBestSingleMoveAndLowersTheObjective) {
  // d_in = 21: several coordinates per SIMD lane, and a ragged tail.
  const LayerProblem p = small_problem(4, 21, 11);
  const Matrix h = damped(p.h);
  Grid grid = minmax_grid(p.w, 2);
  std::vector<uint8_t> codes = round_to_grid(grid, p.w);
  std::vector<uint8_t> mirror = codes;
  int steps = 0;
  const CdObserver obs = [&](const CdMove& mv) {
    ASSERT_EQ(mv.size, 1);
    const int64_t n = p.w.cols;
    const double f0 = row_objective(p.w, h, grid, mirror, mv.row);
    double best = 0.0;
    for (int64_t j = 0; j < n; ++j)
      for (int q = 0; q <= grid.maxq; ++q) {
        std::vector<uint8_t> c = mirror;
        c[mv.row * n + j] = static_cast<uint8_t>(q);
        best = std::max(best, f0 - row_objective(p.w, h, grid, c, mv.row));
      }
    ASSERT_EQ(mirror[mv.row * n + mv.coord[0]], mv.from[0]);
    mirror[mv.row * n + mv.coord[0]] = static_cast<uint8_t>(mv.to[0]);
    const double f1 = row_objective(p.w, h, grid, mirror, mv.row);
    EXPECT_LT(f1, f0);
    EXPECT_NEAR(f0 - f1, mv.decrease, 1e-5 * f0);
    EXPECT_NEAR(f0 - f1, best, 1e-5 * f0);
    ++steps;
  };
  CdOptions opt;
  opt.budget = 10.0;
  refine_codes(p.w, h, grid, codes, opt, &obs);
  EXPECT_GT(steps, 0);
  EXPECT_EQ(mirror, codes);
}

TEST(CdCyclic, StopsAtACoordinatewiseOptimumAndEveryMoveLowersTheObjective) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    const LayerProblem p = small_problem(4, 8, seed);
    const Matrix h = damped(p.h);
    Grid grid = minmax_grid(p.w, 2);
    std::vector<uint8_t> codes = round_to_grid(grid, p.w);
    std::vector<uint8_t> mirror = codes;
    const CdObserver obs = [&](const CdMove& mv) {
      const int64_t n = p.w.cols;
      const double f0 = row_objective(p.w, h, grid, mirror, mv.row);
      mirror[mv.row * n + mv.coord[0]] = static_cast<uint8_t>(mv.to[0]);
      const double f1 = row_objective(p.w, h, grid, mirror, mv.row);
      EXPECT_LT(f1, f0);
      EXPECT_NEAR(f0 - f1, mv.decrease, 1e-5 * f0);
    };
    CdOptions opt;
    opt.kind = CdKind::Cyclic;
    opt.sweeps = 100;
    const CdStats st = refine_codes(p.w, h, grid, codes, opt, &obs);
    EXPECT_EQ(mirror, codes);
    EXPECT_LE(best_single_gain(p.w, h, grid, codes), kStopTol) << seed;
    for (size_t k = 1; k < st.convergence.size(); ++k)
      EXPECT_LE(st.convergence[k], st.convergence[k - 1]);
  }
}

// The candidate set of a block: floor and ceiling of each member's joint continuous optimum.
std::vector<std::vector<int>> block_candidates(const Matrix& w, const Matrix& h, const Grid& grid,
                                               const std::vector<uint8_t>& codes, int64_t r,
                                               const std::vector<int64_t>& block) {
  const int64_t n = w.cols;
  const int k = static_cast<int>(block.size());
  std::vector<double> g(static_cast<size_t>(k), 0.0);
  for (int m = 0; m < k; ++m)
    for (int64_t j = 0; j < n; ++j)
      g[m] += h(block[m], j) * (grid.value(r, j, codes[r * n + j]) - w(r, j));
  // Solve H_B d = -g by Gaussian elimination (k <= 4).
  std::vector<double> a(static_cast<size_t>(k * (k + 1)));
  for (int x = 0; x < k; ++x) {
    for (int y = 0; y < k; ++y) a[x * (k + 1) + y] = h(block[x], block[y]);
    a[x * (k + 1) + k] = -g[x];
  }
  for (int p = 0; p < k; ++p)
    for (int x = 0; x < k; ++x) {
      if (x == p) continue;
      const double f = a[x * (k + 1) + p] / a[p * (k + 1) + p];
      for (int y = 0; y <= k; ++y) a[x * (k + 1) + y] -= f * a[p * (k + 1) + y];
    }
  std::vector<std::vector<int>> opts(static_cast<size_t>(k));
  for (int m = 0; m < k; ++m) {
    const double d = a[m * (k + 1) + k] / a[m * (k + 1) + m];
    const double s = grid.scale[grid.at(r, grid.group_of(block[m]))];
    const double x = codes[r * n + block[m]] + d / s;
    for (double v : {std::floor(x), std::ceil(x)})
      opts[m].push_back(static_cast<int>(std::clamp(v, 0.0, static_cast<double>(grid.maxq))));
  }
  std::vector<std::vector<int>> out;
  for (int combo = 0; combo < (1 << k); ++combo) {
    std::vector<int> c(static_cast<size_t>(k));
    for (int m = 0; m < k; ++m) c[m] = opts[m][(combo >> m) & 1];
    out.push_back(c);
  }
  return out;
}

TEST(CdBlock, AcceptedBlockMovesAreOptimalOverTheirCandidates) {
  for (int k : {2, 3}) {
    int block_moves = 0;
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      const LayerProblem p = small_problem(6, 19, seed);
      const Matrix h = damped(p.h);
      Grid grid = minmax_grid(p.w, 2);
      std::vector<uint8_t> codes = round_to_grid(grid, p.w);
      std::vector<uint8_t> mirror = codes;
      const int64_t n = p.w.cols;
      const std::vector<int32_t> partners = bcd_partners(h, k);
      const CdObserver obs = [&](const CdMove& mv) {
        const double f0 = row_objective(p.w, h, grid, mirror, mv.row);
        // No single move beats the accepted one (singles are candidates too).
        double best_single = 0.0;
        for (int64_t j = 0; j < n; ++j)
          for (int q = 0; q <= grid.maxq; ++q) {
            std::vector<uint8_t> c = mirror;
            c[mv.row * n + j] = static_cast<uint8_t>(q);
            best_single = std::max(best_single, f0 - row_objective(p.w, h, grid, c, mv.row));
          }
        // ... and no block does either: the bound-pruned search found the best block.
        double best_block = 0.0;
        for (int64_t seed_i = 0; seed_i < n; ++seed_i) {
          std::vector<int64_t> block{seed_i};
          for (int m = 1; m < k; ++m) block.push_back(partners[seed_i * (k - 1) + m - 1]);
          for (const auto& cand : block_candidates(p.w, h, grid, mirror, mv.row, block)) {
            std::vector<uint8_t> c = mirror;
            for (int m = 0; m < k; ++m) c[mv.row * n + block[m]] = static_cast<uint8_t>(cand[m]);
            best_block = std::max(best_block, f0 - row_objective(p.w, h, grid, c, mv.row));
          }
        }
        EXPECT_GE(mv.decrease, best_block - 1e-5 * f0);
        if (mv.size > 1) {
          ++block_moves;
          ASSERT_EQ(mv.size, k);
          std::vector<int64_t> block(mv.coord, mv.coord + k);
          for (int m = 1; m < k; ++m)  // the block is a seed and its partners
            EXPECT_EQ(block[m], partners[block[0] * (k - 1) + m - 1]);
          bool found = false;
          double best = -1e300;
          for (const auto& cand : block_candidates(p.w, h, grid, mirror, mv.row, block)) {
            std::vector<uint8_t> c = mirror;
            bool same = true;
            for (int m = 0; m < k; ++m) {
              c[mv.row * n + block[m]] = static_cast<uint8_t>(cand[m]);
              same = same && cand[m] == mv.to[m];
            }
            found = found || same;
            best = std::max(best, f0 - row_objective(p.w, h, grid, c, mv.row));
          }
          EXPECT_TRUE(found) << "accepted move is not a candidate of its block";
          EXPECT_NEAR(mv.decrease, best, 1e-5 * f0);
        }
        for (int m = 0; m < mv.size; ++m) {
          ASSERT_EQ(mirror[mv.row * n + mv.coord[m]], mv.from[m]);
          mirror[mv.row * n + mv.coord[m]] = static_cast<uint8_t>(mv.to[m]);
        }
        const double f1 = row_objective(p.w, h, grid, mirror, mv.row);
        EXPECT_LT(f1, f0);
        EXPECT_NEAR(f0 - f1, mv.decrease, 1e-5 * f0);
        EXPECT_GE(mv.decrease, best_single - 1e-5 * f0);
      };
      CdOptions opt;
      opt.kind = CdKind::Block;
      opt.block = k;
      opt.budget = 100.0;
      const CdStats st = refine_codes(p.w, h, grid, codes, opt, &obs);
      EXPECT_EQ(mirror, codes);
      EXPECT_LE(best_single_gain(p.w, h, grid, codes), kStopTol);
      for (size_t q = 1; q < st.convergence.size(); ++q)
        EXPECT_LE(st.convergence[q], st.convergence[q - 1]);
    }
    EXPECT_GT(block_moves, 3) << "k = " << k << ": too few block moves to test";
    std::printf("k = %d: %d block moves checked\n", k, block_moves);
  }
}

TEST(CdBlock, PartnersAreTheMostCorrelatedCoordinates) {
  const LayerProblem p = small_problem(2, 12, 5);
  const Matrix& h = p.h;
  const std::vector<int32_t> part = bcd_partners(h, 3);
  for (int64_t i = 0; i < h.rows; ++i) {
    std::vector<std::pair<double, int64_t>> corr;
    for (int64_t j = 0; j < h.rows; ++j)
      if (j != i) corr.push_back({-std::abs(h(i, j)) / std::sqrt(h(i, i) * h(j, j)), j});
    std::sort(corr.begin(), corr.end());
    EXPECT_EQ(part[i * 2], corr[0].second);
    EXPECT_EQ(part[i * 2 + 1], corr[1].second);
  }
}

// The CD family through solve_layer from GPTQ starts, on several grid layouts.
TEST(CdFamily, FromGptqNeverWorseAndReportsConsistently) {
  const GridConfig configs[] = {
      {2, 0, false, false, 8}, {3, 0, false, true, 8},  {4, 16, false, false, 40},
      {3, 16, true, true, 40}, {8, 0, true, false, 12}, {2, 8, false, true, 24},
  };
  for (const GridConfig& cf : configs) {
    for (uint64_t seed = 1; seed <= 3; ++seed) {
      const LayerProblem p = small_problem(6, cf.d_in, seed);
      SolverOptions opt = cf.options();
      opt.cd_rescale_rounds = 0;  // codes only: the scale refit has its own tests
      const SolveResult gq = solve_layer(p.w, p.h, parse_method("gptq"), opt);
      const Matrix h = damped(p.h, opt.percdamp);
      const double f_gptq = objective(p.w, h, gq.grid, gq.codes);
      for (Method m : {parse_method("cd"), parse_method("bcd"), parse_method("cyclic")}) {
        const SolveResult r = solve_layer(p.w, p.h, m, opt);
        const std::string ctx = fmt::format("{} {} seed={}", m.name(), cf.name(), seed);
        // Same grid as the GPTQ start, codes on it.
        EXPECT_EQ(r.grid.scale, gq.grid.scale) << ctx;
        EXPECT_EQ(r.grid.g_idx, gq.grid.g_idx) << ctx;
        for (uint8_t c : r.codes) ASSERT_LE(c, r.grid.maxq) << ctx;
        const double f = objective(p.w, h, r.grid, r.codes);
        EXPECT_LE(f, f_gptq * (1 + 1e-12)) << ctx;
        EXPECT_LE(r.objective, gq.objective * (1 + 1e-9)) << ctx;  // undamped, these seeds
        EXPECT_NEAR(r.objective, layer_objective(p.w, dequantize(r.grid, r.codes), p.h),
                    1e-9 * r.objective)
            << ctx;
        ASSERT_GE(r.convergence.size(), 2u) << ctx;
        EXPECT_NEAR(r.convergence.front(), f_gptq, 1e-5 * f_gptq) << ctx;
        EXPECT_NEAR(r.convergence.back(), f, 1e-5 * f) << ctx;
        for (size_t k = 1; k < r.convergence.size(); ++k)
          EXPECT_LE(r.convergence[k], r.convergence[k - 1]) << ctx;
        EXPECT_GE(r.seconds, r.seconds_refine) << ctx;
        if (cf.d_in <= 12) {
          EXPECT_LE(best_single_gain(p.w, h, r.grid, r.codes), kStopTol) << ctx;
        }
      }
    }
  }
}

TEST(CdFamily, StaysOnAFixedGrid) {
  const LayerProblem p = small_problem(5, 16, 7);
  Grid fixed = minmax_grid(p.w, 3, 8);
  for (float& s : fixed.scale) s *= 0.8f;  // not what any solver would fit itself
  for (size_t k = 0; k < fixed.bias.size(); ++k)
    fixed.bias[k] = -fixed.scale[k] * static_cast<float>(fixed.zero[k]);
  SolverOptions opt;
  opt.grid.bits = 3;
  const GridConstraint kept = GridConstraint::kept(fixed);
  opt.constraint = &kept;
  for (Method init : {parse_method("rtn"), parse_method("gptq")}) {
    opt.cd_init = init;
    for (Method m : {parse_method("cd"), parse_method("bcd"), parse_method("cyclic")}) {
      const SolveResult r = solve_layer(p.w, p.h, m, opt);
      EXPECT_EQ(r.grid.scale, fixed.scale);
      EXPECT_EQ(r.grid.zero, fixed.zero);
      for (int64_t i = 0; i < p.w.size(); ++i) {
        ASSERT_LE(r.codes[i], fixed.maxq);
        EXPECT_EQ(r.q.data[i], fixed.value(i / p.w.cols, i % p.w.cols, r.codes[i]));
      }
      const SolveResult rtn = solve_layer(p.w, p.h, parse_method("rtn"), opt);
      EXPECT_LT(r.objective, rtn.objective);
    }
  }
}

TEST(CdFamily, FromRtnImprovesAndOwcVariantsRun) {
  const LayerProblem p = small_problem(8, 32, 2);
  SolverOptions opt;
  opt.grid.bits = 3;
  opt.cd_init = parse_method("rtn");
  opt.cd_rescale_rounds = 0;
  const SolveResult rtn = solve_layer(p.w, p.h, parse_method("rtn"), opt);
  const SolveResult cd = solve_layer(p.w, p.h, parse_method("cd"), opt);
  EXPECT_LT(cd.objective, rtn.objective);
  EXPECT_GT(cd.moves_per_row, 0.0);
  const SolveResult owc = solve_layer(p.w, p.h, parse_method("owc"), opt);
  for (Method m : {parse_method("owc-cd"), parse_method("owc-bcd")}) {
    const SolveResult r = solve_layer(p.w, p.h, m, opt);
    EXPECT_EQ(r.grid.scale, owc.grid.scale);
    EXPECT_LE(r.objective, owc.objective);
  }
}

TEST(CdFamily, DeadInputsAreHandled) {
  LayerProblem p = small_problem(4, 10, 3);
  for (int64_t j = 0; j < p.h.rows; ++j) p.h(3, j) = p.h(j, 3) = 0.0f;  // input 3 never fires
  SolverOptions opt;
  opt.grid.bits = 2;
  opt.cd_init = parse_method("rtn");
  for (Method m : {parse_method("cd"), parse_method("bcd"), parse_method("cyclic")}) {
    const SolveResult r = solve_layer(p.w, p.h, m, opt);
    EXPECT_TRUE(std::isfinite(r.objective));
    EXPECT_LE(r.objective, solve_layer(p.w, p.h, parse_method("rtn"), opt).objective);
  }
}

TEST(CdFamily, BudgetLimitsTheMoves) {
  const LayerProblem p = small_problem(6, 16, 4);
  SolverOptions opt;
  opt.grid.bits = 2;
  opt.cd_init = parse_method("rtn");
  opt.cd_budget = 0.125;  // 2 steps per row
  opt.cd_rescale_rounds = 0;
  const SolveResult r = solve_layer(p.w, p.h, parse_method("cd"), opt);
  EXPECT_LE(r.moves_per_row, 2.0);
  EXPECT_GT(r.moves_per_row, 0.0);
  opt.cd_budget = 0.0;
  const SolveResult none = solve_layer(p.w, p.h, parse_method("cd"), opt);
  EXPECT_EQ(none.moves_per_row, 0.0);
  EXPECT_EQ(none.codes, solve_layer(p.w, p.h, parse_method("rtn"), opt).codes);
}

TEST(CdFamily, RejectsBadOptions) {
  const LayerProblem p = small_problem(2, 8, 1);
  SolverOptions opt;
  opt.bcd_block = 5;
  try {
    solve_layer(p.w, p.h, parse_method("bcd"), opt);
    FAIL() << "block size 5 accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("BCD block size"));
  }
  opt = SolverOptions{};
  opt.cd_budget = -1.0;
  try {
    solve_layer(p.w, p.h, parse_method("cd"), opt);
    FAIL() << "negative budget accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cd_budget"));
  }
  opt = SolverOptions{};
  opt.cd_init = parse_method("cd");
  try {
    solve_layer(p.w, p.h, parse_method("cd"), opt);
    FAIL() << "cd_init = cd accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cd_init"));
  }
}

}  // namespace
}  // namespace cdq
