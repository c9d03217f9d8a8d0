// A size-budget allocation as part of `cdquant quantize --format gguf|gptq` (cdquant/
// allocation.hpp has the measurements and the plan): the candidates each format offers, the
// budget from --target-bpw / --target-size, the sensitivity cache, and the plan in the file.
#pragma once

#include <cdquant/allocation.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace cdq {

struct AllocationRequest {
  // Bits per weight over the linears (8 * their bytes / their weights); 0: not asked.
  double target_bpw = 0.0;
  // Bytes of the whole output (GGUF: the file; GPTQ: the safetensors shards); 0: not asked.
  int64_t target_size = 0;
  // Sensitivities and candidate errors, read when the file exists, else measured and written;
  // "": <out>.sensitivity.json next to the output.
  std::string sensitivity_path;
  AllocationError error = AllocationError::Weight;  // which relative error the model uses
  SensitivityOptions sensitivity;
  bool active() const { return target_bpw > 0.0 || target_size > 0; }
};

// The allocation plan stored in a GGUF file (metadata cdquant.allocation) or a GPTQ directory
// (config.json's cdquant_allocation); null when the file has none. Fields: version, method,
// budget_bytes, linear_bytes, linear_weights, predicted_kl, error ("weight"/"objective"), exact,
// target_bpw or target_size, and tensors: [[name ("blk.3.attn_q"), type ("Q4_0", "int4",
// "F16"), predicted KL increase], ...] (numbers to 4 significant digits: it is in the budget).
nlohmann::json read_allocation(const std::string& path);

}  // namespace cdq
