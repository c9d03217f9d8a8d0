// The method registry: names round-trip, help and errors list every row, the defaults are
// rows, and every refinement composes with every start without ending above it.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cdquant/method.hpp>
#include <cdquant/solver.hpp>
#include <string>
#include <vector>

#include "support/cd_checks.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;
using namespace cdq::test;  // NOLINT: small_problem, damped, objective, error_of, run_cli

std::vector<Method> rows_where(bool (*keep)(const MethodInfo&)) {
  std::vector<Method> out;
  for (const MethodInfo& m : method_table())
    if (keep(m)) out.push_back(Method(m));
  return out;
}

std::vector<Method> starts() {  // those a refinement can follow
  return rows_where([](const MethodInfo& m) { return m.refinable_start(); });
}
std::vector<Method> refined() {
  return rows_where([](const MethodInfo& m) { return m.refinement != nullptr; });
}

TEST(Methods, EveryNameParsesBackToItsRow) {
  const std::vector<std::string> names = method_names();
  ASSERT_EQ(names.size(), method_table().size());
  for (size_t i = 0; i < names.size(); ++i) {
    const MethodInfo& row = method_table()[i];
    EXPECT_EQ(names[i], row.name);
    const Method m = parse_method(row.name);
    EXPECT_EQ(&m.info(), &row);
    EXPECT_EQ(m.name(), row.name);
    EXPECT_EQ(m, Method(row));
    EXPECT_EQ(m.refined(), row.refinement != nullptr);
    EXPECT_FALSE(row.description.empty()) << row.name;
  }
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "duplicate name";
}

TEST(Methods, TodaysNamesAndStructure) {
  EXPECT_EQ(method_names(),
            (std::vector<std::string>{"rtn", "owc", "gptq", "cd", "bcd", "cyclic", "owc-cd",
                                      "owc-bcd", "hqq", "easyquant", "higgs", "higgs-p2",
                                      "higgs-gptq", "higgs-cd"}));
  // The --cd-init values: the starts whose grid and codes are their result.
  EXPECT_EQ(start_names(), (std::vector<std::string>{"rtn", "owc", "gptq", "hqq"}));
  const SolverOptions opt;
  // cd/bcd/cyclic start from --cd-init (default gptq); owc-cd/owc-bcd from OWC.
  for (const char* name : {"cd", "bcd", "cyclic"}) {
    EXPECT_EQ(parse_method(name).info().start, nullptr) << name;
    EXPECT_EQ(start_of(parse_method(name), opt), parse_method("gptq")) << name;
  }
  for (const char* name : {"owc-cd", "owc-bcd"})
    EXPECT_EQ(start_of(parse_method(name), opt), parse_method("owc")) << name;
  EXPECT_EQ(parse_method("cd").info().refinement, parse_method("owc-cd").info().refinement);
  EXPECT_EQ(parse_method("bcd").info().refinement, parse_method("owc-bcd").info().refinement);
  EXPECT_NE(parse_method("cd").info().refinement, parse_method("cyclic").info().refinement);
  // Every start is a row of its own, and is its own start.
  for (const MethodInfo& row : method_table()) {
    SolverOptions o;
    const Method s = start_of(Method(row), o);
    EXPECT_TRUE(s.info().is_start()) << row.name;
    if (row.refinement != nullptr) {
      EXPECT_TRUE(s.info().refinable_start()) << row.name;
    }
    if (row.is_start()) {
      EXPECT_EQ(s, Method(row));
    }
  }
}

TEST(Methods, Defaults) {
  EXPECT_EQ(default_method(), parse_method("cd"));
  EXPECT_EQ(default_start(), parse_method("gptq"));
  EXPECT_EQ(SolverOptions{}.cd_init, default_start());
  const std::vector<Method> cmp = default_comparison();
  ASSERT_EQ(cmp.size(), 3u);
  EXPECT_EQ(cmp[0], parse_method("rtn"));
  EXPECT_EQ(cmp[1], parse_method("gptq"));
  EXPECT_EQ(cmp[2], parse_method("cd"));
}

TEST(Methods, HessianAndGridNeeds) {
  SolverOptions opt;
  for (ScaleSearch s : {ScaleSearch::MinMax, ScaleSearch::Mse}) {
    opt.grid.search = s;
    EXPECT_FALSE(needs_hessian(parse_method("rtn"), opt));
  }
  opt.grid.search = ScaleSearch::Owc;
  EXPECT_TRUE(needs_hessian(parse_method("rtn"), opt));
  opt.grid.search = ScaleSearch::MinMax;
  opt.grid.search = ScaleSearch::Hqq;
  EXPECT_FALSE(needs_hessian(parse_method("rtn"), opt));
  opt.grid.search = ScaleSearch::MinMax;
  for (const MethodInfo& row : method_table()) {
    // The data-free rows (test_datafree_methods.cpp) and data-aware HIGGS (test_higgs_aware.cpp)
    // fit their own grids: free grids only; but hqq also rounds to GGUF's block grids, which
    // the GGUF writer fits by HQQ for it (test_ggml_hqq.cpp).
    const bool data_free = row.hessian == HessianUse::Never;
    const bool own_grid = data_free || row.name.substr(0, 6) == "higgs-";
    const bool hqq = row.name == "hqq";
    if (row.name != "rtn") {
      EXPECT_EQ(needs_hessian(Method(row), opt), !data_free) << row.name;
    }
    EXPECT_TRUE(supports(Method(row), GridKind::Free)) << row.name;
    EXPECT_EQ(supports(Method(row), GridKind::GgmlBlock), !own_grid || hqq) << row.name;
    // Codebook grids: every calibrated method but the OWC scale search and those from it.
    EXPECT_EQ(supports(Method(row), GridKind::Codebook),
              !own_grid && row.name.substr(0, 3) != "owc")
        << row.name;
  }
}

TEST(Methods, HelpListsEveryRow) {
  const std::string help = method_help();
  for (const MethodInfo& row : method_table()) {
    EXPECT_THAT(help, HasSubstr(std::string(row.name)));
    EXPECT_THAT(help, HasSubstr("— " + std::string(row.description)));
  }
  for (const char* cmd : {"quantize", "layer", "demo"}) {
    const auto r = run_cli({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd;
    for (const MethodInfo& row : method_table())
      EXPECT_THAT(r.out, HasSubstr(std::string(row.description))) << cmd << " " << row.name;
    EXPECT_THAT(r.out, HasSubstr(method_list(start_names()))) << cmd << ": --cd-init";
  }
  EXPECT_THAT(run_cli({"quantize", "--help"}).out, HasSubstr("--method TEXT=cd"));
}

TEST(Methods, UnknownNamesListEveryName) {
  const std::string err = error_of([] { parse_method("nope"); });
  EXPECT_THAT(err, HasSubstr("unknown method 'nope'"));
  for (const std::string& name : method_names()) EXPECT_THAT(err, HasSubstr(name));
  EXPECT_THAT(err, HasSubstr("rtn, owc, gptq, cd, bcd, cyclic, owc-cd, owc-bcd, hqq, easyquant, "
                             "higgs, higgs-p2, higgs-gptq or higgs-cd"));
  const auto r = run_cli({"layer", "--synthetic", "8,8", "--methods", "rtn,nope"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr(method_list(method_names())));
  const auto init = run_cli({"layer", "--synthetic", "8,8", "--cd-init", "cd"});
  EXPECT_NE(init.exit_code, 0);
  EXPECT_THAT(init.err, HasSubstr("--cd-init"));
  EXPECT_THAT(error_of([] { solve_layer(Matrix(2, 2), Matrix(2, 2), Method{}, SolverOptions{}); }),
              HasSubstr("no method given"));
}

// Every refinement after every start (cd/bcd/cyclic through cd_init, owc-cd/owc-bcd from
// their own) ends at or below its start's damped objective, with the convergence trace
// starting at the start's and never rising, on free grids with and without the scale refit
// and on a kept fixed grid.
TEST(Methods, EveryRefinementComposesWithEveryStart) {
  const LayerProblem p = small_problem(6, 24, 5);
  Grid kept_grid = minmax_grid(p.w, 3, 8);
  for (float& s : kept_grid.scale) s *= 0.9f;
  for (size_t k = 0; k < kept_grid.bias.size(); ++k)
    kept_grid.bias[k] = -kept_grid.scale[k] * static_cast<float>(kept_grid.zero[k]);
  const GridConstraint kept = GridConstraint::kept(kept_grid);
  struct Case {
    const char* name;
    int group;
    int rescale;
    const GridConstraint* constraint;
  };
  const Case cases[] = {{"per-channel codes only", 0, 0, nullptr},
                        {"g8 with refit", 8, 4, nullptr},
                        {"per-channel with refit", 0, 4, nullptr},
                        {"kept grid", 0, 4, &kept}};
  int composed = 0;
  for (const Case& c : cases) {
    for (const Method& ref : refined()) {
      for (const Method& start : starts()) {
        SolverOptions opt;
        opt.grid.bits = 3;
        opt.grid.group_size = c.group;
        opt.cd_rescale_rounds = c.rescale;
        opt.constraint = c.constraint;
        opt.cd_init = start;
        // hqq alone keeps fractional zero points, which the scale refit cannot move, so its
        // refined start rounds them: compare with hqq alone on that same grid.
        opt.hqq_integer_zero = c.rescale > 0;
        const Method from = start_of(ref, opt);
        if (ref.info().start != nullptr && from != start) continue;  // fixed start: once
        if (!supports(from, c.constraint ? c.constraint->kind : GridKind::Free)) continue;
        const std::string ctx = fmt::format("{} after {} ({})", ref.name(), from.name(), c.name);
        const SolveResult s = solve_layer(p.w, p.h, from, opt);
        const SolveResult r = solve_layer(p.w, p.h, ref, opt);
        const Matrix h = damped(p.h, opt.percdamp);
        const double f_start = objective(p.w, h, s.grid, s.codes);
        const double f = objective(p.w, h, r.grid, r.codes);
        EXPECT_LE(f, f_start * (1 + 1e-9)) << ctx;
        EXPECT_LE(r.objective, s.objective * (1 + 1e-6)) << ctx;  // undamped
        ASSERT_GE(r.convergence.size(), 2u) << ctx;
        EXPECT_NEAR(r.convergence.front(), f_start, 1e-5 * f_start) << ctx;
        for (size_t k = 1; k < r.convergence.size(); ++k)
          EXPECT_LE(r.convergence[k], r.convergence[k - 1] * (1 + 1e-12)) << ctx;
        if (c.constraint != nullptr) {
          EXPECT_EQ(r.grid.scale, kept_grid.scale) << ctx;
        }
        ++composed;
      }
    }
  }
  // 3 refinements through cd_init x 4 starts + 2 with OWC, per case (hqq rounds to the block
  // grids too).
  EXPECT_EQ(composed, 3 * (3 * 4 + 2) + (3 * 4 + 2));
}

}  // namespace
}  // namespace cdq
