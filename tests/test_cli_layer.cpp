// `cdquant layer` end to end: synthetic and file inputs agree with the library called
// directly, --json is machine-readable, and bad input exits non-zero naming the problem.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/safetensors.hpp>
#include <cdquant/solver.hpp>
#include <cdquant/synthetic.hpp>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using test::run_cli;
using test::TempDir;

constexpr int64_t kOut = 24, kIn = 32;

LayerProblem small_problem(uint64_t seed = 3) {
  SyntheticOptions opt;
  opt.seed = seed;
  return make_synthetic_problem(kOut, kIn, opt);
}

double rtn_objective(const Matrix& w, const Matrix& h, int bits) {
  SolverOptions o;
  o.grid.bits = bits;
  return solve_layer(w, h, parse_method("rtn"), o).objective;
}

// Runs the CLI expecting success and returns its --json output parsed.
json run_json(std::vector<std::string> args) {
  args.insert(args.begin(), "layer");
  args.push_back("--json");
  const auto r = run_cli(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  try {
    return json::parse(r.out);
  } catch (const json::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.out;
    return json::array();
  }
}

// Runs the CLI expecting failure; returns stderr.
std::string run_failing(std::vector<std::string> args) {
  args.insert(args.begin(), "layer");
  const auto r = run_cli(args);
  EXPECT_NE(r.exit_code, 0) << r.out;
  return r.err;
}

std::string write_problem(const TempDir& dir, const std::string& name, const Matrix& w,
                          const Matrix* h, const Matrix* x, DType store = DType::F32) {
  SafetensorsWriter wr;
  wr.add_matrix("W", w, store);
  if (h) wr.add_matrix("H", *h, store);
  if (x) wr.add_matrix("X", *x, store);
  const std::string path = dir.file(name);
  wr.write(path);
  return path;
}

TEST(CliLayer, SyntheticTableRuns) {
  const auto r = run_cli({"layer", "--synthetic", "24,32", "--bits", "3", "--methods", "rtn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("synthetic W [24, 32]"));
  EXPECT_THAT(r.out, HasSubstr("relative"));
  EXPECT_THAT(r.out, HasSubstr("\nrtn "));
}

TEST(CliLayer, JsonHasTheKeysAndMatchesTheLibrary) {
  const json out = run_json(
      {"--synthetic", "24,32", "--seed", "3", "--bits", "3", "--methods", "rtn", "--group", "16"});
  ASSERT_TRUE(out.is_array());
  ASSERT_EQ(out.size(), 1u);
  const json& o = out[0];
  for (const char* key :
       {"method", "bits", "group", "objective", "relative", "seconds", "seconds_refine"})
    EXPECT_TRUE(o.contains(key)) << key;
  EXPECT_EQ(o["method"], "rtn");
  EXPECT_EQ(o["bits"], 3);
  EXPECT_EQ(o["group"], 16);
  const LayerProblem p = small_problem(3);
  SolverOptions opt;
  opt.grid.bits = 3;
  opt.grid.group_size = 16;
  const SolveResult ref = solve_layer(p.w, p.h, parse_method("rtn"), opt);
  EXPECT_DOUBLE_EQ(o["objective"].get<double>(), ref.objective);
  EXPECT_DOUBLE_EQ(o["relative"].get<double>(), ref.relative());
  EXPECT_GT(o["relative"].get<double>(), 0.0);
  EXPECT_LT(o["relative"].get<double>(), 1.0);
}

TEST(CliLayer, EveryMethodGetsAnEntry) {
  // Each requested method yields one object: a result, or the error it raised (and then the
  // exit code says so).
  const auto ok = run_cli({"layer", "--synthetic", "24,32", "--methods", "rtn,gptq", "--json"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  const json both = json::parse(ok.out);
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0]["method"], "rtn");
  EXPECT_EQ(both[1]["method"], "gptq");
  EXPECT_FALSE(both[0].contains("error"));
  EXPECT_FALSE(both[1].contains("error"));

  // An indefinite H (eigenvalues -999 and 1001, symmetric with a nonnegative diagonal, so it
  // passes the input checks): RTN never factors H and solves it; GPTQ's Cholesky fails at every
  // damping it tries, so GPTQ and CD from GPTQ fail. The others still get their rows, the
  // failures are reported by name, and the exit code is non-zero.
  TempDir dir;
  Matrix h(2, 2);
  h(0, 0) = h(1, 1) = 1.0f;
  h(0, 1) = h(1, 0) = 1000.0f;
  Matrix w(3, 2);
  for (int64_t i = 0; i < w.size(); ++i) w.data[static_cast<size_t>(i)] = 0.3f * float(i) - 0.7f;
  const std::string path = write_problem(dir, "indefinite.safetensors", w, &h, nullptr);
  const auto r = run_cli({"layer", path, "--methods", "rtn,gptq,cd", "--json"});
  EXPECT_NE(r.exit_code, 0) << r.out;
  const json out = json::parse(r.out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0]["method"], "rtn");
  EXPECT_EQ(out[1]["method"], "gptq");
  EXPECT_EQ(out[2]["method"], "cd");
  EXPECT_FALSE(out[0].contains("error"));
  EXPECT_TRUE(out[0].contains("objective"));
  for (int i : {1, 2}) {
    ASSERT_TRUE(out[i].contains("error")) << out[i].dump();
    EXPECT_THAT(out[i]["error"].get<std::string>(), HasSubstr("not positive definite"));
    EXPECT_FALSE(out[i].contains("objective"));
  }
  EXPECT_THAT(r.err, HasSubstr("2 of 3 methods failed"));
  EXPECT_THAT(r.err, HasSubstr("gptq ("));
  EXPECT_THAT(r.err, HasSubstr("cd ("));

  // The table says the same: a row of dashes and the error for each failed method.
  const auto table = run_cli({"layer", path, "--methods", "rtn,gptq"});
  EXPECT_NE(table.exit_code, 0);
  EXPECT_THAT(table.out, HasSubstr("\nrtn "));
  EXPECT_THAT(table.out, ::testing::ContainsRegex("\ngptq +[0-9]+ +row +- +- +- +-  error: "));
  EXPECT_THAT(table.err, HasSubstr("1 of 2 methods failed"));
}

TEST(CliLayer, FileWithHGivesTheSyntheticResult) {
  TempDir dir;
  const LayerProblem p = small_problem(3);
  const std::string path = write_problem(dir, "wh.safetensors", p.w, &p.h, nullptr);
  const json from_file = run_json({path, "--methods", "rtn", "--bits", "4"});
  const json synthetic = run_json({"--synthetic", "24,32", "--seed", "3", "--methods", "rtn"});
  ASSERT_EQ(from_file.size(), 1u);
  EXPECT_EQ(from_file[0]["objective"], synthetic[0]["objective"]);
  const auto table = run_cli({"layer", path, "--methods", "rtn"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("H [32, 32]"));
}

TEST(CliLayer, FileWithXBuildsTheHessian) {
  TempDir dir;
  SyntheticOptions opt;
  opt.seed = 5;
  opt.n_samples = 80;
  const Matrix x = synthetic_inputs(kIn, opt);
  const Matrix w = synthetic_weights(kOut, kIn, opt);
  const std::string path = write_problem(dir, "wx.safetensors", w, nullptr, &x);
  const json out = run_json({path, "--methods", "rtn", "--bits", "2"});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_DOUBLE_EQ(out[0]["objective"].get<double>(), rtn_objective(w, hessian_from_inputs(x), 2));
}

TEST(CliLayer, ReadsHalfPrecisionFiles) {
  TempDir dir;
  const LayerProblem p = small_problem(4);
  const std::string path = write_problem(dir, "bf16.safetensors", p.w, &p.h, nullptr, DType::BF16);
  // The CLI sees W and H rounded to bf16: the same numbers the reader gives back.
  const SafetensorsFile f(path);
  const json out = run_json({path, "--methods", "rtn"});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_DOUBLE_EQ(out[0]["objective"].get<double>(),
                   rtn_objective(f.read_matrix("W"), f.read_matrix("H"), 4));
}

TEST(CliLayer, BadFilesAreReported) {
  TempDir dir;
  const LayerProblem p = small_problem();
  EXPECT_THAT(run_failing({dir.write("empty.safetensors", "")}), HasSubstr("empty"));
  EXPECT_THAT(run_failing({dir.file("absent.safetensors")}), HasSubstr("cannot open"));

  const std::string good = write_problem(dir, "good.safetensors", p.w, &p.h, nullptr);
  const std::string bytes = test::read_file(good);
  EXPECT_THAT(run_failing({dir.write("cut.safetensors", bytes.substr(0, bytes.size() - 5))}),
              HasSubstr("truncated"));

  SafetensorsWriter only_h;
  only_h.add_matrix("H", p.h);
  only_h.write(dir.file("noW.safetensors"));
  EXPECT_THAT(run_failing({dir.file("noW.safetensors")}), HasSubstr("missing tensor 'W'"));
  EXPECT_THAT(run_failing({write_problem(dir, "noH.safetensors", p.w, nullptr, nullptr)}),
              HasSubstr("missing tensor 'H'"));

  const Matrix h_small(kIn - 1, kIn - 1, 1.0f);
  EXPECT_THAT(run_failing({write_problem(dir, "hshape.safetensors", p.w, &h_small, nullptr)}),
              HasSubstr("shape mismatch"));
  const Matrix x_bad(10, kIn + 1, 1.0f);
  EXPECT_THAT(run_failing({write_problem(dir, "xshape.safetensors", p.w, nullptr, &x_bad)}),
              HasSubstr("shape mismatch"));

  Matrix w_nan = p.w;
  w_nan(2, 3) = std::numeric_limits<float>::quiet_NaN();
  const std::string nan_err =
      run_failing({write_problem(dir, "nan.safetensors", w_nan, &p.h, nullptr)});
  EXPECT_THAT(nan_err, HasSubstr("W contains NaN"));
  EXPECT_THAT(nan_err, HasSubstr("nan.safetensors"));

  Matrix x_inf(10, kIn, 1.0f);
  x_inf(1, 1) = std::numeric_limits<float>::infinity();
  EXPECT_THAT(run_failing({write_problem(dir, "xinf.safetensors", p.w, nullptr, &x_inf)}),
              HasSubstr("X contains NaN or Inf"));

  Matrix h_asym = p.h;
  h_asym(0, 5) += 1.0f + std::abs(h_asym(0, 5));
  EXPECT_THAT(run_failing({write_problem(dir, "asym.safetensors", p.w, &h_asym, nullptr)}),
              HasSubstr("not symmetric"));
}

TEST(CliLayer, BadOptionsAreReported) {
  EXPECT_THAT(run_failing({"--synthetic", "24x32"}), HasSubstr("--synthetic expects"));
  EXPECT_THAT(run_failing({"--synthetic", "24,0"}), HasSubstr("--synthetic expects"));
  EXPECT_THAT(run_failing({"--synthetic", "24,32,5"}), HasSubstr("--synthetic expects"));
  EXPECT_THAT(run_failing({"--synthetic", "24,32", "--bits", "9"}), HasSubstr("--bits"));
  EXPECT_THAT(run_failing({"--synthetic", "24,32", "--bits", "1"}), HasSubstr("--bits"));
  EXPECT_THAT(run_failing({"--synthetic", "24,32", "--methods", "rtn,nope"}),
              HasSubstr("unknown method 'nope'"));
  EXPECT_THAT(run_failing({}), HasSubstr("--synthetic"));
}

TEST(CliLayer, HelpDescribesTheOptions) {
  const auto r = run_cli({"layer", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* opt :
       {"--methods", "--bits", "--group", "--sym", "--act-order", "--static-groups", "--percdamp",
        "--cd-budget", "--threads", "--json", "--synthetic", "--seed"})
    EXPECT_THAT(r.out, HasSubstr(opt));
}

}  // namespace
}  // namespace cdq
