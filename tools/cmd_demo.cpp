// cdquant demo: the main job on an embedded model, printed as one table.
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <cdquant/demo.hpp>
#include <cdquant/model_locator.hpp>
#include <filesystem>
#include <sstream>

#include "cli_checks.hpp"
#include "commands.hpp"
#include "solver_flags.hpp"

namespace cdq::cli {

namespace {

struct DemoFlags {
  std::string model = "stories260K";
  std::string calib = "data/sotu-calib.txt";
  std::string text = "data/sotu-test.txt";
  std::string methods = fmt::format("{}", fmt::join(names_of(default_comparison()), ","));
  std::vector<int> bits = {4, 3, 2};
  std::vector<int> groups = {0, 32};
  DemoOptions options;
  SolverFlags solver;
};

std::vector<Method> parse_methods(const std::string& list) {
  std::vector<Method> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(parse_method(item));
  CDQ_CHECK(!out.empty(), "--methods is empty");
  return out;
}

void check_text(const std::string& path, const char* flag) {
  CDQ_CHECK(std::filesystem::exists(path),
            "{} not found ({}): run `bash scripts/setup.sh` to fetch the State of the Union "
            "text, or pass {} FILE",
            path, flag, flag);
}

std::string group_label(int g) {
  return g <= 0 ? "channel" : fmt::format("g{}", g);
}

void print_row(const DemoRow& r) {
  fmt::print("{:<8} {:>4} {:>8} {:>10.3f} {:>10.4f} {:>8.4f} {:>12.3e} {:>8.1f}\n", r.method.name(),
             r.bits, group_label(r.group), r.ppl, r.kl, r.top1, r.mean_relative, r.quant_seconds);
  std::fflush(stdout);
}

void run(DemoFlags& f, const std::string& exe) {
  DemoOptions o = f.options;
  if (std::filesystem::exists(f.model)) {
    o.model_path = f.model;
  } else {
    const LocatedModel m = locate_model(f.model, exe);
    o.model_path = m.model_path;
    if (o.tokenizer_path.empty()) o.tokenizer_path = m.tokenizer_path;
  }
  check_text(f.calib, "--calib");
  check_text(f.text, "--text");
  o.calib_path = f.calib;
  o.test_path = f.text;
  o.methods = parse_methods(f.methods);
  o.bits = f.bits;
  o.groups = f.groups;
  o.solver = f.solver.to_options();
  fmt::print("model {}  calibration {} ({} windows x {} tokens)  test {}\n", o.model_path,
             o.calib_path, o.nsamples, o.seqlen, o.test_path);
  fmt::print("{:<8} {:>4} {:>8} {:>10} {:>10} {:>8} {:>12} {:>8}\n", "method", "bits", "group",
             "ppl", "KL", "top1", "layer rel.", "quant s");
  const DemoResult res = run_demo(o, print_row);
  fmt::print("{:<8} {:>4} {:>8} {:>10.3f} {:>10} {:>8}   ({} scored tokens)\n", "float", 32, "-",
             res.float_ppl, "0", "1", res.eval_tokens);
}

}  // namespace

void register_demo(CLI::App& app, const std::string& exe) {
  auto f = std::make_shared<DemoFlags>();
  auto* cmd = app.add_subcommand(
      "demo",
      "Quantize an embedded model with RTN, GPTQ and CD at 4/3/2 bits (per channel and g32) "
      "and print perplexity, KL divergence and top-1 agreement against the float model");
  cmd->add_option("--model", f->model,
                  "Default model name (stories260K, babyllama-tok105) or a checkpoint path")
      ->capture_default_str();
  cmd->add_option("--tokenizer", f->options.tokenizer_path, "Tokenizer (default: beside it)");
  cmd->add_option("--calib", f->calib, "Calibration text")->capture_default_str();
  cmd->add_option("--text", f->text, "Held-out test text")->capture_default_str();
  cmd->add_option("--methods", f->methods, "Comma-separated methods, of:\n" + method_help())
      ->capture_default_str();
  cmd->add_option("--bits", f->bits, "Bit widths to try")->delimiter(',')->capture_default_str();
  cmd->add_option("--groups", f->groups, "Group sizes to try (0 = per channel)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--nsamples", f->options.nsamples, "Calibration windows")->capture_default_str();
  cmd->add_option("--seqlen", f->options.seqlen, "Calibration window length")
      ->capture_default_str();
  cmd->add_option("--ctx", f->options.eval_ctx, "Evaluation window length")->capture_default_str();
  cmd->add_option("--max-windows", f->options.max_windows, "Evaluation windows (0 = all)")
      ->capture_default_str();
  cmd->add_option("--seed", f->options.seed, "Calibration sampling seed")
      ->check(kSeed)
      ->capture_default_str();
  add_solver_flags(cmd, f->solver, /*grid_flags=*/false);
  cmd->callback([f, exe] { run(*f, exe); });
}

}  // namespace cdq::cli
