// GPTQ checkpoints as HF directories that vLLM, transformers (optimum / GPTQModel backends) and
// GPTQModel load unmodified: their config, and a reader that dequantizes them back to a float
// model (open_model; the writer: cdquant/gptq_export.hpp).
//
// Layout written, per quantized linear P = model.layers.{i}.{self_attn,mlp}.X_proj with weight
// [N = out, K = in]: P.qweight I32 [K*b/32, N], P.qzeros I32 [G, N*b/32], P.scales F16 [G, N],
// P.g_idx I32 [K] (G = ceil(K / group_size), 1 per-channel), q/k rows in HF's rotate-half
// order. config.json gets quantization_config and torch_dtype float16; quantize_config.json
// holds the same object (GPTQModel). The loader conventions followed, with their sources, are
// described in src/model/gptq_reader.cpp.
#pragma once

#include <cdquant/gptq_format.hpp>
#include <cdquant/model.hpp>
#include <string>
#include <utility>
#include <vector>

namespace cdq {

// What a GPTQ checkpoint's quantization_config says (the fields cdquant writes and reads).
struct GptqCheckpointConfig {
  int bits = 4;
  int group_size = -1;  // -1: one group per output channel
  bool desc_act = false;
  bool sym = true;
  bool static_groups = false;
  bool true_sequential = false;
  double damp_percent = 0.01;
  GptqCheckpointFormat format = GptqCheckpointFormat::V1;
  std::string method = "gptq";  // cdquant's solver (meta only)
  // Kinds of linears stored as float16 .weight in every block (not packable at these settings).
  std::vector<Linear> float_linears;
  // Per-module bits other than `bits` (a size-budget allocation): `dynamic` positive overrides
  // "+:<regex>": {"bits": b} in GPTQModel's / vLLM's format, in the order a loader tries them
  // (the first regex that matches a module's name from its start decides, as re.match does).
  std::vector<std::pair<std::string, int>> dynamic_bits;
};

// The bits of the module named `module` (model.layers.3.self_attn.q_proj, or vLLM's fused
// model.layers.3.self_attn.qkv_proj): its first matching dynamic override, else c.bits.
int gptq_module_bits(const GptqCheckpointConfig& c, const std::string& module);
// The "+:" regex of one block's fused group (q/k/v or gate/up, or o, down alone), covering the
// separate module names and vLLM's fused one.
std::string gptq_group_override(int layer, const std::vector<Linear>& group);

// Whether a [N, K] linear is stored packed: whole 32-bit words along K and N at these bits and,
// with groups, K a multiple of group_size (vLLM rejects ragged groups). Linears that are not
// (stories260K's 172-wide FFN) stay float16 and are excluded in the config.
bool gptq_stores_packed(int64_t out_features, int64_t in_features, int bits, int group_size);

}  // namespace cdq
