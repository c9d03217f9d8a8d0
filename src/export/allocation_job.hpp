// The allocation step of run_quantize_job (quantize_job.cpp).
#pragma once

#include <cdquant/quantize_job.hpp>
#include <string>
#include <vector>

namespace cdq {

// Measures (or reads from the cache) the sensitivities and candidate errors, solves the
// knapsack for the job's budget, prints the plan through job.on_note and applies it: GGUF types
// into gguf.tensor_types, GPTQ bits into quant.tune_linear. Returns the plan as JSON text for
// the file's metadata.
std::string apply_allocation(const QuantizeJob& job, ModelReader& reader,
                             const std::vector<std::vector<int>>& windows, QuantizeOptions& quant,
                             GgufExportOptions& gguf);

}  // namespace cdq
