// Codebook grids (Grid::levels): value = scale * levels[q] + bias with non-uniform levels.
// The grid operations, GPTQ and the CD family on them: brute force on problems small enough to
// enumerate, agreement with the affine path on evenly spaced levels, and the data-aware HIGGS
// problem (the Lloyd-Max codebook in the rotated basis).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/method.hpp>
#include <cdquant/solver.hpp>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>

#include "quant/cd.hpp"
#include "quant/higgs.hpp"
#include "support/cd_checks.hpp"
#include "support/problems.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;
using namespace cdq::test;  // NOLINT: small_problem, damped, objective, ...

// A move must gain more than tol_rel of the row's start objective (CdOptions::tol_rel); the
// starting objectives are within a factor ~10 of the final ones on these problems.
constexpr double kStopTol = 1e-4;

// Codebook grid of W: per (row, group) scale max|w| / max|level|, bias 0.
Grid codebook_grid(const Matrix& w, std::vector<float> levels, int group = 0) {
  Grid g = make_grid_layout(w.rows, w.cols, group, 0);
  float top = 0.0f;
  for (float l : levels) top = std::max(top, std::abs(l));
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c) {
      float& s = g.scale[g.at(r, g.group_of(c))];
      s = std::max(s, std::abs(w(r, c)) / top);
    }
  set_codebook(g, std::move(levels));
  return g;
}

const std::vector<float> kThree = {-1.0f, 0.15f, 0.8f};
const std::vector<float> kFour = {-1.0f, -0.2f, 0.1f, 0.9f};
// llama.cpp's IQ4_NL table (kvalues_iq4nl), the non-uniform 4-bit codebook of IQ4_NL / IQ4_XS.
const std::vector<float> kIq4nl = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

TEST(CodebookGrid, NearestLevelIsTheClosestTiesToTheLower) {
  const float lv[] = {-2.0f, -0.5f, 0.0f, 1.0f};
  EXPECT_EQ(nearest_level(lv, 4, -5.0f), 0);
  EXPECT_EQ(nearest_level(lv, 4, 7.0f), 3);
  EXPECT_EQ(nearest_level(lv, 4, -1.25f), 0);  // tie between -2 and -0.5: the lower
  EXPECT_EQ(nearest_level(lv, 4, -1.2f), 1);
  EXPECT_EQ(nearest_level(lv, 4, 0.5f), 2);  // tie between 0 and 1
  EXPECT_EQ(nearest_level(lv, 4, 0.0f), 2);
  EXPECT_EQ(nearest_level(lv, 4, 0.51f), 3);
  for (float x = -3.0f; x <= 3.0f; x += 0.01f) {
    const int k = nearest_level(lv, 4, x);
    for (int j = 0; j < 4; ++j) EXPECT_LE(std::abs(lv[k] - x), std::abs(lv[j] - x)) << x;
  }
}

TEST(CodebookGrid, ValueNearestRoundAndDequantize) {
  const Matrix w = random_weights(3, 40, 7);
  Grid g = codebook_grid(w, kIq4nl, 16);
  g.bias[g.at(1, 0)] = 0.25f;  // a bias shifts the levels
  EXPECT_TRUE(g.is_codebook());
  EXPECT_FALSE(g.is_integer_grid());
  EXPECT_EQ(g.maxq, 15);
  const std::vector<uint8_t> codes = round_to_grid(g, w);
  const Matrix q = dequantize(g, codes);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c) {
      const int k = codes[static_cast<size_t>(r * w.cols + c)];
      const size_t gk = g.at(r, g.group_of(c));
      EXPECT_EQ(q(r, c), g.scale[gk] * kIq4nl[static_cast<size_t>(k)] + g.bias[gk]);
      for (int j = 0; j <= g.maxq; ++j)
        EXPECT_LE(std::abs(q(r, c) - w(r, c)), std::abs(g.value(r, c, j) - w(r, c)) + 1e-6f);
    }
  g.scale[g.at(0, 0)] = 0.0f;
  EXPECT_EQ(g.nearest(0, 0, 3.0f), 0);
  // The levels must strictly ascend, 2..256 of them.
  Grid bad = make_grid_layout(1, 4, 0, 0);
  EXPECT_THROW(set_codebook(bad, {0.0f, 1.0f, 1.0f}), Error);
  EXPECT_THROW(set_codebook(bad, {0.0f}), Error);
  EXPECT_THROW(set_codebook(bad, {1.0f, 0.0f}), Error);
}

TEST(CodebookGrid, KeptGridIsACodebookConstraint) {
  const Matrix w = random_weights(2, 8, 3);
  const GridConstraint c = GridConstraint::kept(codebook_grid(w, kFour));
  EXPECT_EQ(c.kind, GridKind::Codebook);
  ASSERT_NE(c.fixed_grid(), nullptr);
  EXPECT_FALSE(c.free_multipliers());
  EXPECT_EQ(GridConstraint::kept(minmax_grid(w, 2)).kind, GridKind::GgmlBlock);
  for (const char* m : {"rtn", "gptq", "cd", "bcd", "cyclic"})
    EXPECT_TRUE(supports(parse_method(m), GridKind::Codebook)) << m;
  for (const char* m : {"owc", "owc-cd", "owc-bcd"})
    EXPECT_FALSE(supports(parse_method(m), GridKind::Codebook)) << m;
}

TEST(CodebookGrid, OwcIsRefusedDirectlyAndAsTheCdStart) {
  const LayerProblem p = small_problem(4, 8, 2);
  const GridConstraint c = GridConstraint::kept(codebook_grid(p.w, kFour));
  SolverOptions opt;
  opt.constraint = &c;
  EXPECT_THROW(solve_layer(p.w, p.h, parse_method("owc"), opt), Error);
  opt.cd_init = parse_method("owc");
  try {
    solve_layer(p.w, p.h, parse_method("cd"), opt);
    ADD_FAILURE() << "cd from owc ran on a codebook grid";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot start from 'owc'"));
  }
}

// The lowest objective over every code assignment of row r (d_in small), in double.
double brute_force_row(const Matrix& w, const Matrix& h, const Grid& grid, int64_t r) {
  const int64_t n = w.cols;
  const int levels = grid.maxq + 1;
  std::vector<uint8_t> codes(static_cast<size_t>(w.rows * n), 0);
  double best = 1e300;
  int64_t total = 1;
  for (int64_t j = 0; j < n; ++j) total *= levels;
  for (int64_t idx = 0; idx < total; ++idx) {
    int64_t x = idx;
    for (int64_t j = 0; j < n; ++j, x /= levels)
      codes[static_cast<size_t>(r * n + j)] = static_cast<uint8_t>(x % levels);
    best = std::min(best, row_objective(w, h, grid, codes, r));
  }
  return best;
}

// Every CD variant on a non-uniform codebook ends at a coordinate-wise minimum (no single change
// to any level lowers the objective), never above its start, with a trace that never rises, and
// reports the objective it reaches; the global minimum (brute force) is below all of it.
TEST(CodebookCd, EveryVariantEndsAtACoordinatewiseMinimumBelowItsStart) {
  for (CdKind kind : {CdKind::Greedy, CdKind::Block, CdKind::Cyclic}) {
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      for (const std::vector<float>* lv : {&kThree, &kFour}) {
        const int64_t d_in = lv->size() == 3 ? 8 : 6;
        const LayerProblem p = small_problem(3, d_in, seed);
        const Matrix h = damped(p.h);
        Grid grid = codebook_grid(p.w, *lv);
        std::vector<uint8_t> codes = round_to_grid(grid, p.w);
        const double f0 = objective(p.w, h, grid, codes);
        CdOptions opt;
        opt.kind = kind;
        opt.budget = 100.0;
        opt.sweeps = 100;
        const CdStats st = refine_codes(p.w, h, grid, codes, opt);
        const std::string ctx =
            fmt::format("kind {} seed {} levels {}", static_cast<int>(kind), seed, lv->size());
        EXPECT_LE(best_single_gain(p.w, h, grid, codes), kStopTol) << ctx;
        const double f = objective(p.w, h, grid, codes);
        EXPECT_LE(f, f0 * (1.0 + 1e-6)) << ctx;
        EXPECT_NEAR(st.final_objective, f, 1e-5 * f0) << ctx;
        EXPECT_NEAR(st.start_objective, f0, 1e-5 * f0) << ctx;
        for (size_t k = 1; k < st.convergence.size(); ++k)
          EXPECT_LE(st.convergence[k], st.convergence[k - 1]) << ctx;
        double opt_f = 0.0;
        for (int64_t r = 0; r < p.w.rows; ++r) opt_f += brute_force_row(p.w, h, grid, r);
        EXPECT_LE(opt_f, f * (1.0 + 1e-6)) << ctx;
      }
    }
  }
}

// Each greedy step is the best single move over all coordinates and levels (brute force at the
// codes of that moment) and lowers the objective by what it reports.
// Both scans: 16 levels (vector selects) and 24 (the scalar binary search).
class CodebookGreedySteps : public ::testing::TestWithParam<int> {};

std::vector<float> uneven_levels(int n) {
  std::vector<float> lv(static_cast<size_t>(n));
  for (int k = 0; k < n; ++k) {
    const float u = 2.0f * static_cast<float>(k) / static_cast<float>(n - 1) - 1.0f;
    lv[static_cast<size_t>(k)] = u * u * u + 0.3f * u;  // denser near 0
  }
  return lv;
}

TEST_P(CodebookGreedySteps, EveryGreedyStepIsTheBestSingleMove) {
  const LayerProblem p = small_problem(3, 21, 5);  // ragged SIMD tail
  const Matrix h = damped(p.h);
  Grid grid = codebook_grid(p.w, GetParam() == 16 ? kIq4nl : uneven_levels(GetParam()), 8);
  std::vector<uint8_t> codes = round_to_grid(grid, p.w);
  std::vector<uint8_t> live = codes;
  int moves = 0;
  const CdObserver obs = [&](const CdMove& mv) {
    ASSERT_EQ(mv.size, 1);
    const int64_t r = mv.row, n = p.w.cols;
    const double f0 = row_objective(p.w, h, grid, live, r);
    double best = 0.0;
    std::vector<uint8_t> trial = live;
    for (int64_t j = 0; j < n; ++j) {
      const uint8_t keep = trial[static_cast<size_t>(r * n + j)];
      for (int q = 0; q <= grid.maxq; ++q) {
        trial[static_cast<size_t>(r * n + j)] = static_cast<uint8_t>(q);
        best = std::max(best, f0 - row_objective(p.w, h, grid, trial, r));
      }
      trial[static_cast<size_t>(r * n + j)] = keep;
    }
    EXPECT_EQ(live[static_cast<size_t>(r * n + mv.coord[0])], mv.from[0]);
    live[static_cast<size_t>(r * n + mv.coord[0])] = static_cast<uint8_t>(mv.to[0]);
    const double got = f0 - row_objective(p.w, h, grid, live, r);
    EXPECT_NEAR(got, mv.decrease, 1e-4 * f0);
    EXPECT_GE(got, best - 1e-4 * f0);
    ++moves;
  };
  CdOptions opt;
  opt.budget = 4.0;
  refine_codes(p.w, h, grid, codes, opt, &obs);
  EXPECT_GT(moves, 0);
  EXPECT_EQ(live, codes);
}

INSTANTIATE_TEST_SUITE_P(Levels, CodebookGreedySteps, ::testing::Values(16, 24));

// BCD (blocks of 2) ends where no block {i, partner(i)} has a better pair of levels: its
// pruning bound on codebook grids never skips the block that would improve.
TEST(CodebookCd, BlockCdEndsAtABlockwiseMinimum) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    const LayerProblem p = small_problem(3, 10, seed);
    const Matrix h = damped(p.h);
    Grid grid = codebook_grid(p.w, kIq4nl, 5);
    std::vector<uint8_t> codes = round_to_grid(grid, p.w);
    CdOptions opt;
    opt.kind = CdKind::Block;
    opt.block = 2;
    opt.budget = 100.0;
    refine_codes(p.w, h, grid, codes, opt);
    const std::vector<int32_t> partner = bcd_partners(h, 2);
    const int64_t n = p.w.cols;
    for (int64_t r = 0; r < p.w.rows; ++r) {
      const double f0 = row_objective(p.w, h, grid, codes, r);
      std::vector<uint8_t> trial = codes;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = partner[static_cast<size_t>(i)];
        const size_t ki = static_cast<size_t>(r * n + i), kj = static_cast<size_t>(r * n + j);
        for (int a = 0; a <= grid.maxq; ++a)
          for (int b = 0; b <= grid.maxq; ++b) {
            trial[ki] = static_cast<uint8_t>(a);
            trial[kj] = static_cast<uint8_t>(b);
            EXPECT_GE(row_objective(p.w, h, grid, trial, r), f0 * (1.0 - kStopTol))
                << seed << " row " << r << " block " << i << "," << j;
          }
        trial[ki] = codes[ki];
        trial[kj] = codes[kj];
      }
    }
  }
}

TEST(CodebookCd, ScaleRefitIsRefused) {
  const LayerProblem p = small_problem(2, 8, 1);
  Grid grid = codebook_grid(p.w, kFour);
  std::vector<uint8_t> codes = round_to_grid(grid, p.w);
  CdOptions opt;
  opt.rescale_rounds = 2;
  EXPECT_THROW(refine_codes(p.w, damped(p.h), grid, codes, opt), Error);
}

SolveResult solve_on(const Matrix& w, const Matrix& h, const Grid& grid, const char* method) {
  const GridConstraint c = GridConstraint::kept(grid);
  SolverOptions opt;
  opt.constraint = &c;
  opt.threads = 2;
  return solve_layer(w, h, parse_method(method), opt);
}

// On a codebook grid, with correlated H: GPTQ beats RTN, and every CD variant from GPTQ ends
// at or below GPTQ; all keep the grid as given.
TEST(CodebookSolvers, GptqBeatsRtnAndCdNeverEndsAboveGptq) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    const Matrix w = random_weights(24, 64, 100 + seed);
    const Matrix h = correlated_hessian(64, 200 + seed);
    const Grid grid = codebook_grid(w, kIq4nl, 32);
    const SolveResult rtn = solve_on(w, h, grid, "rtn");
    const SolveResult gptq = solve_on(w, h, grid, "gptq");
    EXPECT_EQ(rtn.codes, round_to_grid(grid, w));
    EXPECT_LT(gptq.objective, 0.9 * rtn.objective) << seed;
    for (const char* m : {"cd", "bcd", "cyclic"}) {
      const SolveResult cd = solve_on(w, h, grid, m);
      EXPECT_LE(cd.objective, gptq.objective * (1.0 + 1e-6)) << m << " " << seed;
      EXPECT_EQ(cd.grid.scale, grid.scale) << m;
      EXPECT_EQ(cd.grid.levels, grid.levels) << m;
      if (seed == 1)
        std::printf("IQ4_NL codebook seed 1: rtn %.5g gptq %.5g %s %.5g (relative %.4g)\n",
                    rtn.relative(), gptq.relative(), m, cd.relative(),
                    cd.objective / rtn.objective);
    }
  }
}

// Evenly spaced levels 0..maxq with the affine grid's scales and biases are that affine grid:
// GPTQ runs the same float operations on both (x = (w - bias) / s rounded to the nearest
// integer level), so the codes agree exactly (float ties, where nearbyint goes to even and the
// level search to the lower level, have probability ~0 on random data). CD runs different
// kernels (scalar level search against the vector rounding), so its objectives agree to
// tolerance.
TEST(CodebookSolvers, EvenlySpacedCodebookMatchesTheAffineGrid) {
  const Matrix w = random_weights(16, 48, 9);
  const Matrix h = correlated_hessian(48, 10);
  Grid affine = minmax_grid(w, 3, 16);
  affine.zero.clear();  // a scale/bias grid: value = s * q + bias, bias = -s * zero
  Grid even = affine;
  std::vector<float> lv(8);
  for (int q = 0; q < 8; ++q) lv[static_cast<size_t>(q)] = static_cast<float>(q);
  set_codebook(even, lv);
  EXPECT_EQ(round_to_grid(affine, w), round_to_grid(even, w));
  const SolveResult ga = solve_on(w, h, affine, "gptq"), ge = solve_on(w, h, even, "gptq");
  EXPECT_EQ(ga.codes, ge.codes);
  EXPECT_NEAR(ga.objective, ge.objective, 1e-6 * ga.objective);
  for (const char* m : {"cd", "bcd", "cyclic"}) {
    const SolveResult ca = solve_on(w, h, affine, m), ce = solve_on(w, h, even, m);
    EXPECT_NEAR(ca.objective, ce.objective, 1e-3 * ca.objective) << m;
    std::printf("evenly spaced levels, %s: affine %.9g codebook %.9g, %zu codes differ\n", m,
                ca.objective, ce.objective,
                static_cast<size_t>(std::inner_product(
                    ca.codes.begin(), ca.codes.end(), ce.codes.begin(), size_t{0}, std::plus<>(),
                    [](uint8_t x, uint8_t y) { return static_cast<size_t>(x != y); })));
  }
}

// The data-aware HIGGS problem: W' = W R^T, H' = R H R^T with the 3-bit Lloyd-Max codebook and
// HIGGS's per-block scales. GPTQ beats rounding (which is HIGGS itself) and CD on the rotated
// problem never ends above GPTQ on the same rotated problem. d_in = 96 is padded to 128: the
// padded directions of H' carry no loss (damping makes H' definite).
TEST(CodebookSolvers, HiggsRotatedProblemCdNeverAboveGptq) {
  for (int64_t d_in : {128, 96}) {
    const int64_t h = 64;
    const Matrix w = random_weights(16, d_in, 300 + d_in);
    const Matrix hess = correlated_hessian(d_in, 400 + d_in);
    const Matrix wr = higgs_rotate_weights(w, h);
    const Matrix hr = higgs_rotate_hessian(hess, h);
    const Grid grid = higgs_codebook_grid(wr, 3, h);
    ASSERT_TRUE(grid.is_codebook());
    const SolveResult rtn = solve_on(wr, hr, grid, "rtn");
    const SolveResult gptq = solve_on(wr, hr, grid, "gptq");
    EXPECT_LT(gptq.objective, rtn.objective) << d_in;
    for (const char* m : {"cd", "bcd", "cyclic"}) {
      const SolveResult cd = solve_on(wr, hr, grid, m);
      EXPECT_LE(cd.objective, gptq.objective * (1.0 + 1e-6)) << m << " " << d_in;
      std::printf("HIGGS 3-bit d_in %lld: rtn %.5g gptq %.5g %s %.5g (%.3f s refine)\n",
                  static_cast<long long>(d_in), rtn.relative(), gptq.relative(), m, cd.relative(),
                  cd.seconds_refine);
    }
  }
}

}  // namespace
}  // namespace cdq
