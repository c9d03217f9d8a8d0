// The method registry: every layer solver cdquant knows is one row of one table
// (src/quant/method_registry.cpp). A method is a start, which chooses a grid and codes (RTN,
// OWC, GPTQ), optionally followed by a refinement, which moves the codes (and the scales the
// grid constraint leaves free) downhill on tr((Q - W) H (Q - W)^T) from that start (greedy,
// block or cyclic coordinate descent). Names, help text, validation, defaults and dispatch all
// come from the table, so adding a method is one new file plus one row (README, "Adding a
// method").
#pragma once

#include <cdquant/grid_constraint.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cdq {

struct Matrix;
struct SolverOptions;
struct SolveResult;
struct StageState;  // what a start hands its refinement (src/quant/method_stages.hpp)

// A start: fills res.grid, res.codes (and notes) from W and H. A refinement: improves them.
// Both run once per layer solve.
using StartFn = void (*)(const Matrix& w, const Matrix& h, const SolverOptions& options,
                         SolveResult& res, StageState& state);
using RefineFn = void (*)(const Matrix& w, const Matrix& h, const SolverOptions& options,
                          SolveResult& res, StageState& state);

struct Refinement {
  std::string_view name;  // "greedy CD", "block CD", "cyclic CD"
  RefineFn run;
};

// When the method reads H (calibration): always; only for an H-weighted scale search (RTN on
// a minmax or mse grid needs no calibration data, with --scales owc it does); or never (room for
// data-free starts such as HQQ; none yet).
enum class HessianUse { Always, ScaleSearch, Never };

// Bit set of the GridKinds (grid_constraint.hpp) a method can solve under.
constexpr unsigned grid_bit(GridKind k) {
  return 1u << static_cast<unsigned>(k);
}
constexpr unsigned kFreeAndBlockGrids = grid_bit(GridKind::Free) | grid_bit(GridKind::GgmlBlock);
// Every kind, codebook grids included (methods that only pick codes on a given grid).
constexpr unsigned kAllGrids = kFreeAndBlockGrids | grid_bit(GridKind::Codebook);

// One row of the registry.
struct MethodInfo {
  std::string_view name;         // what --method, --methods (and, for starts, --cd-init) take
  std::string_view description;  // one line, for --help
  StartFn start;                 // null: the SolverOptions::cd_init start (--cd-init)
  const Refinement* refinement;  // null: the start alone (then the method is a start itself)
  HessianUse hessian;
  unsigned grids;  // grid_bit()s of the grid constraints it supports
  // Null when packed formats (GGUF, GPTQ) can store the result; else one sentence saying why
  // not (the output-format registry refuses the method for them with it).
  const char* float_only_reason = nullptr;

  bool is_start() const { return start != nullptr && refinement == nullptr; }
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
// Every method name, in table order, and the starts alone (the values of --cd-init).
std::vector<std::string> method_names();
std::vector<std::string> start_names();
// "name — description" lines, one per row (no final newline), for --help.
std::string method_help();
// "a, b, c or d": the names joined for messages.
std::string method_list(const std::vector<std::string>& names);

// The start a method runs, as the row of that start alone: its own start's, or options.cd_init
// (checked to be a start).
Method start_of(Method method, const SolverOptions& options);
// Whether the method reads H with these options (MethodInfo::hessian).
bool needs_hessian(Method method, const SolverOptions& options);
// Whether the method can solve under a grid constraint of this kind. Refinements that start
// from --cd-init also need that start to support it (solve_layer checks both).
bool supports(Method method, GridKind kind);

// The defaults of the front ends: `cdquant quantize --method` (cd), --cd-init (gptq), and the
// methods `cdquant layer` and `cdquant demo` compare unless told otherwise (rtn, gptq, cd).
Method default_method();
Method default_start();
std::vector<Method> default_comparison();

}  // namespace cdq
