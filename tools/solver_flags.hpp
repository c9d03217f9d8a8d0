// Solver options shared by the subcommands that solve layers (layer, quantize, demo).
#pragma once

#include <CLI/CLI.hpp>
#include <cdquant/solver.hpp>
#include <string>
#include <vector>

namespace cdq::cli {

struct SolverFlags {
  int bits = 4;
  int group = 0;
  bool sym = false;
  bool act_order = false;
  bool static_groups = false;
  double percdamp = 0.01;
  std::string scales = "minmax";
  double cd_budget = SolverOptions{}.cd_budget;
  int cd_rescale = SolverOptions{}.cd_rescale_rounds;
  int bcd_block = SolverOptions{}.bcd_block;
  std::string cd_init = std::string(default_start().name());
  bool hqq_integer_zeros = false;
  int higgs_block = 0;
  int threads = 0;

  SolverOptions to_options() const;  // validates; throws cdq::Error
};

// Adds --sym, --act-order, --static-groups, --percdamp, --scales, --cd-budget, --bcd-block,
// --cd-init, --hqq-integer-zeros, --higgs-block, --threads, and with grid_flags also --bits
// and --group.
void add_solver_flags(CLI::App* cmd, SolverFlags& flags, bool grid_flags = true);

// The names of `methods` (option defaults from the method registry's).
std::vector<std::string> names_of(const std::vector<Method>& methods);

}  // namespace cdq::cli
