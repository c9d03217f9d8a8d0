// Evaluation: windows, perplexity against the reference forward pass, KL / top-1 properties,
// and the `cdquant eval` command.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/eval.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/paths.hpp"
#include "support/reference_forward.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;

using test::error_of;

std::string text_path() {
  return test::shared_dir() + "/data/tinyshakespeare.txt";
}

// The first `chars` characters of a real text, tokenized for stories260K (no BOS).
std::vector<int> stories_stream(size_t chars) {
  const auto tok = load_tokenizer(test::shared_dir() + "/models/tok512.bin");
  return tok->encode(read_file(text_path()).substr(0, chars), false);
}

// Adds N(0, (sigma * rms(W))^2) noise to every linear: a stand-in for quantization error.
Model perturbed(const Model& m, double sigma, uint64_t seed) {
  Model p = m;
  Rng rng(seed);
  for (BlockWeights& b : p.blocks)
    for (Linear l : kAllLinears) {
      Matrix& w = b.linear(l);
      double ss = 0.0;
      for (float v : w.data) ss += static_cast<double>(v) * v;
      const double s = sigma * std::sqrt(ss / static_cast<double>(w.size()));
      for (float& v : w.data) v += static_cast<float>(s * rng.normal());
    }
  return p;
}

TEST(Eval, WindowsWithAndWithoutBos) {
  const std::vector<int> s = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  const auto with = make_windows(s, 4, true, 1, 0);  // 3 stream tokens each, 10 // 3 = 3
  ASSERT_EQ(with.size(), 3u);
  EXPECT_EQ(with[0], (std::vector<int>{1, 10, 11, 12}));
  EXPECT_EQ(with[2], (std::vector<int>{1, 16, 17, 18}));
  const auto without = make_windows(s, 4, false, 1, 0);  // 10 // 4 = 2, last partial dropped
  ASSERT_EQ(without.size(), 2u);
  EXPECT_EQ(without[1], (std::vector<int>{14, 15, 16, 17}));
  EXPECT_EQ(make_windows(s, 4, true, 1, 2).size(), 2u);
  EXPECT_THAT(error_of([&] { make_windows(s, 1, true, 1, 0); }), HasSubstr("too short"));
}

TEST(Eval, PerplexityMatchesReferenceLogits) {
  const Model m = load_model(test::stories260k_path());
  const std::vector<int> stream = stories_stream(2000);
  const int ctx = 96;
  EvalOptions opt;
  opt.ctx = ctx;
  opt.max_windows = 3;
  const EvalResult r = evaluate(m, stream, opt);
  ASSERT_EQ(r.windows, 3);
  ASSERT_EQ(r.scored, 3 * (ctx - 1));

  // The same NLL and entropy from the token-by-token reference and a hand-written softmax.
  double nll = 0.0, entropy = 0.0;
  for (int w = 0; w < 3; ++w) {
    std::vector<int> win = {m.config.bos_id};
    win.insert(win.end(), stream.begin() + w * (ctx - 1), stream.begin() + (w + 1) * (ctx - 1));
    const auto logits = test::reference_logits(m, win);
    for (int t = 0; t + 1 < ctx; ++t) {
      const auto& row = logits[static_cast<size_t>(t)];
      double z = 0.0;
      for (double v : row) z += std::exp(v);
      nll += std::log(z) - row[static_cast<size_t>(win[t + 1])];
      for (double v : row) entropy -= std::exp(v) / z * (v - std::log(z));
    }
  }
  nll /= static_cast<double>(r.scored);
  entropy /= static_cast<double>(r.scored);
  // Logits agree to ~1e-6 of their scale (test_forward), so the means agree to ~1e-5.
  EXPECT_NEAR(r.nll, nll, 1e-4);
  EXPECT_NEAR(r.entropy, entropy, 1e-4);
  EXPECT_GT(r.entropy, 0.0);
  EXPECT_LT(r.entropy, std::log(m.config.vocab_size));
  EXPECT_NEAR(r.ppl, std::exp(nll), 1e-4 * std::exp(nll));
  // A trained model on English text does far better than uniform guessing.
  EXPECT_LT(r.ppl, m.config.vocab_size / 4.0);
}

TEST(Eval, KlOfModelWithItselfIsZero) {
  const Model m = load_model(test::stories260k_path());
  const Model copy = load_model(test::stories260k_path());
  EvalOptions opt;
  opt.ctx = 64;
  opt.max_windows = 2;
  const EvalResult r = evaluate(m, stories_stream(1500), opt, &copy);
  EXPECT_TRUE(r.compared);
  EXPECT_EQ(r.kl, 0.0);
  EXPECT_EQ(r.top1, 1.0);
  EXPECT_EQ(r.nll_other, r.nll);  // one function on the same logits
  // The two entropies are sums of the same terms in loops the compiler vectorises differently
  // (AVX2 vs AVX-512 builds differ): equal to double rounding over the vocabulary, not bit for bit.
  EXPECT_NEAR(r.entropy_other, r.entropy,
              m.config.vocab_size * std::numeric_limits<double>::epsilon() * r.entropy);
}

TEST(Eval, KlGrowsWithPerturbation) {
  const Model m = load_model(test::stories260k_path());
  const std::vector<int> stream = stories_stream(1500);
  EvalOptions opt;
  opt.ctx = 64;
  opt.max_windows = 2;
  const Model small = perturbed(m, 0.02, 1), large = perturbed(m, 0.2, 1);
  const EvalResult rs = evaluate(m, stream, opt, &small);
  const EvalResult rl = evaluate(m, stream, opt, &large);
  EXPECT_GT(rs.kl, 0.0);
  EXPECT_GT(rl.kl, rs.kl);
  EXPECT_LT(rl.top1, 1.0);
  EXPECT_GE(rs.top1, rl.top1);
  // The second model's NLL is its own perplexity on the same windows.
  EXPECT_NEAR(rl.nll_other, evaluate(large, stream, opt).nll, 1e-9);
}

TEST(Eval, StandardErrorsComeFromTheWindows) {
  const std::vector<double> x = {1.0, 2.0, 4.0, 7.0};  // mean 3.5, sample variance 7
  EXPECT_NEAR(standard_error(x), std::sqrt(7.0 / 4.0), 1e-12);
  EXPECT_EQ(standard_error(std::vector<double>{3.0}), 0.0);
  const std::vector<double> y = {0.5, 1.5, 3.5, 6.5};  // x - y = 0.5 everywhere
  EXPECT_NEAR(paired_standard_error(x, y), 0.0, 1e-15);

  const Model m = load_model(test::stories260k_path());
  const Model other = perturbed(m, 0.05, 2);
  EvalOptions opt;
  opt.ctx = 64;
  opt.max_windows = 5;
  const EvalResult r = evaluate(m, stories_stream(3000), opt, &other);
  ASSERT_EQ(r.window_nll.size(), 5u);
  ASSERT_EQ(r.window_nll_other.size(), 5u);
  ASSERT_EQ(r.window_kl.size(), 5u);
  // Windows score equal counts, so the overall means are the means of the window means.
  double nll = 0.0, nll_other = 0.0, kl = 0.0;
  std::vector<double> diff;
  for (size_t w = 0; w < 5; ++w) {
    nll += r.window_nll[w] / 5;
    nll_other += r.window_nll_other[w] / 5;
    kl += r.window_kl[w] / 5;
    diff.push_back(r.window_nll_other[w] - r.window_nll[w]);
    // Each window alone gives its own entry (batched and single-window float32 products
    // round differently: logits agree to ~1e-6 of their scale, so KL to ~1e-5).
    EvalOptions one = opt;
    one.max_windows = 1;
    const auto first = stories_stream(3000);
    const std::span<const int> rest(first.data() + w * 63, first.size() - w * 63);
    EXPECT_NEAR(evaluate(m, rest, one, &other).kl, r.window_kl[w], 1e-5);
  }
  EXPECT_NEAR(r.nll, nll, 1e-9);
  EXPECT_NEAR(r.nll_other, nll_other, 1e-9);
  EXPECT_NEAR(r.kl, kl, 1e-9);
  EXPECT_EQ(r.nll_se, standard_error(r.window_nll));
  EXPECT_EQ(r.kl_se, standard_error(r.window_kl));
  EXPECT_NEAR(r.ln_ppl_ratio_se, standard_error(diff), 1e-15);
  EXPECT_GT(r.nll_se, 0.0);
  EXPECT_GT(r.kl_se, 0.0);
  // Pairing removes the text's own difficulty, which both models share.
  EXPECT_LT(r.ln_ppl_ratio_se, r.nll_se);
}

TEST(Eval, RejectsShortStreamsAndMismatchedModels) {
  const Model m = test::random_model(test::tiny_config(), 1);
  const std::vector<int> few = {3, 4, 5};
  EvalOptions opt;
  opt.ctx = 8;
  EXPECT_THAT(error_of([&] { evaluate(m, few, opt); }), HasSubstr("do not fill one window"));
  opt.ctx = 64;
  EXPECT_THAT(error_of([&] { evaluate(m, few, opt); }), HasSubstr("exceeds the model's"));
  ModelConfig c = test::tiny_config();
  c.vocab_size = 41;
  const Model other = test::random_model(c, 2);
  opt.ctx = 8;
  std::vector<int> stream(40, 3);
  EXPECT_THAT(error_of([&] { evaluate(m, stream, opt, &other); }),
              HasSubstr("vocabularies differ"));
}

TEST(EvalCli, JsonMatchesLibraryAndSelfComparison) {
  test::TempDir dir;
  const std::string text = dir.write("t.txt", read_file(text_path()).substr(0, 3000));
  const auto r =
      test::run_cli({"eval", "--model", test::stories260k_path(), "--text", text, "--ctx", "64",
                     "--max-windows", "3", "--quantized", test::stories260k_path(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["windows"], 3);
  EXPECT_EQ(j["scored"], 3 * 63);
  EXPECT_EQ(j["quantized"]["kl"], 0.0);
  EXPECT_EQ(j["quantized"]["kl_se"], 0.0);
  EXPECT_EQ(j["quantized"]["ln_ppl_ratio"], 0.0);
  EXPECT_EQ(j["quantized"]["top1"], 1.0);
  EXPECT_GT(j["nll_se"].get<double>(), 0.0);

  const Model m = load_model(test::stories260k_path());
  const auto tok = load_tokenizer(test::shared_dir() + "/models/tok512.bin");
  EvalOptions opt;
  opt.ctx = 64;
  opt.max_windows = 3;
  const EvalResult lib = evaluate(m, tok->encode(read_file(text), false), opt);
  EXPECT_NEAR(j["ppl"].get<double>(), lib.ppl, 1e-9 * lib.ppl);

  const auto line = test::run_cli({"eval", "--model", test::stories260k_path(), "--text", text,
                                   "--ctx", "64", "--max-windows", "1"});
  ASSERT_EQ(line.exit_code, 0) << line.err;
  EXPECT_THAT(line.out, HasSubstr("ppl "));
  EXPECT_THAT(line.out, HasSubstr(" +- 0.0000 (nll"));  // one window: no spread to measure
  EXPECT_THAT(line.out, HasSubstr("1 windows x 64 tokens"));
}

TEST(EvalCli, MissingTokenizerIsAClearError) {
  test::TempDir dir;
  const Model m = test::random_model(test::tiny_config(), 1);
  const std::string model = dir.file("m.bin");
  write_llama2c(m, model);
  const std::string text = dir.write("t.txt", "hello world");
  const auto r = test::run_cli({"eval", "--model", model, "--text", text});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("no tokenizer found"));
}

}  // namespace
}  // namespace cdq
