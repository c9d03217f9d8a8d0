// Calibration windows for GPTQ-style quantization: random windows of real text.
#pragma once

#include <cstdint>
#include <span>
#include <string>
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

// What a calibration text looks like: one repeated character, NUL bytes or random bytes are
// accepted by the tokenizer but calibrate badly (measured on stories260K: KL 0.34 against 0.21
// with real text), so the quantize job warns with these figures.
struct CalibrationTextStats {
  uint64_t tokens = 0;           // in the windows
  uint64_t distinct = 0;         // distinct token ids among them
  double entropy_bits = 0;       // of their frequency distribution
  double non_text_fraction = 0;  // bytes of the text that are invalid UTF-8 or control bytes
};                               // other than tab / newline / carriage return

CalibrationTextStats measure_calibration_text(std::string_view text,
                                              const std::vector<std::vector<int>>& windows);

// A warning naming what was measured when the text is degenerate (fewer than 32 distinct
// tokens, or than one per 8 tokens in small samples; entropy under 3 bits; or over 1% non-text
// bytes); "" when it looks like text.
std::string degenerate_calibration_warning(const CalibrationTextStats& stats);

}  // namespace cdq
