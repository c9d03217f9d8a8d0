// `cdquant quantize` as a library call: open the model and its tokenizer, sample calibration
// windows from a text file, quantize block by block, write the result.
#pragma once

#include <cdquant/quantize.hpp>
#include <cstdint>
#include <string>

namespace cdq {

struct QuantizeJob {
  std::string model_path;
  std::string tokenizer_path;  // "": the tokenizer stored beside the model
  std::string calib_path;      // UTF-8 text
  std::string out_path;
  std::string out_format = "float";
  int nsamples = 128;  // calibration windows
  int seqlen = 0;      // tokens per window; 0: min(model context, 2048)
  uint64_t seed = 0;
  QuantizeOptions quant;
};

QuantizeSummary run_quantize_job(const QuantizeJob& job);

// Token ids of a text file with the model's tokenizer (no BOS).
std::vector<int> tokenize_file(const std::string& text_path, const std::string& model_path,
                               const std::string& tokenizer_path);

}  // namespace cdq
