// `cdquant layer`: solve one layer problem (W and H, from a safetensors file or synthetic)
// with several methods and print objective, relative error and time for each.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cdquant/safetensors.hpp>
#include <cdquant/solver.hpp>
#include <cdquant/synthetic.hpp>
#include <charconv>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_checks.hpp"
#include "commands.hpp"
#include "solver_flags.hpp"

namespace cdq::cli {

namespace {

struct LayerArgs {
  std::string file;
  std::string synthetic;
  std::vector<std::string> methods = names_of(default_comparison());
  SolverFlags solver;  // --bits, --group, ... shared with the other solving subcommands
  uint64_t seed = 1;
  bool json = false;
};

struct Problem {
  Matrix w;            // [d_out, d_in]
  Matrix h;            // [d_in, d_in]
  std::string source;  // one line saying where W and H came from
};

// "d_out,d_in" -> two positive sizes.
std::pair<int64_t, int64_t> parse_dims(const std::string& s) {
  const auto comma = s.find(',');
  int64_t dims[2] = {0, 0};
  bool ok = comma != std::string::npos;
  const std::string_view parts[2] = {std::string_view(s).substr(0, comma),
                                     ok ? std::string_view(s).substr(comma + 1) : ""};
  for (int i = 0; ok && i < 2; ++i) {
    const auto r = std::from_chars(parts[i].data(), parts[i].data() + parts[i].size(), dims[i]);
    ok = r.ec == std::errc() && r.ptr == parts[i].data() + parts[i].size() && dims[i] > 0 &&
         dims[i] <= 65536;
  }
  CDQ_CHECK(ok, "--synthetic expects d_out,d_in (two integers in 1..65536, e.g. 768,768), got '{}'",
            s);
  return {dims[0], dims[1]};
}

Matrix read_2d(const SafetensorsFile& f, const char* name, const char* shape) {
  const TensorInfo& t = f.info(name);
  CDQ_CHECK(t.shape.size() == 2, "{}: tensor '{}' must be 2-D {}, got {} dimensions", f.path(),
            name, shape, t.shape.size());
  return f.read_matrix(name);
}

Problem load_file(const std::string& path) {
  const SafetensorsFile f(path);
  CDQ_CHECK(f.contains("W"), "{}: missing tensor 'W' [d_out, d_in] (the file has: {})", path,
            fmt::join(f.names(), ", "));
  Problem p;
  p.w = read_2d(f, "W", "[d_out, d_in]");
  if (f.contains("H")) {
    p.h = read_2d(f, "H", "[d_in, d_in]");
    p.source =
        fmt::format("{}: W [{}, {}], H [{}, {}]", path, p.w.rows, p.w.cols, p.h.rows, p.h.cols);
  } else {
    CDQ_CHECK(f.contains("X"),
              "{}: missing tensor 'H' [d_in, d_in] or calibration inputs 'X' [n, d_in]", path);
    const Matrix x = read_2d(f, "X", "[n, d_in]");
    CDQ_CHECK(x.cols == p.w.cols,
              "{}: shape mismatch: W is [{}, {}] so X must be [n, {}], got [{}, {}]", path,
              p.w.rows, p.w.cols, p.w.cols, x.rows, x.cols);
    CDQ_CHECK(x.rows > 0, "{}: X has no rows", path);
    CDQ_CHECK(all_finite(x.span()), "{}: X contains NaN or Inf", path);
    p.h = hessian_from_inputs(x);
    p.source = fmt::format("{}: W [{}, {}], H = (2/n) X^T X from X [{}, {}]", path, p.w.rows,
                           p.w.cols, x.rows, x.cols);
  }
  try {
    validate_layer_problem(p.w, p.h);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  return p;
}

Problem load_problem(const LayerArgs& a) {
  CDQ_CHECK(a.file.empty() != a.synthetic.empty(),
            "give either a safetensors FILE or --synthetic d_out,d_in (see --help)");
  if (!a.file.empty()) return load_file(a.file);
  const auto [d_out, d_in] = parse_dims(a.synthetic);
  SyntheticOptions opt;
  opt.seed = a.seed;
  Problem p;
  LayerProblem lp = make_synthetic_problem(d_out, d_in, opt);
  p.w = std::move(lp.w);
  p.h = std::move(lp.h);
  p.source = fmt::format("synthetic W [{}, {}], seed {}", d_out, d_in, a.seed);
  return p;
}

// One method's outcome: a result, or the error it raised.
struct Row {
  Method method;
  SolveResult res;
  std::string error;
};

std::string notes_of(const Row& r) {
  if (!r.error.empty()) return "error: " + r.error;
  std::vector<std::string> notes = r.res.notes;
  if (r.method.refined()) notes.push_back(fmt::format("{:.1f} moves/row", r.res.moves_per_row));
  return fmt::format("{}", fmt::join(notes, "; "));
}

void print_table(const LayerArgs& a, const Problem& p, const std::vector<Row>& rows) {
  const std::string group = a.solver.group > 0 ? std::to_string(a.solver.group) : "row";
  size_t width = 8;  // the method column fits the longest name (easyquant, higgs-p2)
  for (const Row& r : rows) width = std::max(width, r.method.name().size());
  fmt::print("{}\n", p.source);
  fmt::print("{:<{}} {:>4} {:>5} {:>13} {:>10} {:>9} {:>9}  {}\n", "method", width, "bits", "group",
             "objective", "relative", "seconds", "refine", "notes");
  for (const Row& r : rows) {
    if (!r.error.empty()) {
      fmt::print("{:<{}} {:>4} {:>5} {:>13} {:>10} {:>9} {:>9}  {}\n", r.method.name(), width,
                 a.solver.bits, group, "-", "-", "-", "-", notes_of(r));
      continue;
    }
    const std::string refine =
        r.method.refined() ? fmt::format("{:.3f}", r.res.seconds_refine) : "-";
    fmt::print("{:<{}} {:>4} {:>5} {:>13.6g} {:>10.6f} {:>9.3f} {:>9}  {}\n", r.method.name(),
               width, a.solver.bits, group, r.res.objective, r.res.relative(), r.res.seconds,
               refine, notes_of(r));
  }
}

void print_json(const LayerArgs& a, const std::vector<Row>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const Row& r : rows) {
    nlohmann::json o = {{"method", std::string(r.method.name())},
                        {"bits", a.solver.bits},
                        {"group", a.solver.group}};
    if (!r.error.empty()) {
      o["error"] = r.error;
    } else {
      o["objective"] = r.res.objective;
      o["relative"] = r.res.relative();
      o["seconds"] = r.res.seconds;
      o["seconds_refine"] = r.res.seconds_refine;
      o["notes"] = r.res.notes;
      if (r.method.refined()) o["moves_per_row"] = r.res.moves_per_row;
    }
    out.push_back(std::move(o));
  }
  fmt::print("{}\n", out.dump(2));
}

void run_layer(const LayerArgs& a) {
  std::vector<Method> methods;
  for (const auto& m : a.methods) methods.push_back(parse_method(m));
  CDQ_CHECK(!methods.empty(), "--methods is empty");
  const Problem p = load_problem(a);
  const SolverOptions options = a.solver.to_options();

  std::vector<Row> rows;
  std::vector<std::string> failed;
  for (Method m : methods) {
    Row r{m, {}, {}};
    try {
      r.res = solve_layer(p.w, p.h, m, options);
    } catch (const Error& e) {
      r.error = e.what();
      failed.push_back(fmt::format("{} ({})", m.name(), r.error));
    }
    rows.push_back(std::move(r));
  }
  if (a.json)
    print_json(a, rows);
  else
    print_table(a, p, rows);
  CDQ_CHECK(failed.empty(), "{} of {} methods failed: {}", failed.size(), methods.size(),
            fmt::join(failed, "; "));
}

}  // namespace

void register_layer(CLI::App& app) {
  auto args = std::make_shared<LayerArgs>();
  auto* cmd = app.add_subcommand(
      "layer",
      "Solve one layer problem min tr((Q-W) H (Q-W)^T) with several methods and compare them.\n"
      "Input: a safetensors FILE with W [d_out, d_in] and either H [d_in, d_in] or calibration\n"
      "inputs X [n, d_in] (H = (2/n) X^T X), as F32, F16 or BF16; or --synthetic d_out,d_in.");
  auto* file = cmd->add_option("file", args->file,
                               "safetensors file holding W and H (or X); omit with --synthetic");
  cmd->add_option("--synthetic", args->synthetic,
                  "use a seeded synthetic problem of this shape instead of a file, e.g. 768,768")
      ->excludes(file);
  cmd->add_option("--methods", args->methods, "comma-separated methods, of:\n" + method_help())
      ->delimiter(',')
      ->capture_default_str();
  add_solver_flags(cmd, args->solver);
  cmd->add_option("--seed", args->seed, "seed of the --synthetic problem")
      ->check(kSeed)
      ->capture_default_str();
  cmd->add_flag("--json", args->json,
                "print a JSON list of {method, bits, group, objective, relative, seconds, "
                "seconds_refine} instead of the table");
  cmd->callback([args] { run_layer(*args); });
}

}  // namespace cdq::cli
