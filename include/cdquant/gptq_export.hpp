// GPTQ checkpoints as outputs (layout: cdquant/gptq_checkpoint.hpp).
#pragma once

#include <cdquant/gptq_checkpoint.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/quantize.hpp>
#include <cstdint>
#include <memory>
#include <string>

namespace cdq {

struct GptqExportOptions {
  // dtype of everything but the packed tensors (norms, embeddings, classifier, biases, linears
  // kept float) and config.json's torch_dtype: "float16", "bfloat16", or "auto" (bfloat16 when
  // the source's linears are BF16, else float16). GPTQ scales are float16 in every case.
  std::string dtype = "auto";
  // Asymmetric grids in the v1 'gptq' format (qzeros store zero - 1, which AutoGPTQ and older
  // vLLM read) instead of gptq_v2: needs every zero point >= 1 (an error names the first that
  // is not). Symmetric grids are always v1.
  bool v1 = false;
};

// GPTQ output of any source (HF, llama2.c, GGUF): streamed block by block into out_dir.
// options.tune_linear, when set, gives linears their own bits (written as `dynamic` overrides);
// allocation (JSON text, may be empty) is stored in config.json as kGptqAllocationKey.
// options.solver.grid must have fp16_scales set for an exact round trip (run_quantize_job does).
std::unique_ptr<ModelWriter> make_gptq_writer(ModelReader& source, const std::string& source_path,
                                              const std::string& out_dir,
                                              const QuantizeOptions& options,
                                              uint64_t max_shard_bytes = 2'000'000'000,
                                              const GptqExportOptions& gptq = {},
                                              const std::string& allocation = "");

// config.json's field holding a size-budget allocation's plan (a JSON object), when there is one.
inline constexpr const char* kGptqAllocationKey = "cdquant_allocation";

}  // namespace cdq
