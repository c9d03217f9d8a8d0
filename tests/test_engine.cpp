// The engine check: every kind of GGUF file cdquant writes - each ggml type and llama.cpp mix,
// from llama2.c, HF and GGUF sources, with SentencePiece-style and byte-level BPE vocabularies -
// is run through the real llama.cpp (the prebuilt npm package of scripts/fetch_engine.sh) by
// tests/engine/engine_check: it loads with no warning, tokenizes a real text as cdquant does,
// decodes every tensor to cdquant's floats bit for bit, and its logits on a window agree with
// cdquant's engine-faithful forward (see engine_check.cpp for the tolerance and why).
// Skips, saying so, when the engine is not installed (.engine/ missing).
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/cli.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

std::string engine_check_path() {
  return CDQ_ENGINE_CHECK_PATH;
}
std::string make_random_hf_path() {
  return CDQ_MAKE_RANDOM_HF_PATH;
}
std::string engine_quantize_path() {
  return CDQ_ENGINE_QUANTIZE_PATH;
}
std::string real_text() {
  return test::shared_dir() + "/data/frankenstein.txt";
}
std::string tok105_dir() {
  return test::shared_dir() + "/models/babyllama-tok105";
}

// Sources and float references, made once for the whole suite.
class Engine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (engine_check_path().empty()) return;
    dir_ = new test::TempDir("cdq-engine");
    if (!make_random_hf_path().empty()) {
      const auto r = test::run_program(make_random_hf_path(),
                                       {"--arch", "tiny-256", "--out", hf_dir(), "--dtype", "f32"});
      hf_ok_ = r.exit_code == 0;
    }
    write_tok105_text();
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string hf_dir() { return dir_->file("hf-tiny"); }
  static std::string tok105_text() { return dir_->file("tok105.txt"); }

  // The real text restricted to the characters babyllama-tok105's 105 pieces cover: llama.cpp
  // aborts on any other character (the vocabulary has no <0xXX> byte pieces, nor a newline).
  // Line ends become spaces and runs of spaces are kept: there llama.cpp, and so cdquant's GGUF
  // tokenizer, keep every space, where libsentencepiece's normalizer (remove_extra_whitespaces
  // in the .model, which no GGUF key carries) collapses them.
  static void write_tok105_text() {
    std::ifstream vocab(tok105_dir() + "/tok105.vocab");
    std::set<std::string> pieces;
    for (std::string line; std::getline(vocab, line);)
      pieces.insert(line.substr(0, line.find('\t')));
    const std::string text = test::read_file(real_text());
    std::string out;
    for (size_t i = 0; i < text.size() && out.size() < 8000;) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      const size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      const std::string ch = text.substr(i, n);
      i += n;
      if (ch == " " || ch == "\n" || ch == "\r" || ch == "\t")
        out += ' ';
      else if (pieces.count(ch) != 0)
        out += ch;
    }
    std::ofstream(tok105_text()) << out;
  }

  // Writes a GGUF with cdquant, runs the engine check on it and returns its JSON report.
  nlohmann::json check(const std::string& name, std::vector<std::string> quantize_args,
                       const std::string& text, const std::string& reference = "",
                       const std::vector<std::string>& extra = {}) {
    const std::string out = dir_->file(name + ".gguf");
    std::vector<std::string> args = {"quantize", "--format", "gguf", "--quiet", "--out", out};
    args.insert(args.end(), quantize_args.begin(), quantize_args.end());
    const auto q = test::run_cli(args);
    EXPECT_EQ(q.exit_code, 0) << q.err;
    std::vector<std::string> a = {out, "--text", text};
    if (!reference.empty()) a.insert(a.end(), {"--reference", dir_->file(reference + ".gguf")});
    a.insert(a.end(), extra.begin(), extra.end());
    const auto r = test::run_program(engine_check_path(), a);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(r.out);
    } catch (const std::exception&) {
      ADD_FAILURE() << "engine_check printed no JSON: " << r.out << r.err;
      return j;
    }
    report(name, j);
    EXPECT_TRUE(j.value("ok", false)) << j.dump(1);
    return j;
  }

  // One line of figures per file (the closing note's table).
  static void report(const std::string& name, const nlohmann::json& j) {
    if (!j.contains("logits")) return;
    const auto& l = j["logits"];
    std::ostringstream s;
    s << "[engine] " << name << ": tokens " << j["tokens"]["cdquant"] << " equal "
      << j["tokens"]["equal"] << ", tensors " << j["tensors"]["equal"] << "/"
      << j["tensors"]["compared"] << " bit-exact " << j["tensors"]["types"] << ", logits window "
      << l["window"] << " max|diff| " << l["max_diff_engine"] << " (float activations "
      << l["max_diff_exact"] << ", noise " << l["noise"] << "), first "
      << l["positions_within_noise"] << " positions within noise"
      << (l.value("fully_modelled", true) ? "" : " (F16/Q8_1 products: not required)");
    if (l.contains("kl_llama"))
      s << ", KL vs float llama " << l["kl_llama"] << " engine-faithful " << l["kl_engine"]
        << " float-activation " << l["kl_exact"];
    std::cout << s.str() << std::endl;
  }

  void require_engine() {
    if (engine_check_path().empty())
      GTEST_SKIP() << "the llama.cpp engine is not installed: run scripts/fetch_engine.sh and "
                      "re-run cmake (the engine check is skipped)";
  }
  void require_hf() {
    require_engine();
    if (!IsSkipped() && !hf_ok_)
      GTEST_SKIP() << "bench/make_random_hf is not built (CDQ_BENCH=OFF)";
  }

  static test::TempDir* dir_;
  static bool hf_ok_;
};

test::TempDir* Engine::dir_ = nullptr;
bool Engine::hf_ok_ = false;

std::vector<std::string> rtn(const std::string& model, const std::string& type) {
  return {"--model", model, "--type", type, "--method", "rtn", "--no-importance"};
}

// llama2.c source (stories260K, its llama2.c tokenizer as a "llama" vocabulary): the float
// types and the 32-weight block types, IQ4_NL included (dim 64 fits no 256-weight block).
TEST_F(Engine, Llama2cSourceEveryLegacyType) {
  require_engine();
  if (IsSkipped()) return;
  const std::string m = test::stories260k_path();
  check("s-F32", rtn(m, "F32"), real_text());
  for (const char* t : {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"})
    check(std::string("s-") + t, rtn(m, t), real_text(), "s-F32");
}

// CD-coded blocks (the default method, calibrated on text) are ordinary files to the engine.
TEST_F(Engine, Llama2cSourceCdCodes) {
  require_engine();
  if (IsSkipped()) return;
  const std::string m = test::stories260k_path();
  check("s-F32", rtn(m, "F32"), real_text());
  check("s-cd-Q4_0",
        {"--model", m, "--type", "Q4_0", "--calib", real_text(), "--nsamples", "8", "--seqlen",
         "128"},
        real_text(), "s-F32");
}

// A size-budget allocation (issue 13): a per-tensor mix chosen by measurement, with its plan
// in the metadata, is an ordinary file to the engine.
TEST_F(Engine, AllocatedMixLoads) {
  require_engine();
  if (IsSkipped()) return;
  const std::string m = test::stories260k_path();
  check("s-F32", rtn(m, "F32"), real_text());
  check("s-alloc",
        {"--model", m, "--method", "rtn", "--target-size", "300000", "--calib", "self",
         "--nsamples", "4", "--seqlen", "64", "--sensitivity-windows", "4", "--sensitivity",
         dir_->file("s-alloc.sensitivity.json")},
        real_text(), "s-F32");
}

// GGUF source: a float GGUF quantized again.
TEST_F(Engine, GgufSource) {
  require_engine();
  if (IsSkipped()) return;
  check("s-F32", rtn(test::stories260k_path(), "F32"), real_text());
  check("g-Q5_1", rtn(dir_->file("s-F32.gguf"), "Q5_1"), real_text(), "s-F32");
}

// SentencePiece .model vocabulary (babyllama-tok105, character-level, no byte pieces). Its
// one warning is the vocabulary's, not the file's: llama.cpp wants a newline piece (<0x0A> or
// "\n") in every SPM vocabulary and this one has none.
TEST_F(Engine, SentencePieceVocabulary) {
  require_engine();
  if (IsSkipped()) return;
  const std::string m = test::babyllama_path(), tok = tok105_dir() + "/tok105.model";
  const std::vector<std::string> allow = {"--allow-warning", "newline token not found"};
  auto args = [&](const char* t) {
    auto a = rtn(m, t);
    a.insert(a.end(), {"--tokenizer", tok});
    return a;
  };
  check("b-F32", args("F32"), tok105_text(), "", allow);
  for (const char* t : {"Q8_0", "Q4_0"})
    check(std::string("b-") + t, args(t), tok105_text(), "b-F32", allow);
}

// HF source with a byte-level BPE (gpt2) vocabulary and no merges, d_in multiples of 256: the
// K-quants, llama.cpp's mixes and IQ4_NL / IQ4_XS.
TEST_F(Engine, HfSourceKQuantsAndMixes) {
  require_hf();
  if (IsSkipped()) return;
  check("h-F32", rtn(hf_dir(), "F32"), real_text());
  for (const char* t : {"F16", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q3_K_S", "Q3_K_M",
                        "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "IQ4_NL", "IQ4_XS"})
    check(std::string("h-") + t, rtn(hf_dir(), t), real_text(), "h-F32");
}

// cdquant's --method rtn --no-importance writes exactly the tensor bytes of llama.cpp's own
// llama_model_quantize without an imatrix: ggml's rounding of x * (1 / d) with the unrounded d,
// for every legacy type and every K mix (the mixes' per-tensor types included). Not Q2_K:
// llama.cpp's Q2_K is a mix (some tensors raised to Q3_K / Q4_K), cdquant's --type Q2_K is not.
nlohmann::json compare_with_llama_quantize(const std::string& name, const std::string& f32,
                                           const std::string& type, test::TempDir& dir) {
  const std::string ours = dir.file(name + ".gguf"), theirs = dir.file(name + "-llama.gguf");
  const auto q = test::run_cli({"quantize", "--model", f32, "--format", "gguf", "--type", type,
                                "--method", "rtn", "--no-importance", "--quiet", "--out", ours});
  EXPECT_EQ(q.exit_code, 0) << q.err;
  const auto l = test::run_program(engine_quantize_path(), {"quantize", f32, theirs, type});
  EXPECT_EQ(l.exit_code, 0) << l.err;
  const auto c = test::run_program(engine_quantize_path(), {"compare", theirs, ours});
  EXPECT_EQ(c.exit_code, 0) << c.err;
  const nlohmann::json j = nlohmann::json::parse(c.out);
  std::cout << "[engine] " << name << " (" << type << ") vs llama_model_quantize: " << c.out;
  return j;
}

TEST_F(Engine, RtnPlainIsLlamaQuantizeBytes) {
  require_hf();
  if (IsSkipped()) return;
  check("s-F32", rtn(test::stories260k_path(), "F32"), real_text());
  check("h-F32", rtn(hf_dir(), "F32"), real_text());
  for (const char* t : {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"}) {
    const auto j =
        compare_with_llama_quantize(std::string("rs-") + t, dir_->file("s-F32.gguf"), t, *dir_);
    EXPECT_EQ(j["different"], 0) << t;
    EXPECT_GT(j["blocks"].get<int64_t>(), 1000) << t;
  }
  for (const char* t : {"Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
                        "Q6_K", "Q8_0", "IQ4_XS"}) {
    const auto j =
        compare_with_llama_quantize(std::string("rh-") + t, dir_->file("h-F32.gguf"), t, *dir_);
    EXPECT_EQ(j["different"], 0) << t;
    EXPECT_GT(j["blocks"].get<int64_t>(), 1000) << t;
  }
}

}  // namespace
}  // namespace cdq
