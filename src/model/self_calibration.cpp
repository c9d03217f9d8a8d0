// Self-calibration: windows of the model's own samples, decoded a batch of windows at a time.
#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/self_calibration.hpp>
#include <chrono>
#include <cmath>

namespace cdq {

namespace {

// Batches whose KV cache would pass this are made smaller (large models decode fewer
// windows at once rather than run out of memory).
constexpr double kCacheBudgetBytes = 2.0 * (1ULL << 30);
constexpr int kDefaultBatch = 64;

}  // namespace

// A splitmix64 hash of (seed, index) seeds the stream, so it depends on nothing but the two
// (not on which batch or slot decodes the window), and the streams of neighbouring windows or
// seeds do not overlap in practice.
Rng self_calibration_rng(uint64_t seed, int64_t index) {
  Rng h(seed ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(index + 1)));
  return Rng(h.next_u64());
}

int self_calibration_batch(const ModelConfig& c, int nsamples, int seqlen) {
  // A window's cache: keys and values of seqlen - 1 positions in every layer.
  const double per_window = 2.0 * c.n_layers * static_cast<double>(seqlen - 1) * c.kv_dim() * 4.0;
  const int fit = static_cast<int>(std::clamp(kCacheBudgetBytes / std::max(per_window, 1.0), 1.0,
                                              static_cast<double>(kDefaultBatch)));
  return std::max(1, std::min({nsamples, kDefaultBatch, fit}));
}

int sample_softmax(std::span<const float> logits, Rng& rng) {
  CDQ_ASSERT(!logits.empty());
  const double mx = *std::max_element(logits.begin(), logits.end());
  // In double, as sample_token: the cumulative sum over the vocabulary then rounds far below
  // the smallest probabilities that matter.
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < p.size(); ++i) sum += (p[i] = std::exp(logits[i] - mx));
  const double u = rng.uniform() * sum;
  double acc = 0.0;  // the same sums as `sum`, in the same order
  for (size_t i = 0; i < p.size(); ++i)
    if (u < (acc += p[i])) return static_cast<int>(i);
  // u rounded up to the total: the last id with any mass.
  size_t last = p.size() - 1;
  while (last > 0 && p[last] == 0.0) --last;
  return static_cast<int>(last);
}

std::vector<std::vector<int>> self_calibration(const Model& model, int nsamples, int seqlen,
                                               uint64_t seed,
                                               const SelfCalibrationCallback& progress, int batch) {
  const ModelConfig& c = model.config;
  CDQ_CHECK(nsamples >= 1, "self-calibration: nsamples must be >= 1, got {}", nsamples);
  CDQ_CHECK(seqlen >= 2,
            "self-calibration: seqlen must be >= 2 (BOS and at least one sampled token), got {}",
            seqlen);
  CDQ_CHECK(seqlen <= c.max_seq_len,
            "self-calibration: seqlen {} exceeds the model's context (max_seq_len {})", seqlen,
            c.max_seq_len);
  CDQ_CHECK(batch >= 0, "self-calibration: batch must be >= 0 (0 = automatic), got {}", batch);
  const int vocab = static_cast<int>(model.classifier().rows);
  CDQ_CHECK(c.bos_id >= 0 && c.bos_id < vocab,
            "self-calibration: BOS id {} is outside the vocabulary [0, {})", c.bos_id, vocab);
  if (batch == 0) batch = self_calibration_batch(c, nsamples, seqlen);
  batch = std::min(batch, nsamples);

  const auto start = std::chrono::steady_clock::now();
  const auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<std::vector<int>> windows(static_cast<size_t>(nsamples));
  // A window of seqlen tokens feeds its first seqlen - 1 (each yields the next), and a restart
  // goes back to position 0, so no sequence reaches position seqlen - 1.
  BatchDecoder dec(model, batch, seqlen - 1);
  std::vector<int> feed(static_cast<size_t>(batch));
  int64_t tokens = 0;
  // Every window takes exactly seqlen - 1 steps, so a group of `batch` windows starts and ends
  // together: no slot waits for another.
  for (int first = 0; first < nsamples; first += batch) {
    const int group = std::min(batch, nsamples - first);
    std::vector<Rng> rngs;
    rngs.reserve(static_cast<size_t>(group));
    for (int s = 0; s < group; ++s) {
      rngs.push_back(self_calibration_rng(seed, first + s));
      windows[static_cast<size_t>(first + s)].reserve(static_cast<size_t>(seqlen));
      windows[static_cast<size_t>(first + s)].push_back(c.bos_id);
    }
    tokens += group;
    dec.reset();
    std::fill(feed.begin(), feed.end(), BatchDecoder::kSkip);  // a short last group
    std::fill(feed.begin(), feed.begin() + group, c.bos_id);
    for (int t = 1; t < seqlen; ++t) {
      dec.step(feed);
      // Rows are independent (each has its own stream), so they may be drawn in parallel.
#pragma omp parallel for schedule(static) if (group >= 16)
      for (int s = 0; s < group; ++s) {
        int next = sample_softmax(dec.logits(s), rngs[static_cast<size_t>(s)]);
        if (next == c.eos_id || next == c.bos_id) {
          // The sample ended: the window goes on with BOS and a new sample, from position 0.
          next = c.bos_id;
          dec.reset(s);
        }
        windows[static_cast<size_t>(first + s)].push_back(next);
        feed[static_cast<size_t>(s)] = next;
      }
      tokens += group;
      if (progress) progress({first + (t + 1 == seqlen ? group : 0), nsamples, tokens, seconds()});
    }
  }
  return windows;
}

}  // namespace cdq
