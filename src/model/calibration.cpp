#include <cdquant/calibration.hpp>
#include <cdquant/error.hpp>
#include <cdquant/rng.hpp>

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

}  // namespace cdq
