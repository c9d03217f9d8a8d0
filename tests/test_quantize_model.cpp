// The whole-model pipeline on the real stories260K checkpoint: determinism, CD vs GPTQ vs
// RTN, true-sequential, outputs written and read back, and CLI errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cdquant/calibration.hpp>
#include <cdquant/eval.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/quantize_job.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>

#include "linalg/linalg.hpp"
#include "support/cli.hpp"
#include "support/paths.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;

std::string stories() {
  return test::shared_dir() + "/models/stories260K.bin";
}
std::string calib_text() {
  return test::shared_dir() + "/data/tinyshakespeare.txt";
}
std::string test_text() {
  return test::shared_dir() + "/data/wikitext2-test.txt";
}

std::vector<std::vector<int>> calibration(uint64_t seed, int nsamples = 16, int seqlen = 128) {
  const auto tok = tokenizer_for_model(stories(), "");
  return calibration_from_file(calib_text(), *tok, nsamples, seqlen, seed, 1);
}

struct Quantized {
  Model model;
  std::vector<LinearResult> linears;
};

Quantized quantize(Method method, int bits, bool true_sequential = false) {
  auto reader = open_model(stories());
  QuantizeOptions o;
  o.method = method;
  o.solver.grid.bits = bits;
  o.true_sequential = true_sequential;
  InMemoryModelWriter writer(*reader);
  Quantized q;
  quantize_model(*reader, calibration(7), o,
                 [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                   writer.write_block(layer, block, linears);
                   for (auto& l : linears) q.linears.push_back(std::move(l));
                 });
  writer.finish();
  q.model = std::move(writer.model());
  return q;
}

const std::vector<int>& test_stream() {
  static const std::vector<int> stream = [] {
    const auto tok = tokenizer_for_model(stories(), "");
    return tok->encode(read_file(test_text()).substr(0, 60000), false);
  }();
  return stream;
}

double kl_against_float(const Model& q) {
  static const Model float_model = load_model(stories());
  EvalOptions e;
  e.ctx = 128;
  e.max_windows = 40;
  return evaluate(float_model, test_stream(), e, &q).kl;
}

TEST(Calibration, SameSeedSameWindowsOtherSeedOther) {
  const auto a = calibration(3), b = calibration(3), c = calibration(4);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  ASSERT_EQ(a.size(), 16u);
  for (const auto& w : a) {
    ASSERT_EQ(w.size(), 128u);
    EXPECT_EQ(w.front(), 1);  // BOS
  }
}

TEST(Calibration, WholeTextAndSlicedSamplingAgreeOnShape) {
  const auto tok = tokenizer_for_model(stories(), "");
  const std::string text = read_file(calib_text());
  const auto sliced = sample_calibration_text(text, *tok, 8, 64, 1, true, 1, /*whole=*/0);
  const auto whole = sample_calibration_text(text, *tok, 8, 64, 1, true, 1, text.size());
  ASSERT_EQ(sliced.size(), 8u);
  ASSERT_EQ(whole.size(), 8u);
  for (const auto& w : sliced) EXPECT_EQ(w.size(), 64u);
}

TEST(Calibration, TooShortTextIsAClearError) {
  const std::vector<int> stream(10, 5);
  try {
    sample_calibration_windows(stream, 4, 64, 0, true, 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("fewer than one window"));
  }
}

TEST(QuantizeModel, IsDeterministic) {
  const Quantized a = quantize(parse_method("gptq"), 4), b = quantize(parse_method("gptq"), 4);
  for (size_t i = 0; i < a.model.blocks.size(); ++i)
    for (Linear l : kAllLinears)
      EXPECT_EQ(a.model.blocks[i].linear(l).data, b.model.blocks[i].linear(l).data);
}

TEST(QuantizeModel, GptqAndCdHaveLowerKlThanRtnAt4Bits) {
  const double kl_rtn = kl_against_float(quantize(parse_method("rtn"), 4).model);
  const double kl_gptq = kl_against_float(quantize(parse_method("gptq"), 4).model);
  const double kl_cd = kl_against_float(quantize(parse_method("cd"), 4).model);
  EXPECT_GT(kl_rtn, 0.0);
  EXPECT_LT(kl_gptq, kl_rtn);
  EXPECT_LT(kl_cd, kl_rtn);
}

TEST(QuantizeModel, WeightsLieOnTheReportedGridAndOtherTensorsAreUntouched) {
  const Quantized q = quantize(parse_method("cd"), 3);
  const Model f = load_model(stories());
  ASSERT_EQ(q.linears.size(), 35u);
  for (const LinearResult& r : q.linears) {
    const Matrix deq = dequantize(r.grid, r.codes);
    EXPECT_EQ(deq.data, q.model.blocks[r.layer].linear(r.linear).data)
        << linear_display_name(r.layer, r.linear);
    EXPECT_LE(r.grid.maxq, 7);
  }
  EXPECT_EQ(q.model.tok_embeddings.data, f.tok_embeddings.data);
  EXPECT_EQ(q.model.final_norm, f.final_norm);
  EXPECT_EQ(q.model.blocks[2].attn_norm, f.blocks[2].attn_norm);
}

// Hessians of every linear input of every block, from the float model's own activations.
std::vector<std::array<Matrix, 4>> float_hessians(const Model& m,
                                                  const std::vector<std::vector<int>>& windows) {
  std::vector<std::array<Matrix, 4>> hs(m.blocks.size());
  for (const auto& w : windows) {
    Matrix x = embed_tokens(m.tok_embeddings, w);
    for (size_t b = 0; b < m.blocks.size(); ++b) {
      const BlockInputsCallback cb = [&](BlockInput in, const Matrix& act) {
        Matrix& h = hs[b][static_cast<size_t>(in)];
        if (h.empty()) h = Matrix(act.cols, act.cols);
        syrk_accumulate(act.data.data(), act.rows, act.cols, 1.0f, h);
      };
      block_forward(m.blocks[b], m.config, x, &cb);
    }
  }
  return hs;
}

TEST(QuantizeModel, OnTheSameLayerInputsCdNeverExceedsGptq) {
  const Model m = load_model(stories());
  const auto hs = float_hessians(m, calibration(11, 8, 128));
  SolverOptions o;
  for (int bits : {2, 3, 4}) {
    o.grid.bits = bits;
    for (size_t b = 0; b < m.blocks.size(); ++b)
      for (Linear l : kAllLinears) {
        const Matrix& w = m.blocks[b].linear(l);
        const Matrix& h = hs[b][static_cast<size_t>(input_of(l))];
        const double gptq = solve_layer(w, h, parse_method("gptq"), o).objective;
        const double cd = solve_layer(w, h, parse_method("cd"), o).objective;
        EXPECT_LE(cd, gptq * (1 + 1e-6)) << bits << " bits, " << linear_display_name(b, l);
      }
  }
}

TEST(QuantizeModel, TrueSequentialRunsAndDiffers) {
  const Quantized a = quantize(parse_method("gptq"), 3, false),
                  b = quantize(parse_method("gptq"), 3, true);
  // Block 0's q/k/v see the same inputs either way; later linears see refreshed H.
  EXPECT_EQ(a.model.blocks[0].wq.data, b.model.blocks[0].wq.data);
  EXPECT_NE(a.model.blocks[0].w_down.data, b.model.blocks[0].w_down.data);
}

TEST(QuantizeCli, WritesALlama2cCheckpointThatLoadsAndEvaluates) {
  test::TempDir dir;
  const std::string out = dir.file("q.bin");
  const auto r =
      test::run_cli({"quantize", "--model", stories(), "--calib", calib_text(), "--out", out,
                     "--method", "cd", "--bits", "4", "--nsamples", "4", "--seqlen", "64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("blk.4.ffn_down"));  // a progress line per layer
  EXPECT_THAT(r.out, HasSubstr("quantized 35 linears"));
  const Model q = load_model(out);
  EXPECT_GT(kl_against_float(q), 0.0);
}

TEST(QuantizeCli, BadInputGivesAClearMessage) {
  test::TempDir dir;
  auto run = [&](std::vector<std::string> args) { return test::run_cli(args); };
  auto r = run({"quantize", "--model", stories(), "--calib", "/nonexistent.txt", "--out",
                dir.file("x.bin")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent.txt"));
  r = run({"quantize", "--model", "/nonexistent.bin", "--calib", calib_text(), "--out",
           dir.file("x.bin")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent.bin"));
  r = run({"quantize", "--model", stories(), "--calib", calib_text(), "--out", dir.file("x.bin"),
           "--seqlen", "4096"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("context"));
  r = run({"quantize", "--model", stories(), "--calib", calib_text(), "--out", dir.file("x.bin"),
           "--method", "magic"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("unknown method"));
}

}  // namespace
}  // namespace cdq
