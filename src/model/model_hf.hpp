// Hugging Face model directories (config.json + safetensors, sharded or not) as a ModelReader.
// Llama, Mistral and Qwen2 architectures. q/k rows (and Qwen2 q/k biases) are converted from
// HF's rotate-half layout to the interleaved layout on read. GPTQ-quantized linears
// (qweight/qzeros/scales/g_idx) are dequantized to float32.
#pragma once

#include <cdquant/model.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace cdq {

// Reads the hyper-parameters of config.json. Throws Error naming `what` and the field.
ModelConfig hf_model_config(const nlohmann::json& config, const std::string& what);

// Opens an HF model directory (or a single .safetensors file with config.json beside it).
std::unique_ptr<ModelReader> open_hf_model(const std::string& path);

}  // namespace cdq
