// The data-free methods as registry rows (hqq, easyquant, higgs, higgs-p2) and --scales hqq:
// names, help, HessianUse::Never, float-only reasons, what each returns in SolveResult (q,
// grid, codes, objective), bits per weight, and the bad options each refuses. The comparisons
// with RTN assert what was measured on these seeded problems (printed), with a margin.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/half.hpp>
#include <cdquant/method.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/solver.hpp>
#include <cdquant/synthetic.hpp>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "quant/easyquant.hpp"
#include "quant/normal_grid.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/problems.hpp"

namespace cdq {
namespace {

using test::error_of;
using test::run_cli;
using ::testing::HasSubstr;

constexpr const char* kDataFree[] = {"hqq", "easyquant", "higgs", "higgs-p2"};

// H = I: the layer objective is the squared weight error.
Matrix identity(int64_t n) {
  Matrix h(n, n);
  for (int64_t i = 0; i < n; ++i) h(i, i) = 1.0f;
  return h;
}

SolverOptions options(int bits, int group) {
  SolverOptions o;
  o.grid.bits = bits;
  o.grid.group_size = group;
  return o;
}

TEST(DataFreeMethods, RowsParseAreDataFreeAndSayWhetherTheyPack) {
  for (const char* name : kDataFree) {
    const Method m = parse_method(name);
    EXPECT_EQ(m.name(), name);
    EXPECT_TRUE(m.info().is_start()) << name;
    EXPECT_EQ(m.info().hessian, HessianUse::Never) << name;
    EXPECT_FALSE(needs_hessian(m, SolverOptions{})) << name;
    EXPECT_TRUE(supports(m, GridKind::Free)) << name;
    // They fit their own grids; hqq also rounds to GGUF's blocks, which the GGUF writer fits
    // by HQQ for it (test_ggml_hqq.cpp).
    EXPECT_EQ(supports(m, GridKind::GgmlBlock), std::string(name) == "hqq") << name;
  }
  EXPECT_EQ(parse_method("hqq").info().float_only_reason, nullptr);
  EXPECT_STREQ(parse_method("easyquant").info().float_only_reason,
               "keeps outlier weights in float, which GGUF and GPTQ cannot store");
  for (const char* name : {"higgs", "higgs-p2"})
    EXPECT_STREQ(parse_method(name).info().float_only_reason,
                 "needs the online Hadamard transform at inference, which no GGUF or GPTQ "
                 "kernel runs");
  // The calibrated methods all pack, but data-aware HIGGS (test_higgs_aware.cpp), whose codes
  // live in the rotated basis as HIGGS's do.
  for (const MethodInfo& row : method_table())
    if (row.hessian != HessianUse::Never && row.name.substr(0, 6) != "higgs-") {
      EXPECT_EQ(row.float_only_reason, nullptr) << row.name;
    }
  // hqq can start a refinement; the float-only starts cannot.
  const std::vector<std::string> starts = start_names();
  EXPECT_THAT(starts, ::testing::Contains("hqq"));
  for (const char* name : {"easyquant", "higgs", "higgs-p2"})
    EXPECT_THAT(starts, ::testing::Not(::testing::Contains(name)));
}

TEST(DataFreeMethods, HelpOfQuantizeAndLayerListsThemAndTheirFlags) {
  for (const char* cmd : {"quantize", "layer"}) {
    const auto r = run_cli({cmd, "--help"});
    ASSERT_EQ(r.exit_code, 0) << cmd;
    for (const char* name : kDataFree) {
      EXPECT_THAT(r.out, HasSubstr(name)) << cmd;
      EXPECT_THAT(r.out, HasSubstr(std::string(parse_method(name).info().description))) << cmd;
    }
    EXPECT_THAT(r.out, HasSubstr("minmax, mse, owc or hqq")) << cmd << ": --scales";
    EXPECT_THAT(r.out, HasSubstr("--higgs-block")) << cmd;
    EXPECT_THAT(r.out, HasSubstr("--hqq-integer-zeros")) << cmd;
  }
  EXPECT_EQ(scale_search_names(), (std::vector<std::string>{"minmax", "mse", "owc", "hqq"}));
  for (const std::string& name : scale_search_names())
    EXPECT_EQ(scale_search_name(parse_scale_search(name)), name);
  EXPECT_THAT(error_of([] { parse_scale_search("nope"); }), HasSubstr("minmax, mse, owc or hqq"));
}

TEST(DataFreeMethods, HqqHasLowerWeightMseThanRtnAtG32OnHeavyTails) {
  const Matrix w = test::layer_weights(64, 1024, 7, 3.0);
  const Matrix h = identity(w.cols);
  for (int bits : {3, 4}) {
    const SolverOptions o = options(bits, 32);
    const SolveResult rtn = solve_layer(w, h, parse_method("rtn"), o);
    const SolveResult hqq = solve_layer(w, h, parse_method("hqq"), o);
    EXPECT_FALSE(hqq.grid.is_integer_grid()) << "fractional zero points by default";
    EXPECT_NEAR(hqq.objective, test::squared_distance(hqq.q, w), 1e-4 * hqq.objective);
    const double ratio = hqq.objective / rtn.objective;
    std::printf("Student-t(3) g32 %d bits: hqq / rtn weight MSE = %.3f\n", bits, ratio);
    EXPECT_LT(ratio, 0.93) << bits;  // measured 0.87 (3 bits), 0.85 (4 bits) by test_hqq
    // Integer zero points (what GPTQ checkpoints store) are an integer grid no worse than RTN
    // by more than a little: with the min-max scale the best integer zero is RTN's own.
    SolverOptions oi = o;
    oi.hqq_integer_zero = true;
    const SolveResult hqq_int = solve_layer(w, h, parse_method("hqq"), oi);
    EXPECT_TRUE(hqq_int.grid.is_integer_grid());
    std::printf("  integer zeros: hqq / rtn weight MSE = %.3f\n",
                hqq_int.objective / rtn.objective);
    EXPECT_LE(hqq_int.objective, rtn.objective * 1.02) << bits;
  }
}

TEST(DataFreeMethods, HqqRefusesSymmetricGridsAndUsesIntegerZerosWhereNeeded) {
  const Matrix w = test::layer_weights(16, 128, 3, 3.0);
  const Matrix h = identity(w.cols);
  SolverOptions o = options(4, 32);
  o.grid.symmetric = true;
  EXPECT_THAT(error_of([&] { solve_layer(w, h, parse_method("hqq"), o); }), HasSubstr("--sym"));
  o.grid.symmetric = false;
  o.grid.fp16_scales = true;  // GPTQ checkpoints: integer zeros, fp16 scales
  const SolveResult r = solve_layer(w, h, parse_method("hqq"), o);
  ASSERT_TRUE(r.grid.is_integer_grid());
  for (float s : r.grid.scale) EXPECT_EQ(fp16_to_float(float_to_fp16(s)), s);
  // cd from hqq: integer zeros for the scale refit, fractional ones for codes-only CD; both
  // end at or below their start.
  for (int rescale : {4, 0}) {
    SolverOptions oc = options(3, 32);
    oc.cd_rescale_rounds = rescale;
    oc.cd_init = parse_method("hqq");
    const LayerProblem p = make_synthetic_problem(32, 128, SyntheticOptions{});
    SolverOptions os = oc;  // hqq alone, with the zero points cd's start uses
    os.hqq_integer_zero = rescale > 0;
    const SolveResult start = solve_layer(p.w, p.h, parse_method("hqq"), os);
    const SolveResult cd = solve_layer(p.w, p.h, parse_method("cd"), oc);
    EXPECT_EQ(cd.grid.is_integer_grid(), rescale > 0) << rescale;
    EXPECT_LE(cd.objective, start.objective * (1 + 1e-6)) << rescale;
  }
}

TEST(DataFreeMethods, ScalesHqqIsAnIntegerGridGptqAndCdNeverEndAboveRtnOnIt) {
  SyntheticOptions so;
  so.seed = 4;
  const LayerProblem p = make_synthetic_problem(64, 256, so);
  for (int group : {32, 0}) {
    for (bool fp16 : {false, true}) {
      SolverOptions o = options(3, group);
      o.grid.search = ScaleSearch::Hqq;
      o.grid.fp16_scales = fp16;
      EXPECT_FALSE(needs_hessian(parse_method("rtn"), o));
      const std::string ctx = fmt::format("group {} fp16 {}", group, fp16);
      const SolveResult rtn = solve_layer(p.w, p.h, parse_method("rtn"), o);
      const Grid& g = rtn.grid;
      ASSERT_TRUE(g.is_integer_grid()) << ctx;
      for (size_t k = 0; k < g.scale.size(); ++k) {
        EXPECT_TRUE(g.scale[k] > 0.0f && std::isfinite(g.scale[k])) << ctx;
        EXPECT_GE(g.zero[k], 0) << ctx;
        EXPECT_LE(g.zero[k], g.maxq) << ctx;
        EXPECT_EQ(g.bias[k], -g.scale[k] * static_cast<float>(g.zero[k])) << ctx;
        if (fp16) {
          EXPECT_EQ(fp16_to_float(float_to_fp16(g.scale[k])), g.scale[k]) << ctx;
        }
      }
      for (const char* name : {"gptq", "cd"}) {
        const SolveResult r = solve_layer(p.w, p.h, parse_method(name), o);
        ASSERT_TRUE(r.grid.is_integer_grid()) << ctx << " " << name;
        EXPECT_LE(r.objective, rtn.objective) << ctx << " " << name;
      }
    }
  }
  SolverOptions sym = options(3, 32);
  sym.grid.search = ScaleSearch::Hqq;
  sym.grid.symmetric = true;
  EXPECT_THAT(error_of([&] { solve_layer(p.w, p.h, parse_method("rtn"), sym); }),
              HasSubstr("--sym"));
  const auto cli = run_cli({"layer", "--synthetic", "32,128", "--bits", "3", "--group", "32",
                            "--scales", "hqq", "--methods", "rtn,gptq,cd"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  const auto bad = run_cli({"layer", "--synthetic", "32,128", "--scales", "hqq", "--sym"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("--sym"));
}

TEST(DataFreeMethods, EasyQuantKeepsTheOutliersExactlyInQ) {
  const Matrix w = test::layer_weights(32, 512, 11, 3.0);
  const LayerProblem p = make_synthetic_problem(32, 512, SyntheticOptions{});
  const SolverOptions o = options(3, 0);
  const SolveResult r = solve_layer(w, p.h, parse_method("easyquant"), o);
  EasyQuantSpec spec;
  spec.bits = 3;
  const EasyQuantResult eq = easyquant_quantize(w, spec);
  ASSERT_GT(eq.outliers.col.size(), 0u);
  for (int64_t row = 0; row < w.rows; ++row)
    for (int64_t k = eq.outliers.row_start[static_cast<size_t>(row)];
         k < eq.outliers.row_start[static_cast<size_t>(row) + 1]; ++k) {
      const int32_t c = eq.outliers.col[static_cast<size_t>(k)];
      EXPECT_EQ(r.q(row, c), w(row, c));
      EXPECT_EQ(r.q(row, c), eq.outliers.value[static_cast<size_t>(k)]);
    }
  // Grid and codes describe the inliers: q equals them everywhere else.
  EXPECT_EQ(r.codes, eq.codes);
  ASSERT_TRUE(r.grid.is_integer_grid());
  const Matrix inliers = dequantize(r.grid, r.codes);
  int64_t differ = 0;
  for (size_t i = 0; i < inliers.data.size(); ++i) differ += inliers.data[i] != r.q.data[i];
  EXPECT_EQ(differ, static_cast<int64_t>(eq.outliers.col.size()));
  EXPECT_NEAR(r.objective, layer_objective(w, r.q, p.h), 1e-6 * r.objective);
  EXPECT_NE(parse_method("easyquant").info().float_only_reason, nullptr);
  // Per channel only, and not a refinement's start.
  EXPECT_THAT(error_of([&] { solve_layer(w, p.h, parse_method("easyquant"), options(3, 32)); }),
              HasSubstr("--group 32 is not supported"));
  SolverOptions oc = o;
  oc.cd_init = parse_method("easyquant");
  EXPECT_THAT(error_of([&] { solve_layer(w, p.h, parse_method("cd"), oc); }),
              HasSubstr("cannot be refined"));
}

TEST(DataFreeMethods, HiggsObjectiveIsOfQAndItsErrorIsTheGridMse) {
  const Matrix w = test::random_weights(64, 1024, 3, 0.02);
  const Matrix h = test::correlated_hessian(w.cols, 5);
  for (const char* name : {"higgs", "higgs-p2"}) {
    const int dim = std::string_view(name) == "higgs" ? 1 : 2;
    for (int bits : dim == 1 ? std::vector<int>{2, 3, 4} : std::vector<int>{3}) {
      const std::string ctx = fmt::format("{} {} bits", name, bits);
      const SolveResult r = solve_layer(w, h, parse_method(name), options(bits, 0));
      EXPECT_NEAR(r.objective, layer_objective(w, r.q, h), 1e-6 * r.objective) << ctx;
      EXPECT_GT(r.objective, 0.0) << ctx;
      EXPECT_TRUE(r.codes.empty()) << ctx;  // HIGGS's codes are in the rotated basis
      EXPECT_EQ(r.grid.d_out, 0) << ctx;
      ASSERT_FALSE(r.notes.empty()) << ctx;
      const double rel = test::squared_distance(r.q, w) / test::squared_norm(w);
      const double grid_mse = normal_grid(bits, dim).mse;
      std::printf("%s: relative weight MSE %.5f, grid MSE %.5f\n", ctx.c_str(), rel, grid_mse);
      EXPECT_NEAR(rel / grid_mse, 1.0, 0.05) << ctx;
    }
  }
}

TEST(DataFreeMethods, HiggsRefusesBadBitsAndBlockSizes) {
  const Matrix w = test::random_weights(4, 256, 1, 0.02);
  const Matrix h = identity(w.cols);
  for (int bits : {1, 5, 8})
    for (const char* name : {"higgs", "higgs-p2"})
      EXPECT_THAT(error_of([&] { solve_layer(w, h, parse_method(name), options(bits, 0)); }),
                  HasSubstr("--bits 2, 3 or 4"))
          << name << " " << bits;
  for (int block : {1, 32, 96, 2048, -64}) {
    SolverOptions o = options(3, 0);
    o.higgs_block = block;
    EXPECT_THAT(error_of([&] { solve_layer(w, h, parse_method("higgs"), o); }),
                HasSubstr("--higgs-block must be a power of two in 64..1024"))
        << block;
  }
  SolverOptions o = options(3, 0);
  o.higgs_block = 128;
  EXPECT_NO_THROW(solve_layer(w, h, parse_method("higgs"), o));
  for (const char* block : {"96", "2048", "x"}) {
    const auto r =
        run_cli({"layer", "--synthetic", "8,256", "--methods", "higgs", "--higgs-block", block});
    EXPECT_NE(r.exit_code, 0) << block;
    EXPECT_THAT(r.err, HasSubstr("--higgs-block")) << block;
  }
  const auto bits = run_cli({"layer", "--synthetic", "8,256", "--methods", "higgs", "--bits", "5"});
  EXPECT_NE(bits.exit_code, 0);
  EXPECT_THAT(bits.out + bits.err, HasSubstr("--bits 2, 3 or 4"));
}

TEST(DataFreeMethods, BitsPerWeight) {
  SolverOptions o = options(4, 128);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_method("rtn"), o, 4096), 4 + 20.0 / 128);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_method("cd"), o, 4096), 4 + 20.0 / 128);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_method("hqq"), o, 4096), 4 + 32.0 / 128);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_method("higgs"), o, 4096), 4 + 16.0 / 512);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_method("higgs-p2"), o, 4096), 4 + 16.0 / 512);
  o.higgs_block = 1024;
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_method("higgs"), o, 4096), 4 + 16.0 / 1024);
  o.grid.fp16_scales = true;  // GPTQ checkpoints: hqq's zero points are integer
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_method("hqq"), o, 4096), 4 + 20.0 / 128);
  o.grid.group_size = 0;
  o.grid.symmetric = true;
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_method("gptq"), o, 4096), 4 + 16.0 / 4096);
  const double eq = bits_per_weight(parse_method("easyquant"), o, 4096);
  EXPECT_GT(eq, 4 + 16.0 / 4096);
  EXPECT_LT(eq, 4.5);
}

TEST(DataFreeMethods, LayerPrintsTheirRows) {
  const auto r = run_cli({"layer", "--synthetic", "32,256", "--bits", "3", "--methods",
                          "rtn,hqq,easyquant,higgs,higgs-p2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : kDataFree) EXPECT_THAT(r.out, HasSubstr(std::string("\n") + name + " "));
  const auto json = run_cli({"layer", "--synthetic", "32,256", "--bits", "3", "--methods",
                             "hqq,easyquant,higgs", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"objective\""));
}

}  // namespace
}  // namespace cdq
