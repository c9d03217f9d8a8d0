// Self-calibration: windows of the model's own samples, decoded a batch of windows at a time.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cdquant/error.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/self_calibration.hpp>
#include <chrono>
#include <cmath>
#include <exception>

namespace cdq {

namespace {

// A worker's batch of KV caches stays under this, and so do all workers' together unless one
// window alone passes it (large models decode fewer windows at once rather than run out of
// memory).
constexpr double kCacheBudgetBytes = 2.0 * (1ULL << 30);
// Larger batches make the products more efficient but the KV caches bigger; on the small
// models, 16 to 32 windows a group were fastest (bench_self_calibration, 2 threads: 128 x 512
// tokens of stories260K in 2.5 s at 16 or 32, 2.9-3.2 s at 64). 16 leaves groups for 8
// threads at the default 128 samples.
constexpr int kDefaultBatch = 16;

// A window's cache: keys and values of seqlen - 1 positions in every layer.
double window_cache_bytes(const ModelConfig& c, int seqlen) {
  return 2.0 * c.n_layers * static_cast<double>(seqlen - 1) * c.kv_dim() * 4.0;
}

}  // namespace

// A splitmix64 hash of (seed, index) seeds the stream, so it depends on nothing but the two
// (not on which batch or slot decodes the window), and the streams of neighbouring windows or
// seeds do not overlap in practice.
Rng self_calibration_rng(uint64_t seed, int64_t index) {
  Rng h(seed ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(index + 1)));
  return Rng(h.next_u64());
}

// The batch sets the rows of every product, and so how they round: it depends on the model
// and the request alone, never on the thread count, so that the windows do not either.
int self_calibration_batch(const ModelConfig& c, int nsamples, int seqlen) {
  const double fit = kCacheBudgetBytes / std::max(window_cache_bytes(c, seqlen), 1.0);
  const int fits = static_cast<int>(std::clamp(fit, 1.0, static_cast<double>(kDefaultBatch)));
  return std::max(1, std::min({nsamples, kDefaultBatch, fits}));
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
  const int threads = omp_get_max_threads();
  if (batch == 0) batch = self_calibration_batch(c, nsamples, seqlen);
  batch = std::min(batch, nsamples);
  const int groups = (nsamples + batch - 1) / batch;
  // Every worker holds a batch of caches: no more workers than the budget holds (at least one).
  const double per_batch = window_cache_bytes(c, seqlen) * batch;
  const int fit = static_cast<int>(
      std::clamp(kCacheBudgetBytes / std::max(per_batch, 1.0), 1.0, static_cast<double>(threads)));
  const int workers = std::min({threads, groups, fit});

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<int>> windows(static_cast<size_t>(nsamples));
  std::atomic<int64_t> tokens = 0, done = 0;
  // The counters are read under the lock, so reports come one at a time and never go back.
  const auto report = [&] {
    if (!progress) return;
#pragma omp critical(cdq_self_calibration_progress)
    progress({done.load(), nsamples, tokens.load(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()});
  };

  // Windows [first, first + group) together through dec. Every window takes exactly seqlen - 1
  // steps, so the windows of a group start and end together: no slot waits for another.
  const auto decode_group = [&](BatchDecoder& dec, int first) {
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
    std::vector<int> feed(static_cast<size_t>(dec.batch()), BatchDecoder::kSkip);  // short group
    std::fill(feed.begin(), feed.begin() + group, c.bos_id);
    for (int t = 1; t < seqlen; ++t) {
      dec.step(feed);
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
      if (t + 1 == seqlen) done += group;
      report();
    }
  };

  // Groups are shared among the threads, one at a time each, with its own decoder and
  // one-threaded products. Decoding steps are small (a few hundred microseconds on small
  // models), so sharing each one among threads would put a barrier or two in every layer of
  // every step, and on a busy machine a barrier waits for a descheduled thread (measured on a
  // loaded 2-core machine: 128 windows of stories260K in one group of 128 took 69 s with
  // threads inside the steps, 3.7 s in 8 groups of 16 on the two threads). Independent groups
  // need no barrier. Inside the region BatchDecoder keeps its attention on one thread, and
  // nested regions of the forward's loops stay inactive while several groups run.
  struct Serial {
    int levels = omp_get_max_active_levels();
    Serial() { omp_set_max_active_levels(1); }
    ~Serial() { omp_set_max_active_levels(levels); }
  } serial;
  std::exception_ptr error;  // exceptions must not leave a parallel region
#pragma omp parallel num_threads(workers)
  {
    try {
      // A window of seqlen tokens feeds its first seqlen - 1 (each yields the next), and a
      // restart goes back to position 0, so no sequence reaches position seqlen - 1.
      BatchDecoder dec(model, batch, seqlen - 1);
#pragma omp for schedule(dynamic, 1)
      for (int g = 0; g < groups; ++g) decode_group(dec, g * batch);
    } catch (...) {
#pragma omp critical(cdq_self_calibration_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return windows;
}

}  // namespace cdq
