#include <algorithm>
#include <cdquant/calibration.hpp>
#include <cdquant/error.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/tokenizer.hpp>
#include <cmath>
#include <unordered_map>

namespace cdq {

std::vector<std::vector<int>> sample_calibration_windows(std::span<const int> stream, int nsamples,
                                                         int seqlen, uint64_t seed,
                                                         bool prepend_bos, int bos_id) {
  CDQ_CHECK(nsamples > 0, "--nsamples must be positive, got {}", nsamples);
  CDQ_CHECK(seqlen > 1, "--seqlen must be at least 2, got {}", seqlen);
  const int64_t body = prepend_bos ? seqlen - 1 : seqlen;
  CDQ_CHECK(static_cast<int64_t>(stream.size()) >= body,
            "the calibration text has {} tokens, fewer than one window of {}: give a longer "
            "text or a smaller --seqlen",
            stream.size(), seqlen);
  Rng rng(seed);
  const uint64_t starts = stream.size() - static_cast<uint64_t>(body) + 1;
  std::vector<std::vector<int>> windows(static_cast<size_t>(nsamples));
  for (auto& w : windows) {
    const auto begin = static_cast<int64_t>(rng.below(starts));
    w.reserve(static_cast<size_t>(seqlen));
    if (prepend_bos) w.push_back(bos_id);
    w.insert(w.end(), stream.begin() + begin, stream.begin() + begin + body);
  }
  return windows;
}

std::vector<std::vector<int>> sample_calibration_text(std::string_view text,
                                                      const Tokenizer& tokenizer, int nsamples,
                                                      int seqlen, uint64_t seed, bool prepend_bos,
                                                      int bos_id, size_t max_whole_text_bytes) {
  if (text.size() <= max_whole_text_bytes) {
    const std::vector<int> stream = tokenizer.encode(text, false);
    return sample_calibration_windows(stream, nsamples, seqlen, seed, prepend_bos, bos_id);
  }
  CDQ_CHECK(nsamples > 0, "--nsamples must be positive, got {}", nsamples);
  CDQ_CHECK(seqlen > 1, "--seqlen must be at least 2, got {}", seqlen);
  const size_t body = static_cast<size_t>(prepend_bos ? seqlen - 1 : seqlen);
  Rng rng(seed);
  std::vector<std::vector<int>> windows(static_cast<size_t>(nsamples));
  for (auto& w : windows) {
    size_t begin = static_cast<size_t>(rng.below(text.size()));
    const size_t line = text.find('\n', begin);
    begin = line == std::string_view::npos ? 0 : line + 1;
    std::vector<int> ids;
    // Grow the slice until it holds a window (tokens average well under 16 bytes).
    for (size_t bytes = body * 8; ids.size() < body; bytes *= 2) {
      if (begin + bytes >= text.size()) begin = 0;  // wrap to the start near the end
      ids = tokenizer.encode(text.substr(begin, bytes), false);
      CDQ_CHECK(bytes < text.size(), "the calibration text is too short for --seqlen {}", seqlen);
    }
    if (prepend_bos) w.push_back(bos_id);
    w.insert(w.end(), ids.begin(), ids.begin() + static_cast<int64_t>(body));
  }
  return windows;
}

namespace {

// Length of the valid UTF-8 sequence at text[i] (0 when invalid): overlong forms, surrogates
// and code points past U+10FFFF are invalid.
size_t utf8_sequence_length(std::string_view text, size_t i) {
  const auto b = static_cast<unsigned char>(text[i]);
  if (b < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0;
  if ((b & 0xE0) == 0xC0) {
    n = 2;
    cp = b & 0x1F;
  } else if ((b & 0xF0) == 0xE0) {
    n = 3;
    cp = b & 0x0F;
  } else if ((b & 0xF8) == 0xF0) {
    n = 4;
    cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(text[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

}  // namespace

CalibrationTextStats measure_calibration_text(std::string_view text,
                                              const std::vector<std::vector<int>>& windows) {
  CalibrationTextStats s;
  std::unordered_map<int, uint64_t> counts;
  for (const auto& w : windows)
    for (int id : w) ++counts[id];
  for (const auto& [id, n] : counts) s.tokens += n;
  s.distinct = counts.size();
  for (const auto& [id, n] : counts) {
    const double p = static_cast<double>(n) / static_cast<double>(s.tokens);
    s.entropy_bits -= p * std::log2(p);
  }
  uint64_t bad = 0;
  for (size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    const size_t n = utf8_sequence_length(text, i);
    if (n == 0 || (b < 0x20 && b != '\t' && b != '\n' && b != '\r') || b == 0x7F) {
      ++bad;
      ++i;
    } else {
      i += n;
    }
  }
  if (!text.empty())
    s.non_text_fraction = static_cast<double>(bad) / static_cast<double>(text.size());
  return s;
}

std::string degenerate_calibration_warning(const CalibrationTextStats& s) {
  // Few windows hold few distinct tokens even of real text: at most one per 8 tokens is asked.
  const uint64_t min_distinct = std::min<uint64_t>(32, std::max<uint64_t>(2, s.tokens / 8));
  if (s.distinct >= min_distinct && s.entropy_bits >= 3.0 && s.non_text_fraction <= 0.01) return "";
  return fmt::format(
      "the calibration text does not look like natural text: its windows hold {} distinct "
      "tokens among {} (entropy {:.2f} bits) and {:.1f}% of its bytes are control bytes or "
      "invalid UTF-8; quantizing with it calibrates poorly (real text: hundreds of distinct "
      "tokens, entropy above 6 bits, no control bytes)",
      s.distinct, s.tokens, s.entropy_bits, 100.0 * s.non_text_fraction);
}

}  // namespace cdq
