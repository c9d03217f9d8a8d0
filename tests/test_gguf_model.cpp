// GGUF llama models: exact float round trips (weights, logits, tokenizer), quantized files that
// decode to exactly the solver's Q, llama.cpp's type plan (mixes, fallbacks, overrides), CD
// against RTN on the same ggml grids, and model-level errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/calibration.hpp>
#include <cdquant/eval.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/gguf_export.hpp>
#include <cdquant/half.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_tokenizer.hpp>
#include <cdquant/quantize.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/sampling.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>
#include <cmath>
#include <functional>
#include <map>

#include "model/gguf_arch.hpp"
#include "quant/ggml_quants.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using test::error_of;

// Calibration and evaluation texts (different ones, both shipped in ../shared/data).
std::string calib_text() {
  return test::shared_dir() + "/data/tinyshakespeare.txt";
}
std::string eval_text() {
  return test::shared_dir() + "/data/frankenstein.txt";
}

std::string stories_tokenizer_path() {
  return test::shared_dir() + "/models/tok512.bin";
}

// A small "llama" vocabulary for random models (ids 0..2 unk/bos/eos, then single letters).
TokenizerVocab letter_vocab(int vocab_size) {
  TokenizerVocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.token_types = {2, 3, 3};
  for (int i = 3; i < vocab_size; ++i) {
    v.tokens.push_back(std::string(1, static_cast<char>('a' + (i - 3) % 26)) +
                       std::to_string((i - 3) / 26));
    v.token_types.push_back(1);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  return v;
}

void expect_same_matrix(const Matrix& a, const Matrix& b, const std::string& what) {
  ASSERT_EQ(a.rows, b.rows) << what;
  ASSERT_EQ(a.cols, b.cols) << what;
  for (size_t i = 0; i < a.data.size(); ++i) ASSERT_EQ(a.data[i], b.data[i]) << what << " at " << i;
}

void expect_same_model(const Model& a, const Model& b) {
  EXPECT_EQ(a.config.dim, b.config.dim);
  EXPECT_EQ(a.config.hidden_dim, b.config.hidden_dim);
  EXPECT_EQ(a.config.n_layers, b.config.n_layers);
  EXPECT_EQ(a.config.n_heads, b.config.n_heads);
  EXPECT_EQ(a.config.n_kv_heads, b.config.n_kv_heads);
  EXPECT_EQ(a.config.head_dim, b.config.head_dim);
  EXPECT_EQ(a.config.vocab_size, b.config.vocab_size);
  EXPECT_EQ(a.config.max_seq_len, b.config.max_seq_len);
  EXPECT_EQ(a.config.rope_theta, b.config.rope_theta);
  EXPECT_EQ(a.config.norm_eps, b.config.norm_eps);
  EXPECT_EQ(a.config.tied_embeddings, b.config.tied_embeddings);
  EXPECT_EQ(a.config.qkv_bias, b.config.qkv_bias);
  expect_same_matrix(a.tok_embeddings, b.tok_embeddings, "token_embd");
  for (int l = 0; l < a.config.n_layers; ++l) {
    const auto& x = a.blocks[static_cast<size_t>(l)];
    const auto& y = b.blocks[static_cast<size_t>(l)];
    for (Linear lin : kAllLinears)
      expect_same_matrix(x.linear(lin), y.linear(lin), gguf_linear_name(l, lin));
    EXPECT_EQ(x.attn_norm, y.attn_norm);
    EXPECT_EQ(x.ffn_norm, y.ffn_norm);
    EXPECT_EQ(x.bq, y.bq);
    EXPECT_EQ(x.bk, y.bk);
    EXPECT_EQ(x.bv, y.bv);
  }
  EXPECT_EQ(a.final_norm, b.final_norm);
  if (!a.config.tied_embeddings) expect_same_matrix(a.output, b.output, "output");
}

std::vector<int> some_tokens(int vocab, int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(static_cast<size_t>(n));
  for (int& x : t) x = static_cast<int>(rng.next_u64() % static_cast<uint64_t>(vocab));
  return t;
}

TEST(GgufModel, StoriesF32RoundTripIsExact) {
  test::TempDir dir;
  const Model model = load_model(test::stories260k_path());
  const auto tok = load_tokenizer(stories_tokenizer_path());
  GgufExportOptions opt;
  opt.type = "F32";
  const std::string path = dir.file("stories.gguf");
  write_gguf_model(model, tok->vocab(), path, opt);

  const Model back = load_model(path);  // open_model sniffs the GGUF magic
  expect_same_model(model, back);
  const std::vector<int> tokens = some_tokens(model.config.vocab_size, 40, 7);
  const Matrix a = forward_logits(model, tokens), b = forward_logits(back, tokens);
  expect_same_matrix(a, b, "logits");

  // The header carries what llama.cpp needs.
  const GgufReader r(path);
  EXPECT_EQ(r.get("general.architecture").str(), "llama");
  EXPECT_EQ(r.get("general.file_type").get<uint32_t>(), 0u);
  EXPECT_EQ(r.get("general.quantization_version").get<uint32_t>(), 2u);  // as llama.cpp writes
  EXPECT_EQ(r.get("llama.block_count").get<uint32_t>(), 5u);
  EXPECT_EQ(r.get("llama.rope.dimension_count").get<uint32_t>(), 8u);
  EXPECT_EQ(r.get("tokenizer.ggml.model").str(), "llama");
  EXPECT_EQ(r.find_tensor("output.weight"), nullptr);  // tied
  EXPECT_EQ(r.tensor("blk.0.attn_q.weight").dims, (std::vector<uint64_t>{64, 64}));
  EXPECT_EQ(r.tensor("blk.0.ffn_down.weight").dims, (std::vector<uint64_t>{172, 64}));

  // The tokenizer survives: same ids for the same text, and eval finds it inside the file.
  const auto tok_back = load_model_tokenizer(path);
  const std::string text =
      read_file(test::shared_dir() + "/data/tinyshakespeare.txt").substr(0, 3000);
  EXPECT_EQ(tok->encode(text, true), tok_back->encode(text, true));
  EXPECT_EQ(tok_back->bos_id, tok->bos_id);
  EXPECT_EQ(tok_back->decode(tok->encode(text, false)), tok->decode(tok->encode(text, false)));
}

TEST(GgufModel, Qwen2BiasesAndUntiedOutputRoundTrip) {
  test::TempDir dir;
  ModelConfig c = test::tiny_config(32, 64, 2, 4, 2, 48, 16);
  c.arch = "qwen2";
  c.qkv_bias = true;
  c.tied_embeddings = false;
  const Model model = test::random_model(c, 3);
  const std::string path = dir.file("q.gguf");
  GgufExportOptions opt;
  opt.type = "F32";
  write_gguf_model(model, letter_vocab(40), path, opt);
  const Model back = load_model(path);
  EXPECT_EQ(back.config.arch, "qwen2");
  expect_same_model(model, back);
  const std::vector<int> tokens = some_tokens(48, 12, 5);
  expect_same_matrix(forward_logits(model, tokens), forward_logits(back, tokens), "logits");
  // qwen2 stores q/k rows in the rotate-half order (llama.cpp's NEOX rope), v as is.
  const GgufReader r(path);
  EXPECT_EQ(r.get("general.architecture").str(), "qwen2");
  expect_same_matrix(gguf_read_matrix(r, "blk.1.attn_q.weight"),
                     interleaved_to_rotate_half(model.blocks[1].wq, c.head_dim), "file q");
  expect_same_matrix(gguf_read_matrix(r, "blk.1.attn_v.weight"), model.blocks[1].wv, "file v");
  EXPECT_EQ(gguf_read_matrix(r, "blk.0.attn_k.bias").data,
            interleaved_to_rotate_half(model.blocks[0].bk, c.head_dim));
  // The short vocabulary is padded to the embedding rows, as llama.cpp requires.
  EXPECT_EQ(r.get("tokenizer.ggml.tokens").str_array().size(), 48u);
}

TEST(GgufModel, PlanFollowsLlamaCppMixes) {
  ModelConfig c = test::tiny_config(512, 1024, 8, 8, 8, 1000, 64);
  c.tied_embeddings = false;
  GgufExportOptions opt;
  opt.type = "Q4_K_M";
  const GgufPlan p(c, opt);
  EXPECT_EQ(p.file_type(), 15u);
  // use_more_bits(i, 8): i < 1, i >= 7, (i - 1) % 3 == 2.
  for (int i = 0; i < 8; ++i) {
    const bool more = i == 0 || i == 3 || i == 6 || i == 7;
    EXPECT_EQ(p.linear(i, Linear::V), more ? GgmlType::Q6_K : GgmlType::Q4_K) << i;
    EXPECT_EQ(p.linear(i, Linear::Down), more ? GgmlType::Q6_K : GgmlType::Q4_K) << i;
    EXPECT_EQ(p.linear(i, Linear::Q), GgmlType::Q4_K);
    EXPECT_EQ(p.linear(i, Linear::O), GgmlType::Q4_K);
  }
  EXPECT_EQ(p.output(), GgmlType::Q6_K);
  EXPECT_EQ(p.embeddings(), GgmlType::Q4_K);
  EXPECT_TRUE(p.notes().empty());

  opt.type = "Q3_K_M";
  const GgufPlan m3(c, opt);
  EXPECT_EQ(m3.file_type(), 12u);
  EXPECT_EQ(m3.linear(0, Linear::V), GgmlType::Q5_K);
  EXPECT_EQ(m3.linear(2, Linear::V), GgmlType::Q4_K);
  EXPECT_EQ(m3.linear(5, Linear::O), GgmlType::Q4_K);
  EXPECT_EQ(m3.linear(5, Linear::Down), GgmlType::Q4_K);
  EXPECT_EQ(m3.linear(5, Linear::Gate), GgmlType::Q3_K);

  // IQ4 ftypes: every linear in the type but for llama.cpp's raises of those ftypes: attn_v to
  // Q5_K at n_head / n_kv_head >= 4, the first n/8 ffn_down to Q5_K without an imatrix.
  opt.type = "IQ4_XS";
  const GgufPlan xs(c, opt);
  EXPECT_EQ(xs.file_type(), 30u);
  for (int i = 0; i < 8; ++i)
    for (Linear l : kAllLinears) EXPECT_EQ(xs.linear(i, l), GgmlType::IQ4_XS) << i;
  EXPECT_EQ(xs.output(), GgmlType::Q6_K);
  opt.importance = false;
  ModelConfig gqa4 = c;
  gqa4.n_kv_heads = 2;
  const GgufPlan nl(gqa4, (opt.type = "IQ4_NL", opt));
  EXPECT_EQ(nl.file_type(), 25u);
  EXPECT_EQ(nl.linear(0, Linear::Down), GgmlType::Q5_K);
  EXPECT_EQ(nl.linear(1, Linear::Down), GgmlType::IQ4_NL);
  EXPECT_EQ(nl.linear(3, Linear::V), GgmlType::Q5_K);
  EXPECT_EQ(nl.linear(3, Linear::K), GgmlType::IQ4_NL);
  opt.importance = true;

  opt.type = "Q8_0";
  EXPECT_EQ(GgufPlan(c, opt).output(), GgmlType::Q8_0);
  opt.type = "f16";
  const GgufPlan f(c, opt);
  EXPECT_EQ(f.output(), GgmlType::F16);
  EXPECT_FALSE(f.any_quantized());

  // Overrides: first match wins, by GGUF tensor name.
  opt.type = "Q4_K";
  opt.overrides = {"ffn_down=Q8_0", "blk\\.1\\.=Q2_K", "ffn=Q5_K"};
  const GgufPlan o(c, opt);
  EXPECT_EQ(o.linear(1, Linear::Down), GgmlType::Q8_0);
  EXPECT_EQ(o.linear(1, Linear::Q), GgmlType::Q2_K);
  EXPECT_EQ(o.linear(2, Linear::Up), GgmlType::Q5_K);
  EXPECT_EQ(o.linear(2, Linear::K), GgmlType::Q4_K);
  EXPECT_THAT(o.note(1, Linear::Q), HasSubstr("--override"));

  opt.overrides = {"ffn_down"};
  EXPECT_THAT(error_of([&] { GgufPlan(c, opt); }), HasSubstr("PATTERN=TYPE"));
  opt.overrides = {"(=Q4_0"};
  EXPECT_THAT(error_of([&] { GgufPlan(c, opt); }), HasSubstr("bad regular expression"));
  opt.overrides = {};
  opt.type = "Q4_K_X";
  EXPECT_THAT(error_of([&] { GgufPlan(c, opt); }), HasSubstr("unknown GGUF type 'Q4_K_X'"));
}

TEST(GgufModel, PlanFallsBackWhenRowsDoNotFillBlocks) {
  ModelConfig c = test::tiny_config(64, 172, 5, 8, 4, 512, 512);  // stories260K's shapes
  GgufExportOptions opt;
  opt.type = "Q4_K";
  const GgufPlan k4(c, opt);
  EXPECT_EQ(k4.linear(0, Linear::Q), GgmlType::Q5_0);    // 64 = 2 x 32
  EXPECT_EQ(k4.linear(0, Linear::Down), GgmlType::F16);  // 172: not even 32
  EXPECT_EQ(k4.output(), GgmlType::Q8_0);                // tied classifier, 64 % 256 != 0
  EXPECT_THAT(k4.note(0, Linear::Q), HasSubstr("using Q5_0"));
  EXPECT_THAT(k4.note(0, Linear::Down), HasSubstr("using F16"));
  EXPECT_EQ(k4.notes().size(), 5u * 7u);  // the classifier's rule picks Q8_0 itself
  opt.type = "Q3_K";
  EXPECT_EQ(GgufPlan(c, opt).linear(2, Linear::Up), GgmlType::Q4_0);
  opt.type = "Q6_K";
  EXPECT_EQ(GgufPlan(c, opt).linear(2, Linear::Up), GgmlType::Q8_0);
  opt.type = "IQ4_XS";  // llama.cpp: IQ4_XS -> IQ4_NL
  const GgufPlan xs(c, opt);
  EXPECT_EQ(xs.linear(2, Linear::Up), GgmlType::IQ4_NL);
  EXPECT_EQ(xs.linear(2, Linear::Down), GgmlType::F16);
  EXPECT_THAT(xs.note(2, Linear::Up), HasSubstr("using IQ4_NL"));
  EXPECT_EQ(xs.output(), GgmlType::Q8_0);
  opt.type = "Q4_0";
  const GgufPlan q40(c, opt);
  EXPECT_EQ(q40.linear(2, Linear::Up), GgmlType::Q4_0);
  EXPECT_EQ(q40.linear(2, Linear::Down), GgmlType::F16);
  EXPECT_EQ(q40.output(), GgmlType::Q8_0);  // Q6_K would not fit 64 either
}

// ---- quantized files ---------------------------------------------------------------------

struct Solved {
  std::map<std::pair<int, int>, Matrix> q;       // (layer, linear) -> solver's dequantized Q
  std::map<std::pair<int, int>, Matrix> grid_q;  // dequantize(grid, codes)
};

Solved quantize_to_gguf(const std::string& source, const std::string& out,
                        const TokenizerVocab& vocab, const std::vector<std::vector<int>>& windows,
                        Method method, const std::string& type, bool importance = true) {
  auto reader = open_model(source);
  GgufExportOptions opt;
  opt.type = type;
  opt.importance = importance;
  GgufModelWriter writer(*reader, out, vocab, opt);
  QuantizeOptions qo;
  qo.method = method;
  qo.choose_grid = writer.grid_chooser();
  Solved s;
  quantize_model(*reader, windows, qo,
                 [&](int layer, BlockWeights& b, std::vector<LinearResult>& linears) {
                   for (const LinearResult& r : linears) {
                     s.q[{layer, static_cast<int>(r.linear)}] = b.linear(r.linear);
                     s.grid_q[{layer, static_cast<int>(r.linear)}] = dequantize(r.grid, r.codes);
                   }
                   writer.write_block(layer, b, linears);
                 });
  writer.finish();
  return s;
}

std::vector<int> stories_stream(const std::string& file, size_t chars) {
  const auto tok = load_tokenizer(stories_tokenizer_path());
  return tok->encode(read_file(file).substr(0, chars), false);
}

std::vector<std::vector<int>> stories_calibration() {
  const auto stream = stories_stream(calib_text(), 40000);
  return sample_calibration_windows(stream, 8, 128, 11, true, 1);
}

TEST(GgufModel, QuantizedFilesDecodeToTheSolversWeights) {
  test::TempDir dir;
  const auto vocab = load_tokenizer(stories_tokenizer_path())->vocab();
  const auto windows = stories_calibration();
  const Model original = load_model(test::stories260k_path());
  const std::pair<const char*, Method> runs[] = {
      {"Q8_0", parse_method("rtn")},   {"Q8_0", parse_method("cd")}, {"Q4_0", parse_method("gptq")},
      {"Q4_0", parse_method("cd")},    {"Q4_K", parse_method("cd")}, {"IQ4_NL", parse_method("cd")},
      {"IQ4_XS", parse_method("gptq")}};
  for (const auto& [type, m] : runs) {
    {
      SCOPED_TRACE(std::string(type) + " " + std::string(m.name()));
      const std::string path = dir.file(std::string(type) + std::string(m.name()) + ".gguf");
      const Solved s = quantize_to_gguf(test::stories260k_path(), path, vocab, windows, m, type);
      const Model back = load_model(path);
      const GgufReader r(path);
      for (int l = 0; l < 5; ++l) {
        for (Linear lin : kAllLinears) {
          const std::pair<int, int> k{l, static_cast<int>(lin)};
          const Matrix& got = back.blocks[static_cast<size_t>(l)].linear(lin);
          expect_same_matrix(got, s.q.at(k), gguf_linear_name(l, lin));
          expect_same_matrix(got, s.grid_q.at(k), gguf_linear_name(l, lin) + " (grid)");
        }
      }
      // ffn_down (172 inputs) falls back to F16: the rounded weights, not something coarser.
      EXPECT_EQ(r.tensor("blk.0.ffn_down.weight").type, GgmlType::F16);
      const Matrix& down = back.blocks[0].w_down;
      for (size_t i = 0; i < down.data.size(); ++i)
        ASSERT_EQ(down.data[i], fp16_to_float(float_to_fp16(original.blocks[0].w_down.data[i])));
      const std::string t(type);
      EXPECT_EQ(r.tensor("blk.0.attn_q.weight").type, t == "Q4_K"     ? GgmlType::Q5_0
                                                      : t == "IQ4_XS" ? GgmlType::IQ4_NL
                                                                      : parse_ggml_type(type));
      EXPECT_EQ(r.get("general.quantization_version").get<uint32_t>(), 2u);
      expect_same_matrix(
          back.tok_embeddings,
          dequantize_tensor(GgmlType::Q8_0,
                            quantize_reference(GgmlType::Q8_0, original.tok_embeddings), 512, 64),
          "token_embd (tied classifier: Q8_0)");
    }
  }
}

struct Scores {
  double ppl = 0.0, kl = 0.0;
};

Scores score(const Model& reference, const std::string& path, const std::vector<int>& stream,
             int ctx) {
  const Model q = load_model(path);
  EvalOptions eo;
  eo.ctx = ctx;
  eo.max_windows = 6;
  eo.bos_id = 1;
  const EvalResult r = evaluate(reference, stream, eo, &q);
  return {r.ppl_other, r.kl};
}

// Stories drawn from the float model at temperature 1, each after its BOS, as the model saw
// TinyStories in training: text from the model's own domain, which no shared text is.
std::vector<int> sampled_stories(const Model& model, int n, uint64_t seed) {
  Decoder decoder(model);
  SampleOptions o;
  o.max_tokens = 511;
  o.stop_ids = {1, 2};
  Rng rng(seed);
  const std::vector<int> bos = {1};
  std::vector<int> stream;
  for (int i = 0; i < n; ++i) {
    stream.push_back(1);
    const auto story = generate(decoder, bos, o, rng);
    stream.insert(stream.end(), story.begin(), story.end());
  }
  return stream;
}

// The criterion: in the model's own domain, CD-coded files of each type are no worse
// than RTN-coded files of the same type (same bytes) in perplexity and in KL divergence, for
// both RTN flavours (ggml's plain block scales, and the imatrix-style diag(H)-weighted ones
// that GPTQ and CD start from). Evaluation: at least 48 windows of 256 tokens (12k predictions).
// Perplexity is compared through the mean per-window NLL difference d (log of the perplexity
// ratio) and its standard error se: at 4 bits CD must be better beyond noise (d < -2 se); at
// Q8_0, where every file is within 0.1% of the float model's perplexity, no worse beyond
// noise (d < 2 se). KL must be lower outright.
TEST(GgufModel, CdCodesBeatRtnCodesOnStories) {
  test::TempDir dir;
  const auto vocab = load_tokenizer(stories_tokenizer_path())->vocab();
  const Model original = load_model(test::stories260k_path());
  const auto calib =
      sample_calibration_windows(sampled_stories(original, 12, 1), 16, 128, 11, false, 1);
  const auto test_stream = sampled_stories(original, 36, 2);
  EvalOptions eo;  // windows of 256 tokens from the stream, which carries its own BOS tokens
  eo.ctx = 256;
  eo.prepend_bos = false;
  for (const char* type : {"Q8_0", "Q4_0", "Q4_K"}) {
    SCOPED_TRACE(type);
    std::map<std::string, EvalResult> w;
    for (const auto& [name, method, importance] : {std::tuple{"plain", parse_method("rtn"), false},
                                                   std::tuple{"rtn", parse_method("rtn"), true},
                                                   std::tuple{"cd", parse_method("cd"), true}}) {
      const std::string path = dir.file(fmt::format("{}-{}.gguf", type, name));
      quantize_to_gguf(test::stories260k_path(), path, vocab, calib, method, type, importance);
      const Model q = load_model(path);
      w[name] = evaluate(original, test_stream, eo, &q);
    }
    ASSERT_GE(w["cd"].windows, 48);
    const double bound = std::string(type) == "Q8_0" ? 2.0 : -2.0;
    for (const char* other : {"plain", "rtn"}) {
      const EvalResult &c = w["cd"], &o = w[other];
      const double d = c.nll_other - o.nll_other, dkl = c.kl - o.kl;
      const double se = paired_standard_error(c.window_nll_other, o.window_nll_other);
      const double se_kl = paired_standard_error(c.window_kl, o.window_kl);
      std::printf("%s cd - rtn %s: ln ppl ratio %+.5f +- %.5f, KL %+.6f +- %.6f\n", type, other, d,
                  se, dkl, se_kl);
      EXPECT_LT(d, bound * se) << "vs rtn " << other;
      EXPECT_LT(dkl, 0.0) << "vs rtn " << other;
    }
  }
  // stories260K's 64-wide rows never fill a K-quant super-block: Q3_K falls back to Q4_0 for
  // every tensor, so its file holds the Q4_0 file's tensors byte for byte and scores the same.
  const std::string q3 = dir.file("Q3_K-cd.gguf");
  quantize_to_gguf(test::stories260k_path(), q3, vocab, calib, parse_method("cd"), "Q3_K");
  const GgufReader r3(q3), r4(dir.file("Q4_0-cd.gguf"));
  ASSERT_EQ(r3.tensors().size(), r4.tensors().size());
  for (size_t i = 0; i < r3.tensors().size(); ++i) {
    EXPECT_EQ(r3.tensors()[i].type, r4.tensors()[i].type) << r3.tensors()[i].name;
    const auto a = r3.tensor_bytes(r3.tensors()[i]), b = r4.tensor_bytes(r4.tensors()[i]);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << r3.tensors()[i].name;
  }
}

TEST(GgufModel, KQuantsAndIq4ApplyAndCdBeatsRtnOnARandomModel) {
  test::TempDir dir;
  const ModelConfig c = test::tiny_config(256, 256, 2, 4, 2, 64, 64);
  const Model model = test::random_model(c, 21);
  const std::string src = dir.file("f32.gguf");
  GgufExportOptions f32;
  f32.type = "F32";
  const auto vocab = letter_vocab(64);
  write_gguf_model(model, vocab, src, f32);
  std::vector<std::vector<int>> windows;
  for (int w = 0; w < 8; ++w) {
    auto t = some_tokens(64, 64, 100 + static_cast<uint64_t>(w));
    t[0] = 1;
    windows.push_back(t);
  }
  const std::vector<int> stream = some_tokens(64, 6 * 64, 999);
  for (const char* type : {"Q4_K", "Q3_K", "Q2_K", "Q6_K", "Q5_K", "IQ4_XS", "IQ4_NL"}) {
    SCOPED_TRACE(type);
    const std::string rtn = dir.file("rtn.gguf"), cd = dir.file("cd.gguf");
    const Solved s = quantize_to_gguf(src, cd, vocab, windows, parse_method("cd"), type);
    const GgufReader r(cd);
    EXPECT_EQ(r.tensor("blk.1.ffn_down.weight").type, parse_ggml_type(type));  // no fallback
    EXPECT_EQ(r.tensor("blk.0.attn_q.weight").type, parse_ggml_type(type));
    const Model back = load_model(cd);
    for (int l = 0; l < c.n_layers; ++l)
      for (Linear lin : kAllLinears)
        expect_same_matrix(back.blocks[static_cast<size_t>(l)].linear(lin),
                           s.grid_q.at({l, static_cast<int>(lin)}), gguf_linear_name(l, lin));
    if (std::string(type) == "Q4_K" || std::string(type) == "Q3_K" ||
        std::string(type).starts_with("IQ4")) {
      quantize_to_gguf(src, rtn, vocab, windows, parse_method("rtn"), type);
      EXPECT_LT(score(model, cd, stream, 64).kl, score(model, rtn, stream, 64).kl);
    }
  }
}

// ---- model-level errors ------------------------------------------------------------------

// Copies a GGUF file, letting `edit_kv` drop (return false) or change metadata and
// `edit_tensor` change a tensor's dims (data is copied as far as it fits).
void rewrite(const std::string& src, const std::string& dst,
             const std::function<bool(std::string&, GgufValue&)>& edit_kv,
             const std::function<void(GgufTensorInfo&)>& edit_tensor = {}) {
  const GgufReader r(src);
  GgufWriter w(dst);
  for (auto [k, v] : r.metadata())
    if (edit_kv(k, v)) w.set(k, v);
  std::vector<GgufTensorInfo> infos = r.tensors();
  for (GgufTensorInfo& t : infos) {
    if (edit_tensor) edit_tensor(t);
    w.add_tensor(t.name, t.dims, t.type);
  }
  w.write_header();
  for (size_t i = 0; i < infos.size(); ++i) {
    const auto bytes = r.tensor_bytes(r.tensors()[i]);
    std::vector<uint8_t> data(infos[i].n_bytes(), 0);
    std::copy_n(bytes.begin(), std::min(bytes.size(), data.size()), data.begin());
    w.write_tensor(infos[i].name, data);
  }
  w.finish();
}

TEST(GgufModel, BadModelFilesAreRejectedClearly) {
  test::TempDir dir;
  const ModelConfig c = test::tiny_config(32, 64, 2, 4, 2, 40, 16);
  const std::string good = dir.file("good.gguf");
  GgufExportOptions opt;
  opt.type = "Q8_0";
  write_gguf_model(test::random_model(c, 1), letter_vocab(40), good, opt);
  ASSERT_NO_THROW(load_model(good));

  const std::string bad = dir.file("bad.gguf");
  rewrite(good, bad, [](std::string& k, GgufValue& v) {
    if (k == "general.architecture") v = GgufValue::string("gpt2");
    return true;
  });
  EXPECT_THAT(error_of([&] { open_model(bad); }),
              HasSubstr("architecture 'gpt2' is not supported"));

  rewrite(good, bad, [](std::string& k, GgufValue&) { return k != "llama.block_count"; });
  EXPECT_THAT(error_of([&] { open_model(bad); }), HasSubstr("'llama.block_count' is missing"));

  rewrite(good, bad, [](std::string& k, GgufValue&) { return k != "general.architecture"; });
  EXPECT_THAT(error_of([&] { open_model(bad); }), HasSubstr("not a GGUF model"));

  rewrite(good, bad, [](std::string& k, GgufValue&) { return k != "tokenizer.ggml.model"; });
  EXPECT_THAT(error_of([&] { load_model_tokenizer(bad); }), HasSubstr("no tokenizer"));

  rewrite(
      good, bad, [](std::string&, GgufValue&) { return true; },
      [](GgufTensorInfo& t) {
        if (t.name == "blk.1.ffn_up.weight") t.dims = {64, 64};
      });
  auto reader = open_model(bad);
  EXPECT_NO_THROW(reader->read_block(0));
  EXPECT_THAT(
      error_of([&] { reader->read_block(1); }),
      HasSubstr("'blk.1.ffn_up.weight' has shape [64, 64] but the config implies [32, 64]"));

  rewrite(good, bad, [](std::string& k, GgufValue& v) {
    if (k == "llama.attention.head_count_kv") v = GgufValue::scalar<uint32_t>(3);
    return true;
  });
  const std::string msg = error_of([&] { open_model(bad); });
  EXPECT_THAT(msg, HasSubstr(bad));
  EXPECT_THAT(msg, HasSubstr("not a multiple of n_kv_heads 3"));
}

TEST(GgufModel, CliQuantizesToGgufAndEvalReadsIt) {
  test::TempDir dir;
  const std::string out = dir.file("s.gguf");
  const auto q =
      test::run_cli({"quantize", "--model", test::stories260k_path(), "--calib", calib_text(),
                     "--out", out, "--format", "gguf", "--type", "Q4_K", "--method", "cd",
                     "--nsamples", "4", "--seqlen", "64", "--override", "ffn_up=Q8_0"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_THAT(q.err, HasSubstr("using Q5_0"));
  const GgufReader r(out);
  EXPECT_EQ(r.tensor("blk.2.ffn_up.weight").type, GgmlType::Q8_0);
  EXPECT_EQ(r.tensor("blk.2.ffn_gate.weight").type, GgmlType::Q5_0);
  EXPECT_EQ(r.get("general.file_type").get<uint32_t>(), 15u);  // llama.cpp's name: Q4_K - Medium
  // eval reads the GGUF (its tokenizer from the file) and compares it with the original.
  const auto e = test::run_cli({"eval", "--model", out, "--text", eval_text(), "--ctx", "64",
                                "--max-windows", "2", "--quiet"});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_THAT(e.out, HasSubstr("ppl"));
  const auto k =
      test::run_cli({"eval", "--model", test::stories260k_path(), "--quantized", out, "--text",
                     eval_text(), "--ctx", "64", "--max-windows", "2", "--quiet"});
  ASSERT_EQ(k.exit_code, 0) << k.err;
  EXPECT_THAT(k.out, HasSubstr("KL"));
}

// Defect 6: block_count 2^30 made load_model reserve 400 GB of blocks before any tensor was
// checked (std::bad_alloc); the count is checked against the tensors the file holds.
TEST(GgufModel, BlockCountBeyondTheTensorsIsRefusedAtOpen) {
  test::TempDir dir;
  const ModelConfig c = test::tiny_config(32, 64, 2, 4, 2, 40, 16);
  const std::string good = dir.file("good.gguf");
  GgufExportOptions opt;
  opt.type = "F32";
  write_gguf_model(test::random_model(c, 1), letter_vocab(40), good, opt);
  const std::string bad = dir.file("blocks.gguf");
  rewrite(good, bad, [](std::string& k, GgufValue& v) {
    if (k == "llama.block_count") v = GgufValue::scalar<uint32_t>(1u << 30);
    return true;
  });
  EXPECT_THAT(error_of([&] { load_model(bad); }),
              HasSubstr("llama.block_count is 1073741824 but the file holds 20 tensors and no "
                        "blk.1073741823.attn_norm.weight"));
  rewrite(good, bad, [](std::string& k, GgufValue& v) {
    if (k == "llama.block_count") v = GgufValue::scalar<uint32_t>(3);
    return true;
  });
  EXPECT_THAT(error_of([&] { open_model(bad); }), HasSubstr("block_count is 3"));
  // Token ids must lie in the vocabulary (they index the embedding).
  rewrite(good, bad, [](std::string& k, GgufValue& v) {
    if (k == "tokenizer.ggml.bos_token_id") v = GgufValue::scalar<uint32_t>(4000000000u);
    return true;
  });
  EXPECT_THAT(error_of([&] { open_model(bad); }),
              HasSubstr("tokenizer.ggml.bos_token_id = 4000000000 is outside the vocabulary"));
}

// Defect 6: context_length 16M made generate allocate 6.3 GB of KV cache up front; the cache
// now grows with prompt + max_tokens.
TEST(GgufModel, GenerateWithAHugeClaimedContextAllocatesOnlyWhatItUses) {
  test::TempDir dir;
  const ModelConfig c = test::tiny_config(32, 64, 2, 4, 2, 40, 16);
  const std::string good = dir.file("good.gguf");
  GgufExportOptions opt;
  opt.type = "F32";
  write_gguf_model(test::random_model(c, 1), letter_vocab(40), good, opt);
  const std::string big = dir.file("context.gguf");
  rewrite(good, big, [](std::string& k, GgufValue& v) {
    if (k == "llama.context_length") v = GgufValue::scalar<uint32_t>(1u << 30);
    return true;
  });
  const auto g = test::run_cli({"generate", "--model", big, "--max-tokens", "8", "--seed", "1"});
  EXPECT_EQ(g.exit_code, 0) << g.err;
  EXPECT_THAT(g.err, Not(HasSubstr("bad_alloc")));
}

// Defect 10: a NaN or Inf in the embedding or the final norm passed through quantize, eval and
// generate; every tensor is now checked finite at load, naming the tensor and the file.
TEST(GgufModel, NonFiniteTensorsAreRefusedAtLoadByName) {
  test::TempDir dir;
  const ModelConfig c = test::tiny_config(32, 64, 2, 4, 2, 40, 16);
  const Model m = test::random_model(c, 1);
  GgufExportOptions opt;
  opt.type = "F32";
  struct Case {
    const char* file;
    std::function<void(Model&)> poison;
    const char* tensor;
  };
  const Case cases[] = {
      {"emb.gguf", [](Model& x) { x.tok_embeddings(3, 5) = std::nanf(""); },
       "tensor tok_embeddings has a non-finite value (nan at [3, 5])"},
      {"norm.gguf", [](Model& x) { x.final_norm[7] = INFINITY; },
       "tensor final_norm has a non-finite value (inf at [7])"},
      {"ffn.gguf", [](Model& x) { x.blocks[1].ffn_norm[0] = -INFINITY; },
       "tensor blocks.1.ffn_norm has a non-finite value (-inf at [0])"},
      {"wv.gguf", [](Model& x) { x.blocks[0].wv(1, 2) = std::nanf(""); },
       "tensor blocks.0.wv has a non-finite value (nan at [1, 2])"},
  };
  for (const Case& k : cases) {
    Model bad = m;
    k.poison(bad);
    const std::string path = dir.file(k.file);
    write_gguf_model(bad, letter_vocab(40), path, opt);
    const std::string err = error_of([&] { load_model(path); });
    EXPECT_THAT(err, HasSubstr(path + ": " + k.tensor)) << k.file;
    const auto e = test::run_cli({"eval", "--model", path, "--text", eval_text(), "--ctx", "16",
                                  "--max-windows", "1", "--quiet"});
    EXPECT_EQ(e.exit_code, 1) << k.file;
    EXPECT_THAT(e.err, HasSubstr(k.tensor)) << k.file;
  }
}

}  // namespace
}  // namespace cdq
