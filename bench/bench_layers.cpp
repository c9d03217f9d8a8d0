// Layer benchmark: the registry's methods (RTN, GPTQ, GPTQ act-order, the CD family, ...) on
// seeded synthetic layer problems. Prints seconds, relative objective, refinement seconds, CD moves
// per row, and for the CD family the refinement time over the act-order GPTQ time and the objective
// reduction against act-order GPTQ (their start).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cdquant/solver.hpp>
#include <cdquant/synthetic.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace {

// A benchmark entry: a method of the registry, optionally with a suffix: -ao (act-order),
// -plain (in order) or -START (from that start, in order: cd-rtn). Without a suffix refined
// methods start from act-order GPTQ (--cd-init's default, with act-order) and the others run
// in order.
struct MethodSpec {
  std::string name;
  cdq::Method method;
  bool act_order;    // GPTQ (or the GPTQ start of a refined method) in act-order
  cdq::Method init;  // start of the refined methods that take --cd-init
};

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

MethodSpec parse_spec(const std::string& name) {
  const std::vector<std::string> names = cdq::method_names();
  MethodSpec s{name, {}, false, cdq::default_start()};
  if (contains(names, name)) {
    s.method = cdq::parse_method(name);
    s.act_order = s.method.refined();
    return s;
  }
  const auto dash = name.rfind('-');
  const std::string base = dash == std::string::npos ? name : name.substr(0, dash);
  const std::string suffix = dash == std::string::npos ? "" : name.substr(dash + 1);
  CDQ_CHECK(contains(names, base),
            "unknown benchmark method '{}' (expected one of {}, optionally with -ao, -plain or "
            "-START for START in {})",
            name, cdq::method_list(names), cdq::method_list(cdq::start_names()));
  s.method = cdq::parse_method(base);
  if (suffix == "ao") {
    s.act_order = true;
  } else if (suffix != "plain") {
    CDQ_CHECK(contains(cdq::start_names(), suffix) && s.method.info().start == nullptr,
              "benchmark method '{}': '{}' takes -ao or -plain{}", name, base,
              s.method.info().start == nullptr
                  ? ", or -START for START in " + cdq::method_list(cdq::start_names())
                  : "");
    s.init = cdq::parse_method(suffix);
  }
  return s;
}

// Solves until min_time seconds have been spent (at least once, at most 15 runs): the result
// of the last run with the median seconds and seconds_refine (solves are deterministic).
cdq::SolveResult solve_timed(const cdq::LayerProblem& p, cdq::Method method,
                             const cdq::SolverOptions& opt, double min_time) {
  std::vector<double> secs, refine;
  cdq::SolveResult r;
  double spent = 0.0;
  while (secs.empty() || (spent < min_time && secs.size() < 15)) {
    r = cdq::solve_layer(p.w, p.h, method, opt);
    secs.push_back(r.seconds);
    refine.push_back(r.seconds_refine);
    spent += r.seconds;
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  r.seconds = median(secs);
  r.seconds_refine = median(refine);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cdquant layer benchmark (synthetic problems)"};
  std::string shapes = "768x768,2048x768,768x2048,4096x4096,11008x4096,4096x11008";
  std::string bits_list = "4,3";
  std::string methods = "rtn,gptq,gptq-ao,cd,bcd";
  std::string json_path;
  int threads = 0;
  bool quick = false;
  uint64_t seed = 1;
  double cd_budget = -1.0;
  int warm = -1;
  int rescale = -1;
  double min_time = 1.0;
  int group = 0;
  app.add_option("--shapes", shapes, "comma-separated d_out x d_in shapes");
  app.add_option("--bits", bits_list, "comma-separated bit widths");
  app.add_option("--methods", methods,
                 "comma-separated methods (" + cdq::method_list(cdq::method_names()) +
                     "), each optionally with -ao (act-order), -plain (in order) or -START "
                     "(from START, in order: one of " +
                     cdq::method_list(cdq::start_names()) +
                     "); refined methods without a suffix start from act-order GPTQ");
  app.add_option("--threads", threads, "threads (0: OpenMP default)");
  app.add_option("--json", json_path, "write the results as JSON to this file");
  app.add_option("--seed", seed, "synthetic problem seed");
  app.add_option("--group", group, "group size (0: per-channel)");
  app.add_option("--cd-budget", cd_budget, "override SolverOptions.cd_budget");
  app.add_option("--warm-sweeps", warm, "override SolverOptions.cd_warm_sweeps");
  app.add_option("--rescale", rescale, "override SolverOptions.cd_rescale_rounds");
  app.add_option("--min-time", min_time,
                 "repeat each solve until this many seconds have passed (at most 15 runs) and "
                 "report the median times: sub-second solves are too noisy to time once");
  app.add_flag("--quick", quick, "small shapes only (768x768, 2048x768, 768x2048)");
  CLI11_PARSE(app, argc, argv);
  if (quick) shapes = "768x768,2048x768,768x2048";

  try {
    cdq::bench::set_threads(threads);
    std::vector<MethodSpec> specs;
    for (const auto& name : cdq::bench::split(methods, ',')) specs.push_back(parse_spec(name));

    nlohmann::json records = nlohmann::json::array();
    fmt::print("{:>11} {:>4} {:>9} {:>9} {:>10} {:>9} {:>9} {:>10} {:>10}\n", "shape", "bits",
               "method", "seconds", "rel_obj", "refine_s", "moves/row", "refine/ao", "reduction");
    for (const auto& shape_s : cdq::bench::split(shapes, ',')) {
      const auto [d_out, d_in] = cdq::bench::parse_shape(shape_s);
      cdq::SyntheticOptions so;
      so.seed = seed;
      const auto t0 = std::chrono::steady_clock::now();
      const cdq::LayerProblem p = cdq::make_synthetic_problem(d_out, d_in, so);
      const double gen_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fmt::print("# {} problem generated in {:.2f} s\n", shape_s, gen_s);
      for (const auto& b : cdq::bench::split(bits_list, ',')) {
        std::map<std::string, cdq::SolveResult> done;
        for (const auto& spec : specs) {
          cdq::SolverOptions opt;
          opt.grid.bits = std::stoi(b);
          opt.grid.group_size = group;
          opt.act_order = spec.act_order;
          opt.cd_init = spec.init;
          opt.threads = threads;
          if (cd_budget >= 0) opt.cd_budget = cd_budget;
          if (warm >= 0) opt.cd_warm_sweeps = warm;
          if (rescale >= 0) opt.cd_rescale_rounds = rescale;
          cdq::SolveResult r = solve_timed(p, spec.method, opt, min_time);
          std::string ratio = "", reduction = "";
          nlohmann::json rec = {{"shape", shape_s},
                                {"d_out", d_out},
                                {"d_in", d_in},
                                {"bits", opt.grid.bits},
                                {"group", group},
                                {"method", spec.name},
                                {"seconds", r.seconds},
                                {"relative", r.relative()},
                                {"objective", r.objective},
                                {"refine_seconds", r.seconds_refine},
                                {"moves_per_row", r.moves_per_row},
                                {"convergence", r.convergence}};
          if (spec.method.refined()) {
            // The entry of the start alone, with the same act-order setting.
            const std::string base =
                std::string(cdq::start_of(spec.method, opt).name()) + (spec.act_order ? "-ao" : "");
            const auto it = done.find(base);
            if (it != done.end()) {
              const double rt = r.seconds_refine / it->second.seconds;
              const double red = 1.0 - r.objective / it->second.objective;
              ratio = fmt::format("{:.2f}", rt);
              reduction = fmt::format("{:.2f}%", 100.0 * red);
              rec["refine_over_start_seconds"] = rt;
              rec["reduction_vs_start"] = red;
            }
          }
          fmt::print("{:>11} {:>4} {:>9} {:>9.3f} {:>10.5f} {:>9.3f} {:>9.1f} {:>10} {:>10}\n",
                     shape_s, opt.grid.bits, spec.name, r.seconds, r.relative(), r.seconds_refine,
                     r.moves_per_row, ratio, reduction);
          std::fflush(stdout);
          records.push_back(rec);
          done[spec.name] = std::move(r);
        }
      }
    }
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      CDQ_CHECK(out.good(), "cannot write {}", json_path);
      out << records.dump(2) << "\n";
    }
  } catch (const cdq::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
