// GPTQ checkpoints: a model quantized into the GPTQ writer reads back (dequantized) exactly as
// the solver's quantized model for 2/3/4/8 bits, per-channel and groups, symmetric (v1) and
// asymmetric (v2), act-order g_idx; tensor names, dtypes and shapes and the config fields are
// the ones vLLM / transformers / GPTQModel read; linears that cannot be packed stay float16 and
// the config excludes them for every loader; hostile checkpoints are rejected by name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/gptq_export.hpp>
#include <cdquant/half.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/quantize.hpp>
#include <cdquant/safetensors.hpp>
#include <cdquant/tokenizer.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <regex>

#include "export/hf_writer.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/hf_model.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::same_bits;
using ::testing::HasSubstr;

using test::error_of;

json read_json(const std::string& path) {
  return json::parse(test::read_file(path));
}

// dim 64, hidden 128, 4 heads of 16, 2 KV heads (kv_dim 32): every linear packs at 2/3/4/8 bits.
ModelConfig packable_config() {
  return test::tiny_config(64, 128, 2, 4, 2, 64, 32);
}

// Quantizes the HF model at src into a GPTQ checkpoint at out; returns the in-memory quantized
// model (the solver's dequantized weights).
Model quantize_to_gptq(const std::string& src, const std::string& out, const QuantizeOptions& opt,
                       uint64_t shard_bytes = 2'000'000'000, const GptqExportOptions& g = {}) {
  auto reader = open_model(src);
  auto writer = make_gptq_writer(*reader, src, out, opt, shard_bytes, g);
  QuantizeOptions o = opt;
  o.choose_grid = writer->grid_chooser();  // linears the format cannot pack stay float
  InMemoryModelWriter memory(*reader);
  quantize_model(*reader, test::random_windows(reader->config().vocab_size, 3, 12, 7), o,
                 [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                   writer->write_block(layer, block, linears);
                   memory.write_block(layer, block, linears);
                 });
  writer->finish();
  memory.finish();
  return memory.model();
}

QuantizeOptions options(Method method, int bits, int group, bool sym, bool act_order = false) {
  QuantizeOptions o;
  o.method = method;
  o.solver.grid.bits = bits;
  o.solver.grid.group_size = group;
  o.solver.grid.symmetric = sym;
  o.solver.grid.fp16_scales = true;
  o.solver.act_order = act_order;
  o.solver.cd_budget = 0.5;
  return o;
}

void expect_linears_equal(const Model& back, const Model& want, const std::vector<Linear>& f16) {
  for (size_t l = 0; l < want.blocks.size(); ++l)
    for (Linear lin : kAllLinears) {
      const bool is_f16 = std::find(f16.begin(), f16.end(), lin) != f16.end();
      const Matrix expect = is_f16 ? test::rounded_to(want.blocks[l].linear(lin), DType::F16)
                                   : want.blocks[l].linear(lin);
      EXPECT_TRUE(same_bits(back.blocks[l].linear(lin).span(), expect.span()))
          << "layer " << l << " " << linear_name(lin);
    }
}

// ---- exact round trips
// ---------------------------------------------------------------------------

struct Case {
  Method method;
  int bits;
  int group;
  bool sym;
  bool act_order;
  uint64_t shard_bytes;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.method.name() << " " << c.bits << "-bit group " << c.group << (c.sym ? " sym" : " asym")
      << (c.act_order ? " act-order" : "") << " shard " << c.shard_bytes;
}

class GptqRoundTrip : public ::testing::TestWithParam<Case> {};

TEST_P(GptqRoundTrip, ReadBackEqualsTheSolversWeightsExactly) {
  const Case p = GetParam();
  test::TempDir tmp;
  const ModelConfig c = packable_config();
  const Model source = test::random_model(c, 21);
  test::write_hf_model(source, tmp.file("src"));
  const std::string out = tmp.file("gptq");
  const Model want = quantize_to_gptq(
      tmp.file("src"), out, options(p.method, p.bits, p.group, p.sym, p.act_order), p.shard_bytes);

  auto reader = open_model(out);
  EXPECT_EQ(reader->format(), "gptq");
  const Model back = load_model(*reader);
  expect_linears_equal(back, want, {});
  // Non-linear tensors: the F32 source stored as F16.
  EXPECT_TRUE(same_bits(back.tok_embeddings.span(),
                        test::rounded_to(source.tok_embeddings, DType::F16).span()));
  EXPECT_TRUE(
      same_bits(back.blocks[1].ffn_norm, test::rounded_to(source.blocks[1].ffn_norm, DType::F16)));

  const json q = read_json(out + "/config.json")["quantization_config"];
  EXPECT_EQ(q["bits"], p.bits);
  EXPECT_EQ(q["group_size"], p.group > 0 ? p.group : -1);
  EXPECT_EQ(q["sym"], p.sym);
  EXPECT_EQ(q["checkpoint_format"], p.sym ? "gptq" : "gptq_v2");
  // desc_act exactly when g_idx is not consecutive (act-order with groups).
  EXPECT_EQ(q["desc_act"], p.act_order && p.group > 0);
  EXPECT_EQ(SafetensorsDir(out).is_sharded(), p.shard_bytes < 100000);
}

INSTANTIATE_TEST_SUITE_P(
    Settings, GptqRoundTrip,
    ::testing::Values(Case{parse_method("rtn"), 4, -1, true, false, 2'000'000'000},
                      Case{parse_method("gptq"), 4, 32, false, true, 2'000'000'000},
                      Case{parse_method("gptq"), 3, 32, true, false, 20'000},
                      Case{parse_method("rtn"), 2, 16, false, false, 2'000'000'000},
                      Case{parse_method("gptq"), 8, 32, true, true, 2'000'000'000},
                      Case{parse_method("cd"), 3, -1, false, false, 2'000'000'000},
                      Case{parse_method("owc"), 2, 32, true, false, 2'000'000'000}));

// ---- what loaders read
// ---------------------------------------------------------------------------

TEST(GptqCheckpoint, TensorNamesDtypesShapesAndConfigAsLoadersExpect) {
  test::TempDir tmp;
  const ModelConfig c = packable_config();
  test::write_hf_model(test::random_model(c, 5), tmp.file("src"));
  const std::string out = tmp.file("gptq");
  QuantizeOptions o = options(parse_method("gptq"), 4, 32, true, true);
  o.true_sequential = true;
  o.solver.percdamp = 0.05;
  quantize_to_gptq(tmp.file("src"), out, o);

  const SafetensorsDir st(out);
  for (int l = 0; l < c.n_layers; ++l)
    for (Linear lin : kAllLinears) {
      const LinearShape s = linear_shape(c, lin);
      const std::string p = hf_linear_prefix(l, lin);
      const int64_t g = s.in / 32;
      EXPECT_FALSE(st.contains(p + ".weight")) << p;
      EXPECT_EQ(st.info(p + ".qweight").dtype, DType::I32);
      EXPECT_EQ(st.info(p + ".qweight").shape, (std::vector<int64_t>{s.in * 4 / 32, s.out}));
      EXPECT_EQ(st.info(p + ".qzeros").dtype, DType::I32);
      EXPECT_EQ(st.info(p + ".qzeros").shape, (std::vector<int64_t>{g, s.out * 4 / 32}));
      EXPECT_EQ(st.info(p + ".scales").dtype, DType::F16);
      EXPECT_EQ(st.info(p + ".scales").shape, (std::vector<int64_t>{g, s.out}));
      EXPECT_EQ(st.info(p + ".g_idx").dtype, DType::I32);
      EXPECT_EQ(st.info(p + ".g_idx").shape, (std::vector<int64_t>{s.in}));
    }
  EXPECT_EQ(st.info("model.embed_tokens.weight").dtype, DType::F16);
  EXPECT_EQ(st.info("model.norm.weight").dtype, DType::F16);
  EXPECT_EQ(st.info("model.layers.0.input_layernorm.weight").dtype, DType::F16);

  const json cfg = read_json(out + "/config.json");
  EXPECT_EQ(cfg["torch_dtype"], "float16");
  EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");  // the source's fields kept
  const json& q = cfg["quantization_config"];
  EXPECT_EQ(q["quant_method"], "gptq");
  EXPECT_EQ(q["bits"], 4);
  EXPECT_EQ(q["group_size"], 32);
  EXPECT_EQ(q["desc_act"], true);
  EXPECT_EQ(q["sym"], true);
  EXPECT_EQ(q["lm_head"], false);
  EXPECT_EQ(q["checkpoint_format"], "gptq");
  EXPECT_EQ(q["true_sequential"], true);
  EXPECT_EQ(q["static_groups"], false);
  EXPECT_DOUBLE_EQ(q["damp_percent"].get<double>(), 0.05);
  EXPECT_EQ(q["meta"]["method"], "gptq");
  EXPECT_THAT(q["meta"]["quantizer"][0].get<std::string>(), HasSubstr("cdquant"));
  EXPECT_FALSE(q.contains("dynamic"));  // everything is packed
  EXPECT_EQ(read_json(out + "/quantize_config.json"), q);
  EXPECT_TRUE(fs::exists(out + "/tokenizer_config.json"));

  // v1 stores zero - 1: the symmetric zero 8 is stored as 7 in every 4-bit slot.
  const std::vector<int32_t> qz = st.file_for("model.layers.0.mlp.up_proj.qzeros")
                                      .read_i32("model.layers.0.mlp.up_proj.qzeros");
  for (int32_t w : qz) EXPECT_EQ(static_cast<uint32_t>(w), 0x77777777u);
}

// Writes a GPTQ checkpoint of the HF model at src by hand: RTN grids fitted directly (no
// calibration), so the test knows each linear's integer zeros. Returns the results by layer.
std::vector<std::vector<LinearResult>> write_rtn_gptq(const std::string& src,
                                                      const std::string& out,
                                                      const QuantizeOptions& o) {
  auto reader = open_model(src);
  auto writer = make_gptq_writer(*reader, src, out, o);
  std::vector<std::vector<LinearResult>> all;
  for (int l = 0; l < reader->config().n_layers; ++l) {
    BlockWeights b = reader->read_block(l);
    std::vector<LinearResult> linears;
    for (Linear lin : kAllLinears) {
      LinearResult r;
      r.layer = l;
      r.linear = lin;
      r.grid = fit_grid(b.linear(lin), o.solver.grid, nullptr);
      r.codes = round_to_grid(r.grid, b.linear(lin));
      b.linear(lin) = dequantize(r.grid, r.codes);
      linears.push_back(std::move(r));
    }
    writer->write_block(l, b, linears);
    all.push_back(std::move(linears));
  }
  writer->finish();
  return all;
}

// The raw zero stream of a linear's first group.
std::vector<uint32_t> raw_zeros(const std::string& dir, const std::string& prefix, int64_t n,
                                int bits) {
  const SafetensorsDir st(dir);
  const auto qz = st.file_for(prefix + ".qzeros").read_i32(prefix + ".qzeros");
  const std::vector<uint32_t> words(qz.begin(), qz.end());
  return unpack_bit_stream(words.data(), n, bits);
}

TEST(GptqCheckpoint, V1StoresZeroMinusOneV2StoresTheZero) {
  test::TempDir tmp;
  const ModelConfig c = packable_config();
  test::write_hf_model(test::random_model(c, 6), tmp.file("src"));
  for (bool sym : {true, false}) {
    const std::string out = tmp.file(sym ? "v1" : "v2");
    const auto results =
        write_rtn_gptq(tmp.file("src"), out, options(parse_method("rtn"), 4, -1, sym));
    const LinearResult& down = results[1][static_cast<int>(Linear::Down)];  // not permuted
    const auto zeros = raw_zeros(out, hf_linear_prefix(1, Linear::Down), c.dim, 4);
    for (int64_t n = 0; n < c.dim; ++n)
      ASSERT_EQ(static_cast<int32_t>(zeros[n]), down.grid.zero[down.grid.at(n, 0)] - (sym ? 1 : 0))
          << "row " << n;
    EXPECT_EQ(read_json(out + "/quantize_config.json")["checkpoint_format"],
              sym ? "gptq" : "gptq_v2");
    // q rows go back to the rotate-half order: HF row i + 8 of head 0 is internal row 2i + 1.
    const LinearResult& q = results[0][static_cast<int>(Linear::Q)];
    const auto qzeros = raw_zeros(out, hf_linear_prefix(0, Linear::Q), c.q_dim(), 4);
    for (int64_t i = 0; i < 8; ++i) {
      ASSERT_EQ(static_cast<int32_t>(qzeros[i]), q.grid.zero[q.grid.at(2 * i, 0)] - (sym ? 1 : 0));
      ASSERT_EQ(static_cast<int32_t>(qzeros[i + 8]),
                q.grid.zero[q.grid.at(2 * i + 1, 0)] - (sym ? 1 : 0));
    }
  }
}

// ---- linears kept float
// --------------------------------------------------------------------------

bool loader_skips(const json& dynamic, const std::string& module) {
  for (const auto& [key, _] : dynamic.items()) {
    if (key.rfind("-:", 0) != 0) continue;
    if (std::regex_search(module, std::regex(key.substr(2)),
                          std::regex_constants::match_continuous))
      return true;
  }
  return false;
}

TEST(GptqCheckpoint, UnpackableLinearsStayFloat16AndEveryLoaderSkipsThem) {
  test::TempDir tmp;
  // hidden 44: 44 * 4 bits is not a whole number of words, so gate/up (N = 44) and down
  // (K = 44) cannot be packed; q/k/v/o can.
  const ModelConfig c = test::tiny_config(64, 44, 2, 4, 2, 64, 32);
  test::write_hf_model(test::random_model(c, 8), tmp.file("src"));
  const std::string out = tmp.file("gptq");
  const Model want =
      quantize_to_gptq(tmp.file("src"), out, options(parse_method("gptq"), 4, -1, true));

  const SafetensorsDir st(out);
  for (Linear lin : {Linear::Gate, Linear::Up, Linear::Down}) {
    const std::string p = hf_linear_prefix(1, lin);
    EXPECT_EQ(st.info(p + ".weight").dtype, DType::F16) << p;
    EXPECT_FALSE(st.contains(p + ".qweight")) << p;
  }
  EXPECT_TRUE(st.contains("model.layers.1.self_attn.o_proj.qweight"));
  expect_linears_equal(load_model(out), want, {Linear::Gate, Linear::Up, Linear::Down});

  const json q = read_json(out + "/config.json")["quantization_config"];
  EXPECT_EQ(q["modules_in_block_to_quantize"],
            json::parse(R"([["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
                            ["self_attn.o_proj"]])"));
  // GPTQModel / vLLM negative matches (re.match on the module name; vLLM's is fused).
  for (const char* m : {"model.layers.0.mlp.gate_proj", "model.layers.1.mlp.up_proj",
                        "model.layers.0.mlp.gate_up_proj", "model.layers.12.mlp.down_proj"})
    EXPECT_TRUE(loader_skips(q["dynamic"], m)) << m;
  for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.qkv_proj",
                        "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj_x"})
    EXPECT_FALSE(loader_skips(q["dynamic"], m)) << m;
  EXPECT_EQ(read_json(out + "/quantize_config.json"), q);
}

TEST(GptqCheckpoint, FusedGroupsAndRaggedGroupsAreKeptFloatTogether) {
  test::TempDir tmp;
  // 8 heads of 8 with 2 KV heads: kv_dim 16 cannot be packed at 3 bits (48 bits), so q, k and
  // v (fused as qkv_proj by vLLM) all stay float; o, gate, up, down pack.
  const ModelConfig c = test::tiny_config(64, 64, 1, 8, 2, 64, 32);
  test::write_hf_model(test::random_model(c, 9), tmp.file("src"));
  const Model want =
      quantize_to_gptq(tmp.file("src"), tmp.file("a"), options(parse_method("rtn"), 3, 32, true));
  const json q = read_json(tmp.file("a") + "/config.json")["quantization_config"];
  for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                        "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.qkv_proj"})
    EXPECT_TRUE(loader_skips(q["dynamic"], m)) << m;
  EXPECT_FALSE(loader_skips(q["dynamic"], "model.layers.0.self_attn.o_proj"));
  expect_linears_equal(load_model(tmp.file("a")), want, {Linear::Q, Linear::K, Linear::V});

  // group_size 48 does not divide 64 inputs (vLLM rejects ragged groups): all float.
  EXPECT_FALSE(gptq_stores_packed(64, 64, 4, 48));
  EXPECT_TRUE(gptq_stores_packed(64, 96, 4, 48));
  EXPECT_FALSE(gptq_stores_packed(44, 64, 4, -1));
  EXPECT_TRUE(gptq_stores_packed(32, 64, 3, 32));
}

TEST(GptqCheckpoint, Stories260kFromLlama2cWithAHfConfig) {
  if (!fs::exists(test::stories260k_path())) GTEST_SKIP() << "no " << test::stories260k_path();
  test::TempDir tmp;
  const std::string out = tmp.file("gptq");
  auto reader = open_model(test::stories260k_path());
  auto writer = make_gptq_writer(*reader, test::stories260k_path(), out,
                                 options(parse_method("rtn"), 4, 32, true));
  QuantizeOptions o = options(parse_method("rtn"), 4, 32, true);
  o.choose_grid = writer->grid_chooser();
  InMemoryModelWriter memory(*reader);
  quantize_model(*reader, test::random_windows(512, 2, 16, 3), o,
                 [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                   writer->write_block(layer, block, linears);
                   memory.write_block(layer, block, linears);
                 });
  writer->finish();
  memory.finish();
  // The 172-wide FFN cannot be packed: gate/up/down keep their float weights (in float16, not
  // F16 copies of quantized ones), and the writer says so before the run.
  expect_linears_equal(load_model(out), memory.model(), {Linear::Gate, Linear::Up, Linear::Down});
  const Model original = load_model(test::stories260k_path());
  const Model back = load_model(out);
  for (size_t l = 0; l < back.blocks.size(); ++l)
    for (Linear lin : {Linear::Gate, Linear::Up, Linear::Down})
      EXPECT_TRUE(same_bits(back.blocks[l].linear(lin).span(),
                            test::rounded_to(original.blocks[l].linear(lin), DType::F16).span()))
          << l << " " << linear_name(lin);
  ASSERT_EQ(writer->notes().size(), 3u);
  EXPECT_THAT(writer->notes()[2], HasSubstr("mlp.down_proj: [64, 172] cannot be packed"));
  EXPECT_THAT(writer->notes()[2], HasSubstr("kept F16"));
  const json cfg = read_json(out + "/config.json");
  EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(cfg["hidden_size"], 64);
  EXPECT_EQ(cfg["intermediate_size"], 172);
  EXPECT_EQ(cfg["num_key_value_heads"], 4);
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  EXPECT_TRUE(fs::exists(out + "/tokenizer.bin"));  // tok512.bin, for cdquant eval
  // and a tokenizer.json HF clients load, encoding as the llama2.c tokenizer does
  const auto hf = load_tokenizer(out);
  EXPECT_EQ(hf->kind(), "hf-bpe-sentencepiece");
  const auto bin = load_tokenizer(out + "/tokenizer.bin");
  const std::string text = "Once upon a time, there was a little girl named Lily. 123  ok\n";
  EXPECT_EQ(hf->encode(text, true), bin->encode(text, true));
  // every safetensors file says format pt (transformers < 4.48.2 refuses files without)
  EXPECT_EQ(SafetensorsFile(out + "/model.safetensors").metadata().at("format"), "pt");
}

TEST(GptqCheckpoint, FloatTensorsAndTorchDtypeAgree) {
  // auto: a BF16 source keeps BF16 float tensors and says bfloat16, an F32 one gets float16;
  // --gptq-dtype chooses. The scales are float16 in every case (the format's).
  test::TempDir tmp;
  const ModelConfig c = packable_config();
  const Model m = test::random_model(c, 8);
  test::write_hf_model(m, tmp.file("bf16"), DType::BF16);
  test::write_hf_model(m, tmp.file("f32"), DType::F32);
  const QuantizeOptions o = options(parse_method("rtn"), 4, 32, true);
  struct Run {
    const char* src;
    const char* dtype;
    DType want;
    const char* torch;
  };
  for (const Run& r :
       {Run{"bf16", "auto", DType::BF16, "bfloat16"}, Run{"f32", "auto", DType::F16, "float16"},
        Run{"bf16", "float16", DType::F16, "float16"},
        Run{"f32", "bfloat16", DType::BF16, "bfloat16"}}) {
    SCOPED_TRACE(std::string(r.src) + " " + r.dtype);
    const std::string out = tmp.file(std::string("out_") + r.src + r.dtype);
    GptqExportOptions g;
    g.dtype = r.dtype;
    quantize_to_gptq(tmp.file(r.src), out, o, 2'000'000'000, g);
    const SafetensorsDir st(out);
    EXPECT_EQ(st.info("model.embed_tokens.weight").dtype, r.want);
    EXPECT_EQ(st.info("model.layers.0.input_layernorm.weight").dtype, r.want);
    EXPECT_EQ(st.info("model.layers.0.self_attn.q_proj.scales").dtype, DType::F16);
    EXPECT_EQ(read_json(out + "/config.json")["torch_dtype"], r.torch);
  }
}

TEST(GptqCheckpoint, AsymmetricGridsAsV1WhenZeroPointsAllow) {
  test::TempDir tmp;
  const ModelConfig c = packable_config();
  test::write_hf_model(test::random_model(c, 9), tmp.file("src"));
  const QuantizeOptions o = options(parse_method("gptq"), 4, -1, false);
  GptqExportOptions g;
  g.v1 = true;
  const std::string out = tmp.file("v1");
  const Model want = quantize_to_gptq(tmp.file("src"), out, o, 2'000'000'000, g);
  const json q = read_json(out + "/config.json")["quantization_config"];
  EXPECT_EQ(q["checkpoint_format"], "gptq");
  EXPECT_EQ(q["sym"], false);
  expect_linears_equal(load_model(out), want, {});  // v1 reads back the same weights
  // A zero point of 0 (a group with nothing below zero) cannot be stored as v1.
  Grid grid = make_grid_layout(8, 32, -1, 15);
  grid.scale.assign(8, 0.1f);
  grid.zero.assign(8, 3);
  grid.zero[5] = 0;
  for (size_t k = 0; k < 8; ++k) grid.bias[k] = -0.1f * static_cast<float>(grid.zero[k]);
  EXPECT_THAT(error_of([&] {
                pack_gptq_linear(grid, std::vector<uint8_t>(256, 1), 4, GptqCheckpointFormat::V1);
              }),
              HasSubstr("drop --gptq-v1"));
}

TEST(GptqCheckpoint, CliQuantizesToGptqAndEvaluatesIt) {
  if (!fs::exists(test::stories260k_path())) GTEST_SKIP() << "no " << test::stories260k_path();
  test::TempDir tmp;
  const std::string out = tmp.file("q");
  const std::string text = test::shared_dir() + "/data/tinyshakespeare.txt";
  if (!fs::exists(text)) GTEST_SKIP() << "no " << text;
  const auto q = test::run_cli({"quantize", "--model", test::stories260k_path(), "--calib", text,
                                "--out", out, "--format", "gptq", "--bits", "4", "--group", "32",
                                "--sym", "--nsamples", "4", "--seqlen", "64", "--quiet"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(read_json(out + "/config.json")["quantization_config"]["checkpoint_format"], "gptq");
  // The reader's weights sit on each group's 4-bit grid: at most 16 distinct values.
  const Model m = load_model(out);
  const Matrix& wv = m.blocks[0].wv;
  std::vector<float> group(wv.row(3), wv.row(3) + 32);
  std::sort(group.begin(), group.end());
  EXPECT_LE(std::unique(group.begin(), group.end()) - group.begin(), 16);
  const auto e = test::run_cli({"eval", "--model", test::stories260k_path(), "--quantized", out,
                                "--text", text, "--ctx", "64", "--max-windows", "2", "--quiet"});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_THAT(e.out, HasSubstr("quantized ppl"));
}

TEST(GptqCheckpoint, WriterRejectsGridsItCannotStore) {
  test::TempDir tmp;
  const ModelConfig c = packable_config();
  const Model m = test::random_model(c, 2);
  test::write_hf_model(m, tmp.file("src"));
  auto reader = open_model(tmp.file("src"));
  const QuantizeOptions o = options(parse_method("rtn"), 4, -1, true);
  auto writer = make_gptq_writer(*reader, tmp.file("src"), tmp.file("out"), o);
  std::vector<LinearResult> linears;
  for (Linear lin : kAllLinears) {
    LinearResult r;
    r.linear = lin;
    const Matrix& w = m.blocks[0].linear(lin);
    r.grid = fit_grid(w, o.solver.grid, nullptr);
    r.codes = round_to_grid(r.grid, w);
    linears.push_back(r);
  }
  linears[3].grid.zero.clear();  // a non-integer (GGUF-style) grid
  EXPECT_THAT(error_of([&] { writer->write_block(0, m.blocks[0], linears); }),
              HasSubstr("need integer grids"));
  auto again = make_gptq_writer(*reader, tmp.file("src"), tmp.file("out2"), o);
  EXPECT_THAT(error_of([&] { again->write_block(0, m.blocks[0], {}); }),
              HasSubstr("without the quantized q linear"));
}

// ---- fp16 scales
// ----------------------------------------------------------------------------------

TEST(GptqCheckpoint, Fp16ScalesAreExactlyRepresentableForEverySearch) {
  const Model m = test::random_model(packable_config(), 4);
  const Matrix& w = m.blocks[0].w_up;
  Matrix h(w.cols, w.cols);
  for (int64_t i = 0; i < w.cols; ++i) h.row(i)[i] = 1.0f + static_cast<float>(i % 5);
  for (ScaleSearch s : {ScaleSearch::MinMax, ScaleSearch::Mse, ScaleSearch::Owc})
    for (bool sym : {true, false}) {
      GridSpec spec;
      spec.bits = 3;
      spec.group_size = 32;
      spec.symmetric = sym;
      spec.search = s;
      spec.fp16_scales = true;
      const Grid g = fit_grid(w, spec, &h);
      for (size_t k = 0; k < g.scale.size(); ++k) {
        ASSERT_EQ(g.scale[k], fp16_to_float(float_to_fp16(g.scale[k])));
        ASSERT_GE(g.zero[k], 0);
        ASSERT_LE(g.zero[k], g.maxq);
      }
    }
}

// ---- hostile checkpoints
// --------------------------------------------------------------------------

// Rewrites the single model.safetensors of dir: edit(name) may replace or drop a tensor.
using Edit =
    std::function<bool(const std::string& name, const SafetensorsFile& f, SafetensorsWriter& w)>;
void rewrite(const std::string& dir, const Edit& edit) {
  SafetensorsWriter w;
  {
    const SafetensorsFile f(dir + "/model.safetensors");
    for (const auto& name : f.names()) {
      if (edit(name, f, w)) continue;
      const auto b = f.bytes(name);
      w.add_bytes(name, f.info(name).dtype, f.info(name).shape,
                  std::vector<std::byte>(b.begin(), b.end()));
    }
  }
  w.write(dir + "/model.safetensors");
}

void edit_config(const std::string& dir, const std::function<void(json&)>& edit) {
  json j = read_json(dir + "/config.json");
  edit(j["quantization_config"]);
  std::ofstream(dir + "/config.json") << j.dump();
}

class GptqHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    const ModelConfig c = packable_config();
    test::write_hf_model(test::random_model(c, 1), tmp_.file("src"));
    quantize_to_gptq(tmp_.file("src"), dir(), options(parse_method("rtn"), 4, 32, true));
    ASSERT_NO_THROW(load_model(dir()));
  }
  std::string dir() const { return tmp_.file("gptq"); }
  std::string load_error() const {
    return error_of([&] { load_model(dir()); });
  }
  test::TempDir tmp_;
};

const std::string kQw = "model.layers.1.self_attn.v_proj";

TEST_F(GptqHostile, MissingQzeros) {
  rewrite(dir(), [](const std::string& n, const SafetensorsFile&, SafetensorsWriter&) {
    return n == kQw + ".qzeros";
  });
  EXPECT_THAT(load_error(), HasSubstr(kQw + ".qzeros is missing"));
}

TEST_F(GptqHostile, WrongQweightShape) {
  rewrite(dir(), [](const std::string& n, const SafetensorsFile& f, SafetensorsWriter& w) {
    if (n != kQw + ".qweight") return false;
    const auto b = f.bytes(n);  // [8, 32] relabelled [16, 16]
    w.add_bytes(n, DType::I32, {16, 16}, std::vector<std::byte>(b.begin(), b.end()));
    return true;
  });
  EXPECT_THAT(load_error(), HasSubstr(kQw + ".qweight is I32 [16, 16], expected I32 [8, 32]"));
}

TEST_F(GptqHostile, ScalesOfTheWrongDtype) {
  rewrite(dir(), [](const std::string& n, const SafetensorsFile& f, SafetensorsWriter& w) {
    if (n != kQw + ".scales") return false;
    w.add_floats(n, f.info(n).shape, f.read_floats(n), DType::F32);
    return true;
  });
  EXPECT_THAT(load_error(), HasSubstr(kQw + ".scales is F32"));
}

TEST_F(GptqHostile, GidxOutOfRange) {
  rewrite(dir(), [](const std::string& n, const SafetensorsFile& f, SafetensorsWriter& w) {
    if (n != kQw + ".g_idx") return false;
    std::vector<int32_t> g = f.read_i32(n);
    g[5] = 2;  // 64 inputs in groups of 32: only groups 0 and 1 exist
    w.add_ints(n, DType::I32, f.info(n).shape, g);
    return true;
  });
  EXPECT_THAT(load_error(), HasSubstr(kQw + ".g_idx[5] = 2 is outside [0, 2)"));
}

TEST_F(GptqHostile, BadConfigs) {
  edit_config(dir(), [](json& q) { q["bits"] = 5; });
  EXPECT_THAT(load_error(), HasSubstr("GPTQ bits 5 not supported"));
  edit_config(dir(), [](json& q) {
    q["bits"] = 4;
    q["checkpoint_format"] = "gptq_v3";
  });
  EXPECT_THAT(load_error(), HasSubstr("checkpoint_format 'gptq_v3' is not supported"));
  edit_config(dir(), [](json& q) {
    q["checkpoint_format"] = "gptq";
    q["group_size"] = 16;  // the tensors hold 2 groups of 32
  });
  EXPECT_THAT(load_error(), HasSubstr("expected I32 [4, 8]"));
  edit_config(dir(), [](json& q) {
    q["group_size"] = 32;
    q["lm_head"] = true;
  });
  EXPECT_THAT(load_error(), HasSubstr("quantized lm_head is not supported"));
  edit_config(dir(), [](json& q) { q.erase("bits"); });
  EXPECT_THAT(load_error(), HasSubstr("lacks the integer field 'bits'"));
}

}  // namespace
}  // namespace cdq
