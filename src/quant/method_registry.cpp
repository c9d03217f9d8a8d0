// The method registry (method.hpp): one row per method. The only file that names methods.
#include <fmt/format.h>

#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/method.hpp>

#include "quant/method_stages.hpp"

namespace cdq {

namespace {

// Refinements: each can follow any start.
void greedy_cd(const Matrix& w, const Matrix& h, const SolverOptions& o, SolveResult& res,
               StageState& st) {
  refine_cd(CdKind::Greedy, w, h, o, res, st);
}
void block_cd(const Matrix& w, const Matrix& h, const SolverOptions& o, SolveResult& res,
              StageState& st) {
  refine_cd(CdKind::Block, w, h, o, res, st);
}
void cyclic_cd(const Matrix& w, const Matrix& h, const SolverOptions& o, SolveResult& res,
               StageState& st) {
  refine_cd(CdKind::Cyclic, w, h, o, res, st);
}

Method find_method(std::string_view name);

// Data-aware HIGGS: GPTQ, or CD from GPTQ, on the rotated problem (start_higgs_aware.cpp).
void start_higgs_gptq(const Matrix& w, const Matrix& h, const SolverOptions& o, SolveResult& res,
                      StageState& st) {
  solve_higgs_rotated(w, h, find_method("gptq"), o, res, st);
}
void start_higgs_cd(const Matrix& w, const Matrix& h, const SolverOptions& o, SolveResult& res,
                    StageState& st) {
  solve_higgs_rotated(w, h, find_method("cd"), o, res, st);
}

constexpr Refinement kGreedy{"greedy CD", greedy_cd};
constexpr Refinement kBlock{"block CD", block_cd};
constexpr Refinement kCyclic{"cyclic CD", cyclic_cd};

constexpr StartFn kCdInit = nullptr;  // the start options.cd_init names (--cd-init)
// RTN, GPTQ and the CD family pick codes on any grid, codebooks included. OWC is a scale
// search on integer grids (under a fixed grid it would silently be RTN), so it and the methods
// starting from it do not take codebook grids.
constexpr unsigned kAll = kAllGrids;
constexpr unsigned kNoCodebook = kFreeAndBlockGrids;
// Data-free methods fit their own grids (or none): the GGUF types' fixed grids leave them
// nothing to choose. hqq is the exception: the GGUF writer fits the block parameters by HQQ
// for it (uses_hqq_block_scales), and it rounds to them.
constexpr unsigned kFree = grid_bit(GridKind::Free);

constexpr const char* kOutliersInFloat =
    "keeps outlier weights in float, which GGUF and GPTQ cannot store";
constexpr const char* kOnlineHadamard =
    "needs the online Hadamard transform at inference, which no GGUF or GPTQ kernel runs";

// The table. A start alone (no refinement) is also a valid --cd-init value, unless it is
// float-only (its grid and codes do not hold its result).
constexpr MethodInfo kMethods[] = {
    {"rtn", "round to nearest on the --scales grid", start_rtn, nullptr, HessianUse::ScaleSearch,
     kAll},
    {"owc", "round to nearest on the H-weighted OWC grid (optimal weight clipping)", start_owc,
     nullptr, HessianUse::Always, kNoCodebook},
    {"gptq", "GPTQ: columns rounded in turn, the error spread over the rest through H^-1",
     start_gptq, nullptr, HessianUse::Always, kAll},
    {"cd", "greedy coordinate descent from the --cd-init start", kCdInit, &kGreedy,
     HessianUse::Always, kAll},
    {"bcd", "block coordinate descent (--bcd-block coordinates per step) from --cd-init", kCdInit,
     &kBlock, HessianUse::Always, kAll},
    {"cyclic", "cyclic coordinate descent (passes over the coordinates) from --cd-init", kCdInit,
     &kCyclic, HessianUse::Always, kAll},
    {"owc-cd", "greedy coordinate descent from the OWC codes", start_owc, &kGreedy,
     HessianUse::Always, kNoCodebook},
    {"owc-bcd", "block coordinate descent from the OWC codes", start_owc, &kBlock,
     HessianUse::Always, kNoCodebook},
    // Data-free (no calibration data; H is handed over and ignored).
    {"hqq",
     "round to nearest on HQQ's grid: zero points fitted to the lp error, fractional except "
     "for GPTQ checkpoints, refits or --hqq-integer-zeros; asymmetric, --scales not read; GGUF: "
     "HQQ's fit of the block scales and mins (types with mins); no calibration data",
     start_hqq, nullptr, HessianUse::Never, kFreeAndBlockGrids, nullptr, hqq_bits_per_weight},
    {"easyquant",
     "EasyQuant: per channel only (--group 0), symmetric, the step fitted by gradient descent, "
     "weights beyond 3 sigma of the row kept in float; no calibration data",
     start_easyquant, nullptr, HessianUse::Never, kFree, kOutliersInFloat,
     easyquant_bits_per_weight},
    {"higgs",
     "HIGGS: blocks of --higgs-block inputs Hadamard-rotated and rounded on the MSE-optimal "
     "Gaussian levels (p = 1), --bits 2..4; no calibration data",
     start_higgs, nullptr, HessianUse::Never, kFree, kOnlineHadamard, higgs_p1_bits_per_weight},
    {"higgs-p2",
     "HIGGS on 2-D Gaussian grids (pairs of rotated inputs coded jointly, p = 2), --bits 2..4; "
     "no calibration data",
     start_higgs_p2, nullptr, HessianUse::Never, kFree, kOnlineHadamard, higgs_p2_bits_per_weight},
    // Data-aware HIGGS: the same rotation and grid, codes chosen against H.
    {"higgs-gptq",
     "GPTQ on the Hadamard-rotated problem (W R^T, R H R^T) with HIGGS's p = 1 grid as the grid, "
     "--bits 2..4",
     start_higgs_gptq, nullptr, HessianUse::Always, kFree, kOnlineHadamard,
     higgs_p1_bits_per_weight},
    {"higgs-cd",
     "greedy CD from GPTQ on the Hadamard-rotated problem with HIGGS's p = 1 grid (CD inside "
     "incoherence processing), --bits 2..4",
     start_higgs_cd, nullptr, HessianUse::Always, kFree, kOnlineHadamard, higgs_p1_bits_per_weight},
};

// The defaults of the front ends (method.hpp).
constexpr std::string_view kDefaultMethod = "cd";
constexpr std::string_view kDefaultStart = "gptq";
constexpr std::string_view kDefaultComparison[] = {"rtn", "gptq", "cd"};

const MethodInfo* find(std::string_view name) {
  for (const MethodInfo& m : kMethods)
    if (m.name == name) return &m;
  return nullptr;
}

Method find_method(std::string_view name) {
  const MethodInfo* m = find(name);
  CDQ_ASSERT(m != nullptr);
  return Method(*m);
}

}  // namespace

const MethodInfo& Method::info() const {
  CDQ_CHECK(row_ != nullptr, "no method given (expected {})", method_list(method_names()));
  return *row_;
}

std::span<const MethodInfo> method_table() {
  return kMethods;
}

Method parse_method(std::string_view name) {
  const MethodInfo* m = find(name);
  if (m == nullptr) fail("unknown method '{}' (expected {})", name, method_list(method_names()));
  return Method(*m);
}

std::vector<std::string> method_names() {
  std::vector<std::string> out;
  for (const MethodInfo& m : kMethods) out.emplace_back(m.name);
  return out;
}

std::vector<std::string> start_names() {
  std::vector<std::string> out;
  for (const MethodInfo& m : kMethods)
    if (m.refinable_start()) out.emplace_back(m.name);
  return out;
}

std::string method_help() {
  size_t width = 0;
  for (const MethodInfo& m : kMethods) width = std::max(width, m.name.size());
  std::string out;
  for (const MethodInfo& m : kMethods)
    out += fmt::format("{}{:<{}} — {}", out.empty() ? "" : "\n", m.name, width, m.description);
  return out;
}

std::string method_list(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

Method start_of(Method method, const SolverOptions& options) {
  const MethodInfo& m = method.info();
  if (m.start == nullptr) {
    CDQ_CHECK(!options.cd_init.empty() && options.cd_init.info().refinable_start(),
              "cd_init must be {}, got '{}'{}", method_list(start_names()), options.cd_init.name(),
              !options.cd_init.empty() && options.cd_init.info().float_only_reason
                  ? fmt::format(" (it cannot be refined: it {})",
                                options.cd_init.info().float_only_reason)
                  : "");
    return options.cd_init;
  }
  for (const MethodInfo& s : kMethods)
    if (s.is_start() && s.start == m.start) return Method(s);
  fail("method '{}' starts from a start that has no row of its own", m.name);
}

bool needs_hessian(Method method, const SolverOptions& options) {
  switch (method.info().hessian) {
    case HessianUse::Always:
      return true;
    case HessianUse::ScaleSearch:  // a fixed grid is not searched
      return options.grid.search == ScaleSearch::Owc && options.fixed_grid() == nullptr;
    case HessianUse::Never:
      return false;
  }
  return true;
}

bool uses_hqq_block_scales(Method method, const SolverOptions& options) {
  return options.grid.search == ScaleSearch::Hqq ||
         start_of(method, options).info().start == start_hqq;
}

bool supports(Method method, GridKind kind) {
  return (method.info().grids & grid_bit(kind)) != 0;
}

double integer_grid_bits_per_weight(const SolverOptions& options, int64_t d_in) {
  const GridSpec& g = options.grid;
  const int64_t group = g.group_size > 0 ? g.group_size : d_in;
  const int64_t n_groups = (d_in + group - 1) / group;
  const double per_group = 16.0 + (g.symmetric ? 0.0 : g.bits);  // fp16 scale, b-bit zero
  return g.bits + per_group * static_cast<double>(n_groups) / static_cast<double>(d_in);
}

double bits_per_weight(Method method, const SolverOptions& options, int64_t d_in) {
  CDQ_CHECK(d_in > 0, "bits per weight of a layer with {} inputs", d_in);
  const MethodInfo& m = method.info();
  if (m.bits_per_weight != nullptr) return m.bits_per_weight(options, d_in);
  const MethodInfo& from = start_of(method, options).info();
  return from.bits_per_weight != nullptr ? from.bits_per_weight(options, d_in)
                                         : integer_grid_bits_per_weight(options, d_in);
}

Method default_method() {
  static const Method m = parse_method(kDefaultMethod);
  return m;
}

Method default_start() {
  static const Method m = parse_method(kDefaultStart);
  return m;
}

std::vector<Method> default_comparison() {
  std::vector<Method> out;
  for (std::string_view name : kDefaultComparison) out.push_back(parse_method(name));
  return out;
}

}  // namespace cdq
