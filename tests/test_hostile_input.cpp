// Small hostile files must be refused with cdquant's own error, quickly and without allocating
// what they claim: deep JSON nesting, vocabularies of holes, huge or non-integer token ids,
// GGUF byte counts that wrap, oversized safetensors shapes and metadata, a KV cache sized by
// a claimed context. Each test reproduces a defect found by fuzzing or by hand (issue 14).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cdquant/calibration.hpp>
#include <cdquant/decoder.hpp>
#include <cdquant/error.hpp>
#include <cdquant/eval.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/safetensors.hpp>
#include <cdquant/tokenizer.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "io/tokenizer_hf.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/hf_model.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using test::error_of;
using ::testing::HasSubstr;
using ::testing::Not;

// ---------------------------------------------------------------------------------------------
// HF tokenizer.json

// A minimal byte-level tokenizer.json around a normalizer and a vocabulary.
std::string hf_json(const std::string& normalizer, const std::string& vocab = R"({"a": 0})") {
  return R"({"normalizer": )" + normalizer +
         R"(, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
             "model": {"type": "BPE", "vocab": )" +
         vocab + R"(, "merges": []}})";
}

std::string nested_sequence(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += R"({"type": "Sequence", "normalizers": [)";
  s += R"({"type": "NFC"})";
  for (int i = 0; i < depth; ++i) s += "]}";
  return s;
}

std::string parse_error(const std::string& json) {
  return error_of([&] { tok::parse_hf_tokenizer(json, "", "tokenizer.json"); });
}

// Defect 1: 40,000 nested Sequences (1.4 MB) overflowed the stack (SIGSEGV) in the recursive
// flattening; now the document's nesting is bounded before anything recurses.
TEST(HostileTokenizerJson, DeeplyNestedNormalizerIsAnErrorNotACrash) {
  const std::string err = parse_error(hf_json(nested_sequence(40000)));
  EXPECT_THAT(err, HasSubstr("tokenizer.json: JSON nested deeper than 64 levels"));
  // Below the document limit, a Sequence of Sequences is still bounded on its own.
  EXPECT_THAT(parse_error(hf_json(nested_sequence(20))),
              HasSubstr("'normalizers' Sequence nested deeper than 8 levels"));
  // Real files nest a level or two: accepted.
  EXPECT_EQ(parse_error(hf_json(nested_sequence(2))), "(no error)");
}

// Defect 6: a 111-byte file with one token at id 16,777,215 made a 16.7M-entry vocabulary of
// placeholders (3 GB, a minute) before failing.
TEST(HostileTokenizerJson, VocabularyOfHolesIsRefusedBeforeItIsBuilt) {
  const std::string err = parse_error(hf_json("null", R"({"a": 16777215})"));
  EXPECT_THAT(err, HasSubstr("token ids reach 16777215 but only 1 tokens are defined"));
  // Dense ids with a few holes are fine.
  EXPECT_EQ(parse_error(hf_json("null", R"({"a": 0, "b": 1, "c": 5})")), "(no error)");
}

// Defect 11: id.get<int>() on 2e67 was a float-to-int conversion out of range (UB) and ids of
// 2^32 and above wrapped (4294967297 became 1).
TEST(HostileTokenizerJson, TokenIdsMustBeIntegersInRange) {
  EXPECT_THAT(parse_error(hf_json("null", R"({"a": 2e67})")),
              HasSubstr("token 'a' has id 2e+67, not an integer"));
  EXPECT_THAT(parse_error(hf_json("null", R"({"a": 0, "b": 4294967297})")),
              HasSubstr("token 'b' has id 4294967297 out of range"));
  EXPECT_THAT(parse_error(hf_json("null", R"({"a": -1})")),
              HasSubstr("token 'a' has id -1 out of range"));
  const std::string added = R"({"normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel"},
      "added_tokens": [{"id": 18446744073709551615, "content": "<x>"}],
      "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})";
  EXPECT_THAT(parse_error(added),
              HasSubstr("token '<x>' has id 18446744073709551615 out of range"));
}

// ---------------------------------------------------------------------------------------------
// GGUF

template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// A GGUF v3 file with no metadata and one 1-D tensor "t" of dims[0] = d0 and type F32,
// followed by `data_bytes` bytes of data.
std::string one_tensor_gguf(uint64_t d0, size_t data_bytes) {
  std::string s;
  put<uint32_t>(s, 0x46554747);  // "GGUF"
  put<uint32_t>(s, 3);
  put<uint64_t>(s, 1);  // tensors
  put<uint64_t>(s, 0);  // metadata
  put<uint64_t>(s, 1);
  s += "t";
  put<uint32_t>(s, 1);  // n_dims
  put<uint64_t>(s, d0);
  put<uint32_t>(s, 0);  // F32
  put<uint64_t>(s, 0);  // offset
  s.resize((s.size() + 31) / 32 * 32, '\0');
  s.append(data_bytes, '\0');
  return s;
}

// Defect 7: 4 * (2^62 + 8) wrapped to 32 bytes, the reader accepted the tensor, and reading it
// threw std::length_error instead of cdquant's error.
TEST(HostileGguf, TensorByteCountThatWrapsIsRejected) {
  test::TempDir dir;
  const std::string ok = dir.write("ok.gguf", one_tensor_gguf(8, 32));
  EXPECT_EQ(GgufReader(ok).tensors().at(0).n_bytes(), 32u);
  const std::string bad = dir.write("wrap.gguf", one_tensor_gguf((uint64_t{1} << 62) + 8, 32));
  const std::string err = error_of([&] { GgufReader r(bad); });
  EXPECT_THAT(err, HasSubstr("wrap.gguf: invalid GGUF file: tensor 't' byte count overflows"));
  // Byte counts computed elsewhere are checked as well.
  GgufTensorInfo t;
  t.name = "t";
  t.dims = {uint64_t{1} << 62, 8};
  EXPECT_THAT(error_of([&] { (void)t.n_bytes(); }), HasSubstr("takes more than 2^64 bytes"));
}

// ---------------------------------------------------------------------------------------------
// safetensors

std::string safetensors_file(const std::string& header, const std::string& data) {
  std::string out;
  put<uint64_t>(out, header.size());
  return out + header + data;
}

std::string open_error(const std::string& path) {
  return error_of([&] { SafetensorsFile f(path); });
}

// Defect 6: a 90 MB header with a 45M-entry shape (or 7.5M metadata keys) took 2 GB to parse.
// The structure is bounded before parsing; these smaller versions show the limits.
TEST(HostileSafetensors, OversizedShapesAndMetadataAreRefusedBeforeParsing) {
  test::TempDir dir;
  std::string shape = "1";
  for (int i = 1; i < 100000; ++i) shape += ",1";
  const std::string long_shape = dir.write(
      "shape.safetensors",
      safetensors_file(R"({"w":{"dtype":"F32","shape":[)" + shape + R"(],"data_offsets":[0,4]}})",
                       std::string(4, '\0')));
  EXPECT_THAT(open_error(long_shape),
              HasSubstr("shape.safetensors: safetensors header: a JSON object or array at nesting "
                        "level 3 has more than 16 elements"));

  std::string meta = R"({"__metadata__":{)";
  for (int i = 0; i < 70000; ++i) meta += fmt::format(R"({}"k{}":"v")", i ? "," : "", i);
  meta += "}}";
  const std::string many_keys = dir.write("meta.safetensors", safetensors_file(meta, ""));
  EXPECT_THAT(open_error(many_keys), HasSubstr("level 2 has more than 65536 elements"));

  const std::string deep =
      dir.write("deep.safetensors", safetensors_file(R"({"__metadata__":{"k":[[["x"]]]}})", ""));
  EXPECT_THAT(open_error(deep), HasSubstr("JSON nested deeper than 3 levels"));

  // A 16-dimensional tensor is still fine.
  std::string dims16 = "1";
  for (int i = 1; i < 16; ++i) dims16 += ",1";
  const std::string ok = dir.write(
      "ok.safetensors",
      safetensors_file(R"({"w":{"dtype":"F32","shape":[)" + dims16 + R"(],"data_offsets":[0,4]}})",
                       std::string(4, '\0')));
  EXPECT_EQ(SafetensorsFile(ok).read_floats("w").size(), 1u);
}

// Defect 11: a 0-element F32 tensor was converted with memcpy(nullptr, src, 0), which is UB
// (UBSan reports it; the suite hit it).
TEST(HostileSafetensors, ZeroElementTensorsReadAsEmpty) {
  test::TempDir dir;
  const std::string path = dir.write(
      "empty.safetensors",
      safetensors_file(R"({"e":{"dtype":"F32","shape":[0, 4],"data_offsets":[0,0]}})", ""));
  const SafetensorsFile f(path);
  EXPECT_TRUE(f.read_floats("e").empty());
  const Matrix m = f.read_matrix("e");
  EXPECT_EQ(m.rows, 0);
  EXPECT_EQ(m.cols, 4);
}

// ---------------------------------------------------------------------------------------------
// KV cache

// Defect 6: generate's Decoder allocated max_seq_len rows of KV cache up front, so a GGUF
// claiming a context of 16M tokens made it allocate 6.3 GB (2^30: std::bad_alloc). The cache
// now grows with the positions used, and decoding across a growth matches the full forward.
TEST(HostileContextLength, KvCacheGrowsWithUseNotWithTheClaimedContext) {
  const ModelConfig c = test::tiny_config(16, 24, 2, 4, 2, 40, 1 << 30);
  const Model m = test::random_model(c, 3);
  Decoder d(m);
  EXPECT_EQ(d.cache_capacity(), 0);
  const std::vector<int> tokens = test::random_tokens(70, c.vocab_size, 4);
  std::span<const float> last;
  for (int i = 0; i < 5; ++i) last = d.step(tokens[static_cast<size_t>(i)]);
  EXPECT_LE(d.cache_capacity(), 64);
  for (size_t i = 5; i < tokens.size(); ++i) last = d.step(tokens[i]);
  EXPECT_GE(d.cache_capacity(), 70);
  EXPECT_LE(d.cache_capacity(), 128);
  const Matrix full = forward_logits(m, tokens);
  ASSERT_EQ(static_cast<int64_t>(last.size()), full.cols);
  for (int64_t j = 0; j < full.cols; ++j)
    EXPECT_NEAR(last[static_cast<size_t>(j)], full(full.rows - 1, j), 1e-4f) << j;
}

// Defect 10: finite weights can still overflow in the forward pass; eval printed "ppl nan"
// with exit 0. Now it refuses to report a non-finite log-likelihood.
TEST(HostileWeights, EvalRefusesANonFiniteLogLikelihood) {
  const ModelConfig c = test::tiny_config(16, 24, 2, 4, 2, 40, 32);
  Model m = test::random_model(c, 5);
  const std::vector<int> tokens = test::random_tokens(64, c.vocab_size, 6);
  EvalOptions opt;
  opt.ctx = 32;
  EXPECT_TRUE(std::isfinite(evaluate(m, tokens, opt).ppl));
  // Finite weights whose FFN inputs overflow to +-Inf (and silu(-Inf) = NaN).
  for (BlockWeights& b : m.blocks) std::fill(b.ffn_norm.begin(), b.ffn_norm.end(), 3e38f);
  EXPECT_THAT(error_of([&] { evaluate(m, tokens, opt); }),
              HasSubstr("eval: the model's log-likelihood is"));
}

// ---------------------------------------------------------------------------------------------
// Calibration text

std::vector<std::vector<int>> windows_of(const Tokenizer& tok, const std::string& text) {
  return sample_calibration_text(text, tok, 16, 64, 1, true, tok.bos_id);
}

// Defect 13: a calibration text of one repeated character, of NUL bytes or of random bytes was
// accepted silently (KL 0.34 vs 0.21 on real text); the job now warns with what it measured.
TEST(DegenerateCalibrationText, IsMeasuredAndWarnedAbout) {
  const auto tok = load_tokenizer(test::shared_dir() + "/models/tok512.bin");
  const std::string real =
      test::read_file(test::shared_dir() + "/data/frankenstein.txt").substr(0, 200000);
  const CalibrationTextStats good = measure_calibration_text(real, windows_of(*tok, real));
  EXPECT_GT(good.distinct, 100u);  // of 1024 tokens
  EXPECT_GT(good.entropy_bits, 6.0);
  EXPECT_EQ(good.non_text_fraction, 0.0);
  EXPECT_EQ(degenerate_calibration_warning(good), "");

  const std::string repeated(100000, 'a');
  const CalibrationTextStats rep = measure_calibration_text(repeated, windows_of(*tok, repeated));
  EXPECT_LT(rep.distinct, 10u);
  EXPECT_LT(rep.entropy_bits, 2.0);
  const std::string w = degenerate_calibration_warning(rep);
  EXPECT_THAT(w, HasSubstr(fmt::format("{} distinct tokens", rep.distinct)));
  EXPECT_THAT(w, HasSubstr(fmt::format("entropy {:.2f} bits", rep.entropy_bits)));

  const std::string nul(100000, '\0');
  const CalibrationTextStats z = measure_calibration_text(nul, windows_of(*tok, nul));
  EXPECT_EQ(z.non_text_fraction, 1.0);
  EXPECT_THAT(degenerate_calibration_warning(z), HasSubstr("100.0% of its bytes"));

  std::string random(100000, '\0');
  uint64_t x = 88172645463325252ull;
  for (char& ch : random) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    ch = static_cast<char>(x & 0xFF);
  }
  const CalibrationTextStats r = measure_calibration_text(random, windows_of(*tok, random));
  EXPECT_GT(r.non_text_fraction, 0.3);
  EXPECT_NE(degenerate_calibration_warning(r), "");
}

// ---------------------------------------------------------------------------------------------
// HF config.json

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  const std::string path = dir + "/config.json";
  nlohmann::json j = nlohmann::json::parse(test::read_file(path));
  edit(j);
  std::ofstream(path) << j.dump();
}

// Defect 6 (HF): num_hidden_layers is checked against the tensors before anything is sized by
// it; defect 11: bos/eos ids beyond int wrapped.
TEST(HostileHfConfig, LayerCountAndTokenIdsAreChecked) {
  test::TempDir dir;
  const Model m = test::random_model(test::tiny_config(), 2);
  const std::string d = dir.file("hf");
  test::write_hf_model(m, d);
  ASSERT_NO_THROW(load_model(d));
  edit_config(d, [](nlohmann::json& j) { j["num_hidden_layers"] = 1 << 30; });
  EXPECT_THAT(error_of([&] { load_model(d); }),
              HasSubstr("num_hidden_layers is 1073741824 but the checkpoint holds"));
  edit_config(d, [](nlohmann::json& j) {
    j["num_hidden_layers"] = 2;
    j["bos_token_id"] = 4294967297ull;
  });
  EXPECT_THAT(error_of([&] { load_model(d); }),
              HasSubstr("config.json bos_token_id 4294967297 is outside the vocabulary [0, 40)"));
  edit_config(d, [](nlohmann::json& j) { j["bos_token_id"] = 1; });
  EXPECT_NO_THROW(load_model(d));
}

// ---------------------------------------------------------------------------------------------
// CLI messages (defect 13)

TEST(CliMessages, RangeErrorsAreShortAndSeedsAreNotWrapped) {
  const auto q = test::run_cli({"quantize", "--model", test::stories260k_path(), "--out",
                                "/nonexistent/x.bin", "--nsamples", "-5"});
  EXPECT_NE(q.exit_code, 0);
  EXPECT_THAT(q.err, HasSubstr("must be a positive number, got -5"));
  EXPECT_LT(q.err.size(), 200u) << q.err;  // CLI11's own message printed DBL_MAX in 309 digits
  for (const char* cmd : {"generate", "quantize"}) {
    const auto g = test::run_cli(
        {cmd, "--model", test::stories260k_path(), "--out", "/nonexistent/x.bin", "--seed", "-1"});
    EXPECT_NE(g.exit_code, 0) << cmd;
    EXPECT_THAT(g.err, HasSubstr("must be an integer from 0 to 18446744073709551615, got -1"))
        << cmd;
  }
  const auto ok = test::run_cli({"generate", "--model", test::stories260k_path(), "--seed",
                                 "18446744073709551615", "--max-tokens", "4"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

// A calibration set too large for the machine is refused before any work, saying what was
// too large (it was a bare "error: std::bad_alloc").
TEST(CliMessages, OversizedCalibrationSaysWhatWasTooLarge) {
  const auto q = test::run_cli({"quantize", "--model", test::stories260k_path(), "--calib",
                                test::shared_dir() + "/data/frankenstein.txt", "--out",
                                "/tmp/cdq-never-written.bin", "--method", "gptq", "--nsamples",
                                "2000000000", "--seqlen", "256"});
  EXPECT_EQ(q.exit_code, 1);
  EXPECT_THAT(q.err, HasSubstr("--nsamples 2000000000 x --seqlen 256"));
  EXPECT_THAT(q.err, HasSubstr("lower --nsamples or --seqlen"));
  EXPECT_THAT(q.err, Not(HasSubstr("bad_alloc")));
}

TEST(CliMessages, DegenerateCalibrationTextIsWarnedAbout) {
  test::TempDir dir;
  const std::string text = dir.write("aaaa.txt", std::string(200000, 'a'));
  const auto q = test::run_cli({"quantize", "--model", test::stories260k_path(), "--calib", text,
                                "--out", dir.file("q.bin"), "--method", "gptq", "--nsamples", "4",
                                "--seqlen", "64", "--quiet"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_THAT(q.err, HasSubstr("warning: " + text +
                               ": the calibration text does not look like "
                               "natural text"));
  EXPECT_THAT(q.err, HasSubstr("distinct tokens"));
  EXPECT_THAT(q.err, HasSubstr("entropy"));
  const auto real =
      test::run_cli({"quantize", "--model", test::stories260k_path(), "--calib",
                     test::shared_dir() + "/data/frankenstein.txt", "--out", dir.file("r.bin"),
                     "--method", "gptq", "--nsamples", "4", "--seqlen", "64", "--quiet"});
  ASSERT_EQ(real.exit_code, 0) << real.err;
  EXPECT_THAT(real.err, Not(HasSubstr("warning")));
}

}  // namespace
}  // namespace cdq
