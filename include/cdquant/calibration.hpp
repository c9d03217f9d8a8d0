// Calibration windows for GPTQ-style quantization: random windows of real text.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace cdq {

class Tokenizer;

// nsamples windows of seqlen consecutive tokens, each starting at a uniformly drawn offset
// (as the GPTQ reference samples its calibration data); the same seed gives the same windows.
// With prepend_bos each window is BOS + (seqlen - 1) tokens. Throws Error when the stream is
// shorter than one window.
std::vector<std::vector<int>> sample_calibration_windows(std::span<const int> stream, int nsamples,
                                                         int seqlen, uint64_t seed,
                                                         bool prepend_bos, int bos_id);

// The same from raw text, tokenizing only what the windows need, so a large calibration
// file costs O(nsamples * seqlen) instead of O(file): each window starts at the first line
// after a uniformly drawn byte offset. Texts shorter than max_whole_text_bytes are tokenized
// whole and sampled as above.
std::vector<std::vector<int>> sample_calibration_text(std::string_view text,
                                                      const Tokenizer& tokenizer, int nsamples,
                                                      int seqlen, uint64_t seed, bool prepend_bos,
                                                      int bos_id,
                                                      size_t max_whole_text_bytes = 1 << 20);

}  // namespace cdq
