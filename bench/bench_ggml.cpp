// ggml block types as grids, on seeded synthetic layer problems: the layer objective of the
// type's own rule (what llama.cpp's quantize writes), RTN on the same block scales, act-order
// GPTQ on them, CD codes only, CD with the block scales d refitted, and CD that also moves the
// K-quants' integer sub-scales (the default of `cdquant quantize --format gguf`), each as
// tr((Q - W) H (Q - W)^T) / tr(W H W^T). Block scales by ggml's rule, or with --importance by
// its importance-weighted search with diag(H) (llama.cpp's imatrix path).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cdquant/solver.hpp>
#include <cdquant/synthetic.hpp>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "quant/ggml_quants.hpp"

namespace {

struct Row {
  std::string label;
  double relative = 0.0;
  double seconds = 0.0;
};

void print_type(const std::string& shape, const char* type, const std::vector<Row>& rows) {
  const double gptq = rows[2].relative, codes = rows[3].relative, refit = rows[5].relative;
  std::string line = fmt::format("{:>11} {:>5}", shape, type);
  for (const Row& r : rows) line += fmt::format(" {:>9.3e} ({:>6.2f}s)", r.relative, r.seconds);
  line += fmt::format(" {:>8.2f}% {:>8.2f}%", 100.0 * (1.0 - refit / gptq),
                      100.0 * (1.0 - refit / codes));
  fmt::print("{}\n", line);
  std::fflush(stdout);
}

// The methods compared: RTN, GPTQ and CD, the registry's default comparison (what
// `cdquant layer` and `cdquant demo` compare).
struct Methods {
  cdq::Method rtn, gptq, cd;
};
Methods methods() {
  const std::vector<cdq::Method> m = cdq::default_comparison();
  CDQ_CHECK(m.size() == 3 && !m[0].refined() && !m[1].refined() && m[2].refined(),
            "bench_ggml expects the default comparison to be two starts and a refinement");
  return {m[0], m[1], m[2]};
}

std::string column(cdq::Method m, const char* suffix) {
  return std::string(m.name()) + suffix;
}

std::vector<Row> solve_type(const cdq::LayerProblem& p, cdq::GgmlType type, bool importance,
                            int rescale) {
  std::vector<float> imp;
  if (importance) imp = cdq::ggml_importance(p.h);  // as `cdquant quantize --format gguf`
  const cdq::QuantizedBlocks qb =
      cdq::choose_block_scales(p.w, type, importance ? imp.data() : nullptr);
  const cdq::Grid grid = qb.to_grid();
  const std::vector<int16_t> sub = qb.group_sub_scales();
  std::vector<Row> rows;
  const cdq::Matrix rule = cdq::dequantize(grid, qb.codes);
  rows.push_back({"rule", cdq::layer_objective(p.w, rule, p.h) / cdq::layer_reference(p.w, p.h)});
  cdq::SolverOptions opt;
  cdq::GridConstraint constraint = cdq::GridConstraint::kept(grid);
  opt.constraint = &constraint;
  opt.act_order = true;
  if (rescale >= 0) opt.cd_rescale_rounds = rescale;
  const auto run = [&](const std::string& label, cdq::Method m) {
    const cdq::SolveResult r = cdq::solve_layer(p.w, p.h, m, opt);
    rows.push_back({label, r.relative(), r.seconds});
  };
  const Methods m = methods();
  run(column(m.rtn, ""), m.rtn);
  run(column(m.gptq, "-ao"), m.gptq);
  run(column(m.cd, "-codes"), m.cd);
  constraint =
      cdq::GridConstraint::ggml_block(grid, sub, static_cast<int>(qb.groups_per_block()), 1, 1);
  run(column(m.cd, "-d"), m.cd);
  const cdq::SubScaleRange range = cdq::ggml_sub_scale_range(type);
  constraint.sub_lo = range.lo;
  constraint.sub_hi = range.hi;
  run(column(m.cd, ""), m.cd);
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cdquant ggml-type benchmark (synthetic problems)"};
  std::string shapes = "2048x2048";
  std::string types = "Q8_0,Q6_K,Q5_K,Q5_0,Q4_K,Q4_1,Q4_0,Q3_K,Q2_K";
  int threads = 0;
  uint64_t seed = 1;
  bool importance = false;
  int rescale = -1;
  app.add_option("--shapes", shapes, "comma-separated d_out x d_in shapes (d_in % 256 == 0)");
  app.add_option("--types", types, "comma-separated ggml types");
  app.add_option("--threads", threads, "threads (0: OpenMP default)");
  app.add_option("--seed", seed, "synthetic problem seed");
  app.add_flag("--importance", importance, "block scales weighted by diag(H) (imatrix search)");
  app.add_option("--rescale", rescale, "override SolverOptions.cd_rescale_rounds (default 4)");
  CLI11_PARSE(app, argc, argv);
  try {
    cdq::bench::set_threads(threads);
    const Methods m = methods();
    fmt::print("{:>11} {:>5} {:>19} {:>19} {:>19} {:>19} {:>19} {:>19} {:>9} {:>9}\n", "shape",
               "type", "rule rel (s)", m.rtn.name(), column(m.gptq, "-ao"),
               column(m.cd, " codes only"), column(m.cd, " + d"), column(m.cd, " + d + sub"),
               fmt::format("vs {}", m.gptq.name()), "vs codes");
    for (const auto& shape : cdq::bench::split(shapes, ',')) {
      const auto [d_out, d_in] = cdq::bench::parse_shape(shape);
      cdq::SyntheticOptions so;
      so.seed = seed;
      const cdq::LayerProblem p = cdq::make_synthetic_problem(d_out, d_in, so);
      for (const auto& t : cdq::bench::split(types, ',')) {
        const cdq::GgmlType type = cdq::parse_ggml_type(t);
        print_type(shape, cdq::ggml_type_name(type), solve_type(p, type, importance, rescale));
      }
    }
  } catch (const cdq::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
