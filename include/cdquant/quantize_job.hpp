// `cdquant quantize` as a library call: open the model and its tokenizer, take calibration
// windows from a text file or from the model's own samples (or none, for a method that reads
// no H), quantize block by block, write the result.
#pragma once

#include <cdquant/allocation_job.hpp>
#include <cdquant/gguf_export.hpp>
#include <cdquant/gptq_export.hpp>
#include <cdquant/model_tokenizer.hpp>
#include <cdquant/quantize.hpp>
#include <cdquant/self_calibration.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace cdq {

struct QuantizeJob {
  std::string model_path;
  std::string tokenizer_path;  // "": the tokenizer stored beside the model
  // UTF-8 text; "" or "self": windows the float model samples itself (self_calibration),
  // when the method reads H at all (methods that do not ignore calibration entirely).
  std::string calib_path;
  std::string save_calib_path;  // with self-calibration: the sampled windows as text, or ""
  std::string out_path;
  std::string out_format = "float";
  int nsamples = 128;  // calibration windows
  int seqlen = 0;      // tokens per window; 0: min(model context, 2048)
  uint64_t seed = 0;
  QuantizeOptions quant;
  GgufExportOptions gguf;  // out_format "gguf": types, overrides (source/tokenizer filled in)
  GptqExportOptions gptq;  // out_format "gptq": side-tensor dtype, v1 for asymmetric grids
  // --target-bpw / --target-size: GGUF types or GPTQ bits per linear chosen to fit a size
  // (allocation_job.hpp); calibration is then always taken, for the sensitivities.
  AllocationRequest allocation;
  std::function<void(const std::string&)> on_note;  // format notes (GGUF type fallbacks)
  // Warnings the run goes on after (a degenerate calibration text); shown even when quiet.
  std::function<void(const std::string&)> on_warning;
  std::function<void(const SelfCalibrationProgress&)> on_self_calibration;  // progress
};

// How the job calibrates: from a text file, from the model's own samples, or not at all (when
// neither the method nor the format reads H: GGUF block scales do, unless --no-importance).
enum class CalibrationSource { Text, Self, None };
CalibrationSource calibration_source(const QuantizeJob& job);

QuantizeSummary run_quantize_job(const QuantizeJob& job);

// Calibration windows (BOS + seqlen - 1 tokens each) sampled with a seed from a text file.
std::vector<std::vector<int>> calibration_from_file(const std::string& text_path,
                                                    const Tokenizer& tokenizer, int nsamples,
                                                    int seqlen, uint64_t seed, int bos_id);

}  // namespace cdq
