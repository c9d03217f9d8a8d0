// The KV-cache decoder against the batched forward pass, and sampling against the softmax it
// draws from.
//
// Decoder tolerance: both run in float32 through the same building blocks; only the attention
// loops differ in order of summation, so logits agree to float rounding (~1e-6 of the row's
// logit scale). 1e-4 leaves 100x headroom, while a wrong RoPE position or a stale cache row
// moves logits by O(1).
//
// Sampling tolerance: n draws of a token with probability p give a count with standard
// deviation sqrt(n p (1 - p)); we allow 5 of them (a false alarm about once in 10^6 runs,
// and the seed is fixed anyway).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/decoder.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/sampling.hpp>
#include <cmath>

#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using test::error_of;
using test::random_tokens;
using ::testing::HasSubstr;

void expect_decoder_matches_forward(const Model& m, const std::vector<int>& tokens) {
  const Matrix full = forward_logits(m, tokens);  // [T, vocab]
  Decoder dec(m);
  double worst = 0.0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const std::span<const float> got = dec.step(tokens[t]);
    ASSERT_EQ(static_cast<int64_t>(got.size()), full.cols);
    double scale = 1.0;
    for (int64_t j = 0; j < full.cols; ++j)
      scale = std::max(scale, std::abs(static_cast<double>(full(static_cast<int64_t>(t), j))));
    for (int64_t j = 0; j < full.cols; ++j)
      worst = std::max(
          worst, std::abs(got[static_cast<size_t>(j)] - full(static_cast<int64_t>(t), j)) / scale);
  }
  EXPECT_LT(worst, 1e-4);
  EXPECT_EQ(dec.position(), static_cast<int64_t>(tokens.size()));
}

TEST(Decoder, StepByStepEqualsTheBatchedForward) {
  const Model stories = load_model(test::stories260k_path());
  expect_decoder_matches_forward(stories, random_tokens(300, stories.config.vocab_size, 1));
  uint64_t seed = 5;
  for (const ModelConfig& c : test::odd_shape_configs()) {
    SCOPED_TRACE(::testing::Message() << "heads " << c.n_heads << "/" << c.n_kv_heads);
    expect_decoder_matches_forward(test::random_model(c, seed), random_tokens(64, c.vocab_size, 9));
    ++seed;
  }
}

TEST(Decoder, ResetStartsANewSequence) {
  const Model m = test::random_model(test::tiny_config(), 3);
  Decoder dec(m);
  const std::span<const float> l = dec.step(1);
  const std::vector<float> first(l.begin(), l.end());
  dec.step(7);
  dec.reset();
  const std::span<const float> again = dec.step(1);
  EXPECT_EQ(dec.position(), 1);
  for (size_t j = 0; j < first.size(); ++j) EXPECT_EQ(again[j], first[j]);
}

TEST(Decoder, RejectsBadTokensAndRunningPastTheContext) {
  const Model m = test::random_model(test::tiny_config(), 1);  // vocab 40, context 32
  Decoder dec(m);
  dec.step(3);
  EXPECT_THAT(error_of([&] { dec.step(40); }),
              HasSubstr("token id 40 at position 1 is outside the vocabulary"));
  for (int t = 1; t < 32; ++t) dec.step(2);
  EXPECT_THAT(error_of([&] { dec.step(2); }), HasSubstr("past the model's max_seq_len 32"));
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < p.size(); ++i) sum += (p[i] = std::exp(logits[i] / temperature));
  for (double& x : p) x /= sum;
  return p;
}

std::vector<int> counts_of(const std::vector<float>& logits, const SampleOptions& o, int n,
                           uint64_t seed) {
  Rng rng(seed);
  std::vector<int> c(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++c[static_cast<size_t>(sample_token(logits, o, rng))];
  return c;
}

void expect_frequencies(const std::vector<int>& counts, const std::vector<double>& p, int n) {
  for (size_t i = 0; i < p.size(); ++i) {
    const double sd = std::sqrt(n * p[i] * (1.0 - p[i]));
    EXPECT_NEAR(counts[i], n * p[i], 5.0 * sd + 1e-9) << "token " << i;
  }
}

TEST(Sampling, DrawsFromTheTemperedSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.5f, -1.0f, 0.5f};
  const int n = 40000;
  for (double temp : {1.0, 2.0, 0.5}) {
    SCOPED_TRACE(temp);
    SampleOptions o;
    o.temperature = temp;
    expect_frequencies(counts_of(logits, o, n, 7), softmax(logits, temp), n);
  }
}

TEST(Sampling, TopPDrawsOnlyFromTheNucleusInProportion) {
  // p = 0.5, 0.3, 0.15, 0.05 (shuffled): top_p 0.75 keeps the 0.5 and 0.3 tokens, renormalised.
  const std::vector<float> logits = {std::log(0.15f), std::log(0.5f), std::log(0.05f),
                                     std::log(0.3f)};
  SampleOptions o;
  o.top_p = 0.75;
  const int n = 40000;
  const auto c = counts_of(logits, o, n, 8);
  EXPECT_EQ(c[0], 0);
  EXPECT_EQ(c[2], 0);
  expect_frequencies(c, {0.0, 0.625, 0.0, 0.375}, n);
}

TEST(Sampling, ZeroTemperatureOrTinyTopPIsTheArgmax) {
  const std::vector<float> logits = {0.3f, 1.9f, 1.8f, -4.0f};
  SampleOptions greedy;
  greedy.temperature = 0.0;
  SampleOptions nucleus;
  nucleus.top_p = 1e-6;
  Rng rng(1);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(sample_token(logits, greedy, rng), 1);
    EXPECT_EQ(sample_token(logits, nucleus, rng), 1);
  }
}

TEST(Generate, GreedyContinuationFollowsTheForwardArgmax) {
  const Model m = load_model(test::stories260k_path());
  Decoder dec(m);
  SampleOptions o;
  o.temperature = 0.0;
  o.max_tokens = 40;
  Rng rng(0);
  const std::vector<int> prompt = {1};
  const std::vector<int> g = generate(dec, prompt, o, rng);
  ASSERT_EQ(g.size(), 40u);
  std::vector<int> all = prompt;
  all.insert(all.end(), g.begin(), g.end());
  const Matrix logits = forward_logits(m, all);
  for (size_t t = 0; t < g.size(); ++t) {
    const float* row = logits.row(static_cast<int64_t>(t));
    EXPECT_EQ(std::max_element(row, row + logits.cols) - row, g[t]) << "position " << t;
  }
  // A stop id ends the sequence just before its first occurrence.
  o.stop_ids = {g[10]};
  const auto stopped = generate(dec, prompt, o, rng);
  const auto first = std::find(g.begin(), g.end(), g[10]) - g.begin();
  EXPECT_EQ(stopped, std::vector<int>(g.begin(), g.begin() + first));
}

TEST(Generate, SameSeedSameTextAndTheContextBoundsTheLength) {
  const Model m = test::random_model(test::tiny_config(), 2);  // context 32
  Decoder dec(m);
  SampleOptions o;
  o.max_tokens = 1000;
  const std::vector<int> prompt = {1, 5};
  Rng a(3), b(3), c(4);
  const auto x = generate(dec, prompt, o, a), y = generate(dec, prompt, o, b);
  const auto z = generate(dec, prompt, o, c);
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
  EXPECT_EQ(x.size(), 31u);  // 2 prompt tokens + 30 fed back = 32 positions, +1 last sample
}

TEST(Generate, RejectsBadOptions) {
  const Model m = test::random_model(test::tiny_config(), 2);
  Decoder dec(m);
  Rng rng(0);
  const std::vector<int> prompt = {1};
  auto with = [&](auto edit) {
    SampleOptions o;
    edit(o);
    return error_of([&] { generate(dec, prompt, o, rng); });
  };
  EXPECT_THAT(with([](SampleOptions& o) { o.temperature = -1; }), HasSubstr("temperature"));
  EXPECT_THAT(with([](SampleOptions& o) { o.top_p = 0; }), HasSubstr("top_p must be in (0, 1]"));
  EXPECT_THAT(with([](SampleOptions& o) { o.max_tokens = 0; }), HasSubstr("max_tokens"));
  EXPECT_THAT(error_of([&] { generate(dec, {}, SampleOptions{}, rng); }),
              HasSubstr("at least one token"));
  const std::vector<int> too_long(32, 3);  // the context is 32
  EXPECT_THAT(error_of([&] { generate(dec, too_long, SampleOptions{}, rng); }),
              HasSubstr("the prompt has 32 tokens, which leaves no room in the model's context "
                        "of 32"));
}

TEST(Generate, CliIsReproducibleAndStartsFromThePrompt) {
  const std::vector<std::string> args = {
      "generate",  "--model", test::stories260k_path(), "--prompt", "Once upon a time",
      "--samples", "2",       "--max-tokens",           "30",       "--seed",
      "3"};
  const auto a = test::run_cli(args), b = test::run_cli(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out.rfind("Once upon a time", 0), 0u);
  EXPECT_EQ(a.out.find("\n\nOnce upon a time") != std::string::npos, true);
  // A tokenizer with ids the model cannot embed is refused before any sampling.
  test::TempDir dir;
  const std::string small = dir.file("small.bin");
  write_llama2c(test::random_model(test::tiny_config(), 1), small);  // vocabulary of 40
  const auto mismatch = test::run_cli(
      {"generate", "--model", small, "--tokenizer", test::shared_dir() + "/models/tok512.bin"});
  EXPECT_NE(mismatch.exit_code, 0);
  EXPECT_THAT(mismatch.err, HasSubstr("tokenizer has 512 tokens but the model only 40"));
  const auto bad = test::run_cli({"generate", "--model", test::stories260k_path(), "--top-p", "2"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("--top-p"));
}

}  // namespace
}  // namespace cdq
