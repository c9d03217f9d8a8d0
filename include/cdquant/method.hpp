// The method registry: every layer solver cdquant knows is one row of one table
// (src/quant/method_registry.cpp). A method is a start, which chooses a grid and codes (RTN,
// OWC, GPTQ), optionally followed by a refinement, which moves the codes (and the scales the
// grid constraint leaves free) downhill on tr((Q - W) H (Q - W)^T) from that start (greedy,
// block or cyclic coordinate descent). Names, help text, validation, defaults and dispatch all
// come from the table, so adding a method is one new file plus one row (README, "Adding a
// method").
#pragma once

#include <cdquant/grid_constraint.hpp>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cdq {

struct Matrix;
struct SolverOptions;
struct SolveResult;
struct StageState;  // what a start hands its refinement (src/quant/method_stages.hpp)

// A start: fills res.grid, res.codes (and notes) from W and H; a start whose weights are not
// grid values (kept outliers, a rotated basis) also fills res.q and says so in the StageState.
// A refinement: improves grid and codes. Both run once per layer solve.
using StartFn = void (*)(const Matrix& w, const Matrix& h, const SolverOptions& options,
                         SolveResult& res, StageState& state);
using RefineFn = void (*)(const Matrix& w, const Matrix& h, const SolverOptions& options,
                          SolveResult& res, StageState& state);

struct Refinement {
  std::string_view name;  // "greedy CD", "block CD", "cyclic CD"
  RefineFn run;
};

// When the method reads H (calibration): always; only for an H-weighted scale search (RTN on
// a minmax, mse or hqq grid needs no calibration data, with --scales owc it does); or never
// (the data-free starts hqq, easyquant, higgs: they are handed H and ignore it).
enum class HessianUse { Always, ScaleSearch, Never };

// Bit set of the GridKinds (grid_constraint.hpp) a method can solve under.
constexpr unsigned grid_bit(GridKind k) {
  return 1u << static_cast<unsigned>(k);
}
constexpr unsigned kFreeAndBlockGrids = grid_bit(GridKind::Free) | grid_bit(GridKind::GgmlBlock);
// Every kind, codebook grids included (methods that only pick codes on a given grid).
constexpr unsigned kAllGrids = kFreeAndBlockGrids | grid_bit(GridKind::Codebook);

// Nominal bits per weight of a method's stored layer (codes, scales, zero points, ...) for a
// d_in-input layer under these options, on a free grid.
using BitsPerWeightFn = double (*)(const SolverOptions& options, int64_t d_in);

// One row of the registry.
struct MethodInfo {
  std::string_view name;         // what --method, --methods (and, for starts, --cd-init) take
  std::string_view description;  // one line, for --help
  StartFn start;                 // null: the SolverOptions::cd_init start (--cd-init)
  const Refinement* refinement;  // null: the start alone (then the method is a start itself)
  HessianUse hessian;
  unsigned grids;  // grid_bit()s of the grid constraints it supports
  // Null when grid and codes hold the result (any format can pack it). Otherwise one sentence
  // saying why only float outputs can store it (the SolveResult's q); such a start cannot be
  // refined either (the refinement moves codes on the grid, which do not describe q).
  const char* float_only_reason = nullptr;
  // Null: an integer grid's b + (16-bit scale [+ b-bit zero point]) per group.
  BitsPerWeightFn bits_per_weight = nullptr;

  bool is_start() const { return start != nullptr && refinement == nullptr; }
  // A start that a refinement can follow (a --cd-init value): its grid and codes are its result.
  bool refinable_start() const { return is_start() && float_only_reason == nullptr; }
};

// A registered method: a handle to its row (compares by identity). Default: none.
class Method {
 public:
  Method() = default;
  explicit Method(const MethodInfo& row) : row_(&row) {}
  const MethodInfo& info() const;  // throws Error for the empty handle
  std::string_view name() const { return row_ ? row_->name : std::string_view("none"); }
  bool empty() const { return row_ == nullptr; }
  bool refined() const { return row_ != nullptr && row_->refinement != nullptr; }
  friend bool operator==(const Method&, const Method&) = default;

 private:
  const MethodInfo* row_ = nullptr;
};

// The rows, in table order.
std::span<const MethodInfo> method_table();

// The row named `name`; unknown names throw an Error listing every valid one.
Method parse_method(std::string_view name);
// Every method name, in table order, and the refinable starts (the values of --cd-init).
std::vector<std::string> method_names();
std::vector<std::string> start_names();
// "name — description" lines, one per row (no final newline), for --help.
std::string method_help();
// "a, b, c or d": the names joined for messages.
std::string method_list(const std::vector<std::string>& names);

// The start a method runs, as the row of that start alone: its own start's, or options.cd_init
// (checked to be a refinable start).
Method start_of(Method method, const SolverOptions& options);
// Whether the method reads H with these options (MethodInfo::hessian).
bool needs_hessian(Method method, const SolverOptions& options);
// Whether the grid the method starts on is HQQ's: the hqq start (also as --cd-init), or
// --scales hqq. A format that fixes block grids (GGUF) then fits them by HQQ.
bool uses_hqq_block_scales(Method method, const SolverOptions& options);
// Whether the method can solve under a grid constraint of this kind. Refinements that start
// from --cd-init also need that start to support it (solve_layer checks both).
bool supports(Method method, GridKind kind);
// Nominal bits per weight of the method's layer of d_in inputs (MethodInfo::bits_per_weight, or
// its start's, or the integer grid's); refinements store what their start stores.
double bits_per_weight(Method method, const SolverOptions& options, int64_t d_in);
// The integer grid's: b + (16 [+ b for an asymmetric zero point]) per group of --group columns.
double integer_grid_bits_per_weight(const SolverOptions& options, int64_t d_in);

// The defaults of the front ends: `cdquant quantize --method` (cd), --cd-init (gptq), and the
// methods `cdquant layer` and `cdquant demo` compare unless told otherwise (rtn, gptq, cd).
Method default_method();
Method default_start();
std::vector<Method> default_comparison();

}  // namespace cdq
