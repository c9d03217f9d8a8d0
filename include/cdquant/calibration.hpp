// Calibration windows for GPTQ-style quantization: random windows of a token stream.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace cdq {

// nsamples windows of seqlen consecutive tokens, each starting at a uniformly drawn offset
// (as the GPTQ reference samples its calibration data); the same seed gives the same windows.
// With prepend_bos each window is BOS + (seqlen - 1) tokens. Throws Error when the stream is
// shorter than one window.
std::vector<std::vector<int>> sample_calibration_windows(std::span<const int> stream, int nsamples,
                                                         int seqlen, uint64_t seed,
                                                         bool prepend_bos, int bos_id);

}  // namespace cdq
