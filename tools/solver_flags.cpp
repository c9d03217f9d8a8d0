#include "solver_flags.hpp"

#include <omp.h>

#include "cli_checks.hpp"

namespace cdq::cli {

void add_solver_flags(CLI::App* cmd, SolverFlags& f, bool grid_flags) {
  if (grid_flags) {
    cmd->add_option("--bits", f.bits, "Bits per weight of the integer grid (2..8)")
        ->check(CLI::Range(2, 8))
        ->capture_default_str();
    cmd->add_option("--group", f.group,
                    "Columns per quantization group along the input dimension; 0 = one group "
                    "per output channel. A ragged last group is allowed")
        ->check(kNonNegative)
        ->capture_default_str();
  }
  cmd->add_flag("--sym", f.sym, "Symmetric grid (zero point fixed at 2^(bits-1))");
  cmd->add_flag("--act-order", f.act_order, "GPTQ: quantize columns in descending diag(H) order");
  cmd->add_flag("--static-groups", f.static_groups,
                "GPTQ: fit every group's scales up front on the original weights");
  cmd->add_option("--percdamp", f.percdamp, "Damping: percdamp * mean(diag H) added to H")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  cmd->add_option("--scales", f.scales,
                  "Scale search: " + method_list(scale_search_names()) +
                      " (owc: H-weighted; hqq: HQQ's zero points, integer, data-free)")
      ->check(CLI::IsMember(scale_search_names()))
      ->capture_default_str();
  cmd->add_option("--cd-budget", f.cd_budget,
                  "CD family: steps per row as a multiple of d_in (stops early at an optimum)")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--cd-rescale", f.cd_rescale,
                  "CD family: rounds of refitting every group scale to the codes, each "
                  "followed by more descent. Integer grids: zero points kept, per-channel "
                  "asymmetric rows also try zero +-1. GGUF types: every block's fp16 d, and "
                  "K-quants' integer sub-scales within their bit fields; mins kept. "
                  "0 = codes only, on the start's grid")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--bcd-block", f.bcd_block, "BCD: coordinates moved jointly per step")
      ->check(CLI::Range(2, 4))
      ->capture_default_str();
  cmd->add_option("--cd-init", f.cd_init, "Start of cd/bcd/cyclic: " + method_list(start_names()))
      ->check(CLI::IsMember(start_names()))
      ->capture_default_str();
  cmd->add_flag("--hqq-integer-zeros", f.hqq_integer_zeros,
                "hqq: integer zero points even where fractional ones could be stored (they are "
                "integer anyway for GPTQ checkpoints and before a CD scale refit)");
  cmd->add_option("--higgs-block", f.higgs_block,
                  "higgs, higgs-p2: inputs per Hadamard block, a power of two in 64..1024; 0 = "
                  "min(512, d_in rounded up to a power of two), at least 64")
      ->check([](const std::string& s) -> std::string {
        int h = -1;
        try {
          h = std::stoi(s);
        } catch (const std::exception&) {
        }
        if (h == 0 || (h >= 64 && h <= 1024 && (h & (h - 1)) == 0)) return "";
        return "--higgs-block must be a power of two in 64..1024 (or 0 for the default), got " + s;
      })
      ->capture_default_str();
  cmd->add_option("--threads", f.threads, "Threads (0 = all cores)")
      ->check(kNonNegative)
      ->capture_default_str();
}

std::vector<std::string> names_of(const std::vector<Method>& methods) {
  std::vector<std::string> out;
  for (const Method& m : methods) out.emplace_back(m.name());
  return out;
}

SolverOptions SolverFlags::to_options() const {
  SolverOptions o;
  o.grid.bits = bits;
  o.grid.group_size = group;
  o.grid.symmetric = sym;
  o.grid.search = parse_scale_search(scales);
  CDQ_CHECK(!(sym && o.grid.search == ScaleSearch::Hqq),
            "--scales hqq fits the zero points, which --sym fixes: drop one of them");
  o.percdamp = percdamp;
  o.act_order = act_order;
  o.static_groups = static_groups;
  o.cd_budget = cd_budget;
  o.bcd_block = bcd_block;
  o.cd_rescale_rounds = cd_rescale;
  o.cd_init = parse_method(cd_init);
  o.hqq_integer_zero = hqq_integer_zeros;
  o.higgs_block = higgs_block;
  o.threads = threads;
  if (threads > 0) omp_set_num_threads(threads);
  return o;
}

}  // namespace cdq::cli
