// GPTQ checkpoint configs as JSON (config.json's quantization_config, quantize_config.json).
#pragma once

#include <cdquant/gptq_checkpoint.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cdq {

// The quantization_config object. c.float_linears (kinds kept as float .weight) are expressed
// twice so that every loader skips them: GPTQModel/vLLM's `dynamic` negative matches
// ("-:" regex on the module name, covering vLLM's fused qkv_proj / gate_up_proj names) and
// transformers/optimum's (and vLLM's) `modules_in_block_to_quantize` (the kinds that ARE
// quantized, nested per sequential group).
nlohmann::json gptq_quantization_config(const GptqCheckpointConfig& c);

// Parses and validates a quantization_config (what: the file, for messages). float_linears:
// the kinds missing from modules_in_block_to_quantize when that field is present.
GptqCheckpointConfig parse_gptq_quantization_config(const nlohmann::json& j,
                                                    const std::string& what);

}  // namespace cdq
