// GPTQ checkpoint configs as JSON (config.json's quantization_config, quantize_config.json),
// shared by the reader (gptq_reader.cpp) and the writer (src/export/gptq_writer.cpp), and the
// reader's entry points (open_model picks it).
#pragma once

#include <cdquant/gptq_checkpoint.hpp>
#include <cdquant/safetensors.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cdq {

// A directory (or a .safetensors file with config.json beside it) whose config.json has
// quantization_config.quant_method == "gptq". Unreadable configs give false.
bool is_gptq_checkpoint(const std::string& path);

// Opens a GPTQ checkpoint as a float model: every packed linear is validated, dequantized
// (v1 or v2 by checkpoint_format, default v1) and its q/k rows put into the internal layout.
std::unique_ptr<ModelReader> open_gptq_model(const std::string& path);

// Sequential groups of linears as GPTQ visits them; q/k/v and gate/up are also the groups vLLM
// fuses into one layer (qkv_proj, gate_up_proj).
const std::vector<std::vector<Linear>>& gptq_linear_groups();

// Reads, validates and dequantizes one packed linear `prefix` whose float shape must be
// [out, in]: [out, in] float32 in the checkpoint's row order. Throws Error naming the tensor.
Matrix read_gptq_linear(const SafetensorsDir& st, const std::string& prefix,
                        const GptqCheckpointConfig& config, int64_t out, int64_t in);

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
