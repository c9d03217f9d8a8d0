// The easyquant start (method_registry.cpp): EasyQuant (quant/easyquant.hpp) on W alone, H not
// read. Its grid (per channel, symmetric, zero 2^(b-1)) and codes describe the inliers only;
// the outliers stay in float, so SolveResult::q (with them put back exactly) is the result and
// only float outputs can store it (MethodInfo::float_only_reason).
#include <fmt/format.h>

#include "quant/easyquant.hpp"
#include "quant/method_stages.hpp"

namespace cdq {

namespace {

// Per outlier: its fp16 value and a 32-bit column index (sparse storage), on top of its code.
constexpr double kBitsPerOutlier = 16.0 + 32.0;

}  // namespace

void start_easyquant(const Matrix& w, const Matrix& /*h*/, const SolverOptions& options,
                     SolveResult& res, StageState& state) {
  // EasyQuant fits one step per output channel; refusing --group keeps a grouped run from
  // silently being a per-channel one.
  CDQ_CHECK(options.grid.group_size <= 0,
            "easyquant quantizes per output channel: --group {} is not supported (use --group 0)",
            options.grid.group_size);
  EasyQuantSpec spec;
  spec.bits = options.grid.bits;
  EasyQuantResult eq = easyquant_quantize(w, spec);
  res.q = easyquant_dequantize(eq);
  const auto n_out = static_cast<double>(eq.outliers.col.size());
  res.notes.push_back(fmt::format("{} outliers in float ({:.3f}% of weights)",
                                  eq.outliers.col.size(),
                                  100.0 * n_out / static_cast<double>(w.size())));
  res.grid = std::move(eq.grid);
  res.codes = std::move(eq.codes);
  state.q_set = true;
  state.percdamp = options.percdamp;
}

double easyquant_bits_per_weight(const SolverOptions& options, int64_t d_in) {
  // Codes, one fp16 step per row, and at most max_outlier_fraction of the weights as outliers
  // (the bound: how many a row has depends on its weights).
  return options.grid.bits + 16.0 / static_cast<double>(d_in) +
         EasyQuantSpec{}.max_outlier_fraction * kBitsPerOutlier;
}

}  // namespace cdq
