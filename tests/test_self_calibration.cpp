// The batched KV-cache decoder against the one-sequence Decoder, and self-calibration windows.
//
// Decoder tolerance: both run in float32 and differ only in rounding (the order of summation
// in a matrix product over the batch vs one row and in the attention loops, and the softmax's
// exponential, within ~2 ulps). A float sum of K terms is off by at most ~K eps of the
// magnitudes summed, and the error passes through n_layers blocks and the classifier, so we
// allow (n_layers + 1) * K * eps of the row's largest |logit|, K the longest sum (dim,
// hidden_dim or the positions attended). For stories260K that is ~1e-4 relative (seen: ~1e-6),
// while a wrong RoPE position or a stale cache row moves logits by O(1) of the row's scale.
//
// Sampled tokens: the batch changes the matrix products' shapes and so the logits' rounding;
// a token flips when a uniform draw lands within that rounding of a boundary of the cumulative
// distribution, and the window goes its own way after it. Rare, but more often than one might
// guess (measured on stories260K: 3 flips in 65,408 sampled tokens at batch 64 against the
// Decoder, each draw within 5e-7 of a boundary), so exact equality over a few thousand tokens
// would fail now and then on some machine. Windows from different paths are therefore compared
// with the Decoder's reproduction token by token, and a first difference must be a draw within
// the rounding band of a boundary (see reference_window); the same path run twice must agree
// exactly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cdquant/decoder.hpp>
#include <cdquant/self_calibration.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "support/errors.hpp"
#include "support/tiny_model.hpp"

namespace cdq {
namespace {

using test::error_of;
using ::testing::HasSubstr;

double tolerance_scale(const ModelConfig& c, int64_t positions) {
  const double k = static_cast<double>(std::max<int64_t>({c.dim, c.hidden_dim, positions}));
  return (c.n_layers + 1) * k * std::numeric_limits<float>::epsilon();
}

// Worst |a - b| / max(1, max |b|) over a row.
double relative_error(std::span<const float> a, std::span<const float> b) {
  double scale = 1.0, worst = 0.0;
  for (float x : b) scale = std::max(scale, std::abs(static_cast<double>(x)));
  for (size_t j = 0; j < a.size(); ++j)
    worst = std::max(worst, std::abs(static_cast<double>(a[j]) - b[j]));
  return worst / scale;
}

// Three sequences through one BatchDecoder and three Decoders: sequence 0 runs from the first
// step, sequence 1 joins at step 5 (skipped before), sequence 2 restarts at step 12 and is left
// out of steps 20-24. Each step's logits of every sequence that took part must match its own
// Decoder's; skipped rows must be zero.
void expect_batch_matches_decoder(const Model& m, int steps, uint64_t seed) {
  const ModelConfig& c = m.config;
  const std::vector<int> tokens = test::random_tokens(3 * steps, c.vocab_size, seed);
  BatchDecoder batch(m, 3);
  std::vector<Decoder> one(3, Decoder(m));
  const double tol = tolerance_scale(c, steps);
  double worst = 0.0;
  for (int t = 0; t < steps; ++t) {
    std::vector<int> feed(3);
    for (int s = 0; s < 3; ++s)
      feed[static_cast<size_t>(s)] = tokens[static_cast<size_t>(3 * t + s)];
    if (t < 5) feed[1] = BatchDecoder::kSkip;
    if (t >= 20 && t < 25) feed[2] = BatchDecoder::kSkip;
    if (t == 12) {
      batch.reset(2);
      one[2].reset();
    }
    const Matrix& logits = batch.step(feed);
    ASSERT_EQ(logits.rows, 3);
    ASSERT_EQ(logits.cols, m.classifier().rows);
    for (int s = 0; s < 3; ++s) {
      SCOPED_TRACE(::testing::Message() << "step " << t << " sequence " << s);
      const std::span<const float> got = batch.logits(s);
      if (feed[static_cast<size_t>(s)] == BatchDecoder::kSkip) {
        EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](float x) { return x == 0.0f; }));
        continue;
      }
      const std::span<const float> want =
          one[static_cast<size_t>(s)].step(feed[static_cast<size_t>(s)]);
      ASSERT_EQ(got.size(), want.size());
      worst = std::max(worst, relative_error(got, want));
      EXPECT_EQ(batch.position(s), one[static_cast<size_t>(s)].position());
    }
  }
  EXPECT_LT(worst, tol);
  EXPECT_EQ(batch.position(0), steps);
  EXPECT_EQ(batch.position(1), steps - 5);
  EXPECT_EQ(batch.position(2), steps - 12 - 5);
}

TEST(BatchDecoder, EverySequenceMatchesItsOwnDecoder) {
  {
    SCOPED_TRACE("stories260K");
    expect_batch_matches_decoder(load_model(test::stories260k_path()), 200, 1);
  }
  {
    SCOPED_TRACE("babyllama");
    expect_batch_matches_decoder(load_model(test::babyllama_path()), 120, 2);
  }
  uint64_t seed = 5;
  for (const ModelConfig& c : test::odd_shape_configs()) {
    SCOPED_TRACE(::testing::Message() << "heads " << c.n_heads << "/" << c.n_kv_heads);
    expect_batch_matches_decoder(test::random_model(c, seed), 60, seed);
    ++seed;
  }
}

TEST(BatchDecoder, ARestartedSequenceForgetsItsPast) {
  // After reset, a sequence's logits are those of a fresh start, and far from those of the
  // same tokens appended to its old context (so the tolerance above would catch a stale cache).
  const Model m = load_model(test::stories260k_path());
  BatchDecoder batch(m, 2);
  Decoder fresh(m), stale(m);
  const std::vector<int> warm = test::random_tokens(30, m.config.vocab_size, 4);
  for (int t : warm) {
    batch.step(std::vector<int>{t, t});
    stale.step(t);
  }
  batch.reset(1);
  for (int t : {1, 50, 60}) {
    batch.step(std::vector<int>{BatchDecoder::kSkip, t});
    const std::span<const float> want = fresh.step(t);
    EXPECT_LT(relative_error(batch.logits(1), want), tolerance_scale(m.config, 3));
    EXPECT_GT(relative_error(batch.logits(1), stale.step(t)), 100 * tolerance_scale(m.config, 33));
  }
  EXPECT_EQ(batch.position(0), 30);
  EXPECT_EQ(batch.position(1), 3);
}

TEST(BatchDecoder, RejectsBadInputAndLeavesTheSequencesAsTheyWere) {
  const Model m = test::random_model(test::tiny_config(), 1);  // vocab 40, context 32
  EXPECT_THAT(error_of([&] { BatchDecoder(m, 0); }), HasSubstr("batch must be >= 1"));
  EXPECT_THAT(error_of([&] { BatchDecoder(m, 2, 33); }), HasSubstr("max_positions must be in"));
  BatchDecoder dec(m, 2, 4);
  EXPECT_EQ(dec.max_position(), 4);
  dec.step(std::vector<int>{3, 4});
  EXPECT_THAT(error_of([&] { dec.step(std::vector<int>{3}); }),
              HasSubstr("1 tokens for a batch of 2"));
  EXPECT_THAT(error_of([&] {
                dec.step(std::vector<int>{3, 40});
              }),
              HasSubstr("token id 40 of sequence 1 at position 1 is outside the vocabulary"));
  EXPECT_EQ(dec.position(0), 1);  // the refused step changed nothing
  EXPECT_EQ(dec.position(1), 1);
  for (int t = 1; t < 4; ++t) dec.step(std::vector<int>{2, BatchDecoder::kSkip});
  EXPECT_THAT(error_of([&] {
                dec.step(std::vector<int>{2, 2});
              }),
              HasSubstr("sequence 0 at position 4 is past the limit of 4"));
  EXPECT_EQ(dec.position(1), 1);
  dec.step(std::vector<int>{BatchDecoder::kSkip, 2});  // the other sequence goes on
  EXPECT_EQ(dec.position(1), 2);
}

void expect_well_formed(const std::vector<std::vector<int>>& w, const Model& m, int n, int seqlen) {
  ASSERT_EQ(static_cast<int>(w.size()), n);
  for (const auto& win : w) {
    ASSERT_EQ(static_cast<int>(win.size()), seqlen);
    EXPECT_EQ(win[0], m.config.bos_id);
    for (int t : win) {
      EXPECT_GE(t, 0);
      EXPECT_LT(t, m.config.vocab_size);
      EXPECT_NE(t, m.config.eos_id);  // an ended sample continues with BOS
    }
  }
}

// A window reproduced with a plain Decoder (temperature-1 samples from BOS; a sampled EOS or
// BOS becomes BOS and the decoder starts again from position 0), and for every token after
// BOS how far its uniform draw fell from the nearer end of the drawn id's interval of the
// cumulative distribution (as a fraction of the total), and the band within which float rounding
// may move a boundary: logits off by d move every probability by a factor within e^(+-2d), so a
// cumulative sum by at most 2d of the total, with d the decoder tolerance times the row's largest
// |logit|.
struct ReferenceWindow {
  std::vector<int> tokens;
  std::vector<double> margin;  // [seqlen]; margin[t] for the draw of tokens[t] (t >= 1)
  std::vector<double> band;    // [seqlen]
};

ReferenceWindow reference_window(const Model& m, int seqlen, uint64_t seed, int index) {
  Rng rng = self_calibration_rng(seed, index);
  Decoder dec(m);
  ReferenceWindow w;
  w.tokens = {m.config.bos_id};
  w.margin = w.band = {0.0};
  std::span<const float> logits = dec.step(w.tokens[0]);
  const double tol = tolerance_scale(m.config, seqlen);
  while (static_cast<int>(w.tokens.size()) < seqlen) {
    Rng peek = rng;  // the draw sample_softmax is about to make
    const double u = peek.uniform();
    double mx = 0.0, sum = 0.0, scale = 1.0;
    for (float l : logits) mx = std::max(mx, static_cast<double>(l));
    for (float l : logits) {
      sum += std::exp(l - mx);
      scale = std::max(scale, std::abs(static_cast<double>(l)));
    }
    // The interval [lo, hi) of the cumulative distribution that u falls in: the drawn id.
    double acc = 0.0, margin = 0.0;
    for (float l : logits) {
      const double lo = acc / sum;
      acc += std::exp(l - mx);
      if (u < acc / sum) {
        margin = std::min(u - lo, acc / sum - u);
        break;
      }
    }
    w.margin.push_back(margin);
    w.band.push_back(2.0 * tol * scale);
    int next = sample_softmax(logits, rng);
    if (next == m.config.eos_id || next == m.config.bos_id) {
      next = m.config.bos_id;
      dec.reset();
    }
    w.tokens.push_back(next);
    if (static_cast<int>(w.tokens.size()) < seqlen) logits = dec.step(next);
  }
  return w;
}

// How `got` departs from the reference window: "" when equal, "flip" when equal up to a token
// whose draw lay within the band of a boundary (after which the two go on from different
// tokens), else what is wrong.
std::string departure(const std::vector<int>& got, const ReferenceWindow& ref) {
  if (got.size() != ref.tokens.size()) return "wrong length";
  const auto diff = std::mismatch(got.begin(), got.end(), ref.tokens.begin());
  if (diff.first == got.end()) return "";
  const size_t t = static_cast<size_t>(diff.first - got.begin());
  if (ref.margin[t] < ref.band[t]) return "flip";
  return "token " + std::to_string(t) + " differs, " + std::to_string(ref.margin[t]) +
         " from a boundary";
}

// Counts a flip; fails on anything else.
bool expect_matches_reference(const std::vector<int>& got, const ReferenceWindow& ref) {
  const std::string d = departure(got, ref);
  EXPECT_THAT(d, ::testing::AnyOf("", "flip"));
  return d == "flip";
}

TEST(SelfCalibration, DeterministicUnderTheSeedAndIndependentOfTheBatch) {
  const Model m = load_model(test::stories260k_path());
  // 10 windows of 200: 1990 sampled tokens; at batch 8 the second group is short (2 windows).
  const auto a = self_calibration(m, 10, 200, 7, {}, 1);
  const auto b = self_calibration(m, 10, 200, 7, {}, 8);
  const auto c = self_calibration(m, 10, 200, 7);
  const auto d = self_calibration(m, 10, 200, 8, {}, 8);
  expect_well_formed(a, m, 10, 200);
  expect_well_formed(d, m, 10, 200);
  EXPECT_EQ(a, self_calibration(m, 10, 200, 7, {}, 1));  // the same path twice: bit for bit
  EXPECT_NE(a, d);
  EXPECT_NE(a[0], a[1]);  // each window has its own stream
  // The check below catches windows that are not the Decoder's, here those of another seed:
  // 7 of these 10 on the build machine. A wrong token can slip through when the right one's
  // interval is within the band of its ends (a worst-case bound, far above the rounding seen),
  // as it is for 3 of them.
  int caught = 0;
  for (int i = 0; i < 10; ++i)
    caught += departure(d[static_cast<size_t>(i)], reference_window(m, 200, 7, i))
                  .find("from a boundary") != std::string::npos;
  EXPECT_GE(caught, 5);
  // Other batches, fewer windows asked for, and more threads (groups of 2 shared among 3
  // workers) give the Decoder's windows up to flips.
  const auto few = self_calibration(m, 3, 200, 7, {}, 2);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(3);
  const auto e = self_calibration(m, 10, 200, 7, {}, 2);
  omp_set_num_threads(threads);
  int flips = 0;
  for (int i = 0; i < 10; ++i) {
    SCOPED_TRACE(i);
    const ReferenceWindow ref = reference_window(m, 200, 7, i);
    for (const auto* w : {&a, &b, &c, &e}) flips += expect_matches_reference((*w)[i], ref);
    if (i < 3) flips += expect_matches_reference(few[static_cast<size_t>(i)], ref);
  }
  // Not bounded: a flip is a rounding accident (a few in 10^5 tokens on stories260K), not an
  // error; each one was checked to be at a boundary.
  RecordProperty("flips", flips);
}

TEST(SelfCalibration, EndedSamplesArePackedWithAFreshContext) {
  // A random model spreads its mass over the 40 ids, so BOS or EOS comes about every 20
  // tokens: many restarts per window, and the last window's last token may be one.
  const Model m = test::random_model(test::tiny_config(), 3);  // context 32
  const int n = 6, seqlen = 32;
  const auto w = self_calibration(m, n, seqlen, 11, {}, 4);
  expect_well_formed(w, m, n, seqlen);
  int restarts = 0;
  for (int i = 0; i < n; ++i) {
    SCOPED_TRACE(i);
    expect_matches_reference(w[static_cast<size_t>(i)], reference_window(m, seqlen, 11, i));
    restarts += static_cast<int>(std::count(w[static_cast<size_t>(i)].begin() + 1,
                                            w[static_cast<size_t>(i)].end(), m.config.bos_id));
  }
  EXPECT_GT(restarts, 0);
  // The same on the real model (fewer restarts, longer windows).
  const Model stories = load_model(test::stories260k_path());
  const auto s = self_calibration(stories, 2, 300, 5, {}, 2);
  for (int i = 0; i < 2; ++i)
    expect_matches_reference(s[static_cast<size_t>(i)], reference_window(stories, 300, 5, i));
}

TEST(SelfCalibration, SampleSoftmaxDrawsFromTheSoftmax) {
  // n draws of an id with probability p: a count with standard deviation sqrt(n p (1 - p));
  // 5 of them allowed (a false alarm about once in 10^6 seeds, and the seed is fixed).
  const std::vector<float> logits = {1.0f, 0.0f, 2.5f, -1.0f, 0.5f, -60.0f};
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < p.size(); ++i) sum += (p[i] = std::exp(static_cast<double>(logits[i])));
  const int n = 40000;
  std::vector<int> counts(logits.size(), 0);
  Rng rng(3);
  for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(sample_softmax(logits, rng))];
  for (size_t i = 0; i < p.size(); ++i) {
    const double q = p[i] / sum, sd = std::sqrt(n * q * (1.0 - q));
    EXPECT_NEAR(counts[i], n * q, 5.0 * sd + 1e-9) << "id " << i;
  }
}

TEST(SelfCalibration, ReportsProgressEveryStep) {
  const Model m = test::random_model(test::tiny_config(), 2);
  std::vector<SelfCalibrationProgress> seen;
  // Groups of 2, 2 and 1 windows, 9 steps each; with several threads their reports interleave.
  self_calibration(
      m, 5, 10, 1, [&](const SelfCalibrationProgress& p) { seen.push_back(p); }, 2);
  ASSERT_EQ(seen.size(), 3u * 9u);
  EXPECT_EQ(seen.front().windows_done, 0);
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GE(seen[i].tokens, seen[i - 1].tokens);
    EXPECT_GE(seen[i].seconds, seen[i - 1].seconds);
    EXPECT_GE(seen[i].windows_done, seen[i - 1].windows_done);
  }
  EXPECT_EQ(seen.back().windows_done, 5);
  EXPECT_EQ(seen.back().windows_total, 5);
  EXPECT_EQ(seen.back().tokens, 5 * 10);
}

TEST(SelfCalibration, RejectsBadArguments) {
  const Model m = test::random_model(test::tiny_config(), 1);  // context 32
  EXPECT_THAT(error_of([&] { self_calibration(m, 0, 16, 1); }), HasSubstr("nsamples must be >= 1"));
  EXPECT_THAT(error_of([&] { self_calibration(m, 4, 1, 1); }), HasSubstr("seqlen must be >= 2"));
  EXPECT_THAT(error_of([&] { self_calibration(m, 4, 33, 1); }),
              HasSubstr("seqlen 33 exceeds the model's context (max_seq_len 32)"));
  EXPECT_THAT(error_of([&] { self_calibration(m, 4, 16, 1, {}, -1); }),
              HasSubstr("batch must be >= 0"));
  EXPECT_EQ(self_calibration(m, 1, 32, 1).front().size(), 32u);  // the whole context is fine
}

TEST(SelfCalibration, AutomaticBatchFitsTheCacheBudget) {
  ModelConfig small = test::tiny_config();
  EXPECT_EQ(self_calibration_batch(small, 128, 32), 16);
  EXPECT_EQ(self_calibration_batch(small, 5, 32), 5);
  ModelConfig big = small;  // Llama-2-7B's cache: 32 layers of 4096 keys and values
  big.n_layers = 32;
  big.n_heads = big.n_kv_heads = 32;
  big.head_dim = 128;
  EXPECT_EQ(self_calibration_batch(big, 128, 2048), 1);  // 2 GiB a window
  EXPECT_EQ(self_calibration_batch(big, 128, 128), 16);  // 127 MiB a window
  EXPECT_EQ(self_calibration_batch(big, 128, 512), 4);   // 511 MiB a window
}

}  // namespace
}  // namespace cdq
