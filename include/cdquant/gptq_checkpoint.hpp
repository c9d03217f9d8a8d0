// GPTQ checkpoints as HF directories that vLLM, transformers (optimum / GPTQModel backends) and
// GPTQModel load unmodified, and a reader that dequantizes them back to a float model.
//
// Layout written, per quantized linear P = model.layers.{i}.{self_attn,mlp}.X_proj with weight
// [N = out, K = in]: P.qweight I32 [K*b/32, N], P.qzeros I32 [G, N*b/32], P.scales F16 [G, N],
// P.g_idx I32 [K] (G = ceil(K / group_size), 1 per-channel), q/k rows in HF's rotate-half
// order. config.json gets quantization_config and torch_dtype float16; quantize_config.json
// holds the same object (GPTQModel). The loader conventions followed, with their sources, are
// described in src/io/gptq_checkpoint.cpp.
#pragma once

#include <cdquant/gptq_format.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/quantize.hpp>
#include <memory>
#include <string>
#include <vector>

namespace cdq {

class SafetensorsDir;

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
};

// The checkpoint config of a cdquant run: bits/group size/symmetry from the grid, desc_act from
// act-order; v1 ("gptq") for symmetric grids, v2 ("gptq_v2") for asymmetric ones.
GptqCheckpointConfig gptq_config_for(const QuantizeOptions& options);

// Whether a [N, K] linear is stored packed: whole 32-bit words along K and N at these bits and,
// with groups, K a multiple of group_size (vLLM rejects ragged groups). Linears that are not
// (stories260K's 172-wide FFN) stay float16 and are excluded in the config.
bool gptq_stores_packed(int64_t out_features, int64_t in_features, int bits, int group_size);

// GPTQ output of any source (HF, llama2.c, GGUF): streamed block by block into out_dir.
// options.solver.grid must have fp16_scales set for an exact round trip (run_quantize_job does).
std::unique_ptr<ModelWriter> make_gptq_writer(ModelReader& source, const std::string& source_path,
                                              const std::string& out_dir,
                                              const QuantizeOptions& options,
                                              uint64_t max_shard_bytes = 2'000'000'000);

// A directory (or a .safetensors file with config.json beside it) whose config.json has
// quantization_config.quant_method == "gptq". Unreadable configs give false.
bool is_gptq_checkpoint(const std::string& path);

// Opens a GPTQ checkpoint as a float model: every packed linear is validated, dequantized
// (v1 or v2 by checkpoint_format, default v1) and its q/k rows put into the internal layout.
std::unique_ptr<ModelReader> open_gptq_model(const std::string& path);

// Reads, validates and dequantizes one packed linear `prefix` whose float shape must be
// [out, in]: [out, in] float32 in the checkpoint's row order. Throws Error naming the tensor.
Matrix read_gptq_linear(const SafetensorsDir& st, const std::string& prefix,
                        const GptqCheckpointConfig& config, int64_t out, int64_t in);

}  // namespace cdq
