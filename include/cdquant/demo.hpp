// The main job on an embedded model: quantize with several methods, bit widths and group
// sizes, and measure each against the float model on held-out text (perplexity, KL
// divergence of the next-token distribution, top-1 agreement).
#pragma once

#include <cdquant/solver.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cdq {

struct DemoOptions {
  std::string model_path;
  std::string tokenizer_path;  // "": beside the model
  std::string calib_path;
  std::string test_path;
  std::vector<Method> methods = default_comparison();
  std::vector<int> bits = {4, 3, 2};
  std::vector<int> groups = {0, 32};  // 0: per channel
  int nsamples = 32;                  // calibration windows
  int seqlen = 256;                   // calibration window length
  uint64_t seed = 0;
  int eval_ctx = 256;    // evaluation window length
  int max_windows = 80;  // evaluation windows (0: the whole test text); 80 x 256 tokens
                         // keep the 18-row default table near a minute on 2 cores
  SolverOptions solver;  // base options (act-order, damping, CD budget); grid set per row
};

struct DemoRow {
  Method method;
  int bits = 0;
  int group = 0;
  double ppl = 0.0;
  double kl = 0.0;
  double top1 = 0.0;
  double mean_relative = 0.0;  // mean layer relative error
  double quant_seconds = 0.0;
};

struct DemoResult {
  double float_ppl = 0.0;
  int64_t eval_tokens = 0;
  int64_t calib_tokens = 0;
  std::vector<DemoRow> rows;
};

DemoResult run_demo(const DemoOptions& options,
                    const std::function<void(const DemoRow&)>& on_row = {});

}  // namespace cdq
