#include <cdquant/calibration.hpp>
#include <cdquant/error.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/tokenizer.hpp>

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

}  // namespace cdq
