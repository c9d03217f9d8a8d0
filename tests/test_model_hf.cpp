// HF safetensors model directories: the q/k layout conversion is the right one (RoPE in
// rotate-half on HF rows == interleaved RoPE on converted rows), models exported to HF load
// back bit-exactly (plain and sharded, Llama and Qwen2 with biases), and bad configs are
// rejected with a message naming the problem.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/forward.hpp>
#include <cdquant/gptq_format.hpp>
#include <cdquant/grid.hpp>
#include <cdquant/model.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/safetensors.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/forward_blocks.hpp"
#include "support/errors.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;

using test::error_of;

nlohmann::json hf_config(const ModelConfig& c) {
  nlohmann::json j;
  j["architectures"] = {c.arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = c.arch;
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.hidden_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_seq_len;
  j["rope_theta"] = c.rope_theta;
  j["rms_norm_eps"] = c.norm_eps;
  j["tie_word_embeddings"] = c.tied_embeddings;
  j["bos_token_id"] = c.bos_id;
  j["eos_token_id"] = c.eos_id;
  j["hidden_act"] = "silu";
  if (c.head_dim * c.n_heads != c.dim) j["head_dim"] = c.head_dim;
  return j;
}

// Writes a model as an HF directory the way HF stores it (q/k rows in rotate-half order).
// GPTQ-packed linears by tensor prefix ("model.layers.0.self_attn.q_proj"), written in place
// of the float weight.
using PackedLinears = std::map<std::string, GptqLinear>;

void export_hf(const Model& m, const std::string& dir, uint64_t shard_bytes = 0,
               const nlohmann::json* config = nullptr, const PackedLinears& packed = {}) {
  const ModelConfig& c = m.config;
  SafetensorsWriter w;
  auto add_linear = [&](const std::string& prefix, const Matrix& weight) {
    const auto it = packed.find(prefix);
    if (it == packed.end()) return w.add_matrix(prefix + ".weight", weight);
    const GptqLinear& t = it->second;
    const int64_t K = t.in_features, N = t.out_features, G = t.n_groups;
    w.add_ints(prefix + ".qweight", DType::I32, {K * t.bits / 32, N}, t.qweight);
    w.add_ints(prefix + ".qzeros", DType::I32, {G, N * t.bits / 32}, t.qzeros);
    w.add_ints(prefix + ".scales", DType::F16, {G, N}, t.scales);
    w.add_ints(prefix + ".g_idx", DType::I32, {K}, t.g_idx);
  };
  w.add_matrix("model.embed_tokens.weight", m.tok_embeddings);
  for (int l = 0; l < c.n_layers; ++l) {
    const BlockWeights& b = m.blocks[static_cast<size_t>(l)];
    const std::string p = fmt::format("model.layers.{}.", l);
    auto vec = [&](const std::string& name, const std::vector<float>& v) {
      w.add_floats(p + name, {static_cast<int64_t>(v.size())}, v);
    };
    vec("input_layernorm.weight", b.attn_norm);
    vec("post_attention_layernorm.weight", b.ffn_norm);
    add_linear(p + "self_attn.q_proj", interleaved_to_rotate_half(b.wq, c.head_dim));
    add_linear(p + "self_attn.k_proj", interleaved_to_rotate_half(b.wk, c.head_dim));
    add_linear(p + "self_attn.v_proj", b.wv);
    add_linear(p + "self_attn.o_proj", b.wo);
    add_linear(p + "mlp.gate_proj", b.w_gate);
    add_linear(p + "mlp.up_proj", b.w_up);
    add_linear(p + "mlp.down_proj", b.w_down);
    if (c.qkv_bias) {
      vec("self_attn.q_proj.bias", interleaved_to_rotate_half(b.bq, c.head_dim));
      vec("self_attn.k_proj.bias", interleaved_to_rotate_half(b.bk, c.head_dim));
      vec("self_attn.v_proj.bias", b.bv);
    }
  }
  w.add_floats("model.norm.weight", {c.dim}, m.final_norm);
  if (!c.tied_embeddings) w.add_matrix("lm_head.weight", m.output);
  std::filesystem::create_directories(dir);
  if (shard_bytes > 0)
    w.write_sharded(dir, shard_bytes);
  else
    w.write(dir + "/model.safetensors");
  std::ofstream(dir + "/config.json") << (config ? *config : hf_config(c)).dump(2);
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

void expect_same_model(const Model& a, const Model& b) {
  EXPECT_EQ(a.config.dim, b.config.dim);
  EXPECT_EQ(a.config.n_kv_heads, b.config.n_kv_heads);
  EXPECT_EQ(a.config.head_dim, b.config.head_dim);
  EXPECT_EQ(a.config.tied_embeddings, b.config.tied_embeddings);
  EXPECT_EQ(a.config.qkv_bias, b.config.qkv_bias);
  EXPECT_EQ(a.config.rope_theta, b.config.rope_theta);
  EXPECT_EQ(a.config.norm_eps, b.config.norm_eps);
  EXPECT_TRUE(same_bits(a.tok_embeddings.span(), b.tok_embeddings.span()));
  ASSERT_EQ(a.blocks.size(), b.blocks.size());
  for (size_t l = 0; l < a.blocks.size(); ++l) {
    for (Linear lin : kAllLinears)
      EXPECT_TRUE(same_bits(a.blocks[l].linear(lin).span(), b.blocks[l].linear(lin).span()))
          << "layer " << l << " " << linear_name(lin);
    EXPECT_TRUE(same_bits(a.blocks[l].bq, b.blocks[l].bq));
    EXPECT_TRUE(same_bits(a.blocks[l].bk, b.blocks[l].bk));
    EXPECT_TRUE(same_bits(a.blocks[l].bv, b.blocks[l].bv));
    EXPECT_TRUE(same_bits(a.blocks[l].attn_norm, b.blocks[l].attn_norm));
  }
  EXPECT_TRUE(same_bits(a.final_norm, b.final_norm));
  EXPECT_TRUE(same_bits(a.output.span(), b.output.span()));
}

// HF applies RoPE in rotate-half form: pairs (i, i + d/2) rotated by pos * theta^(-2i/d).
std::vector<double> rope_rotate_half(std::vector<double> v, int d, double theta, int pos) {
  std::vector<double> out = v;
  for (int i = 0; i < d / 2; ++i) {
    const double a = pos * std::pow(theta, -2.0 * i / d);
    out[i] = v[i] * std::cos(a) - v[i + d / 2] * std::sin(a);
    out[i + d / 2] = v[i + d / 2] * std::cos(a) + v[i] * std::sin(a);
  }
  return out;
}

TEST(HfModel, PermutationTurnsRotateHalfIntoInterleavedRope) {
  const int d = 16, in = 12, heads = 2, pos = 37;
  const double theta = 10000.0;
  Rng rng(3);
  Matrix w_hf(heads * d, in);
  for (float& v : w_hf.data) v = static_cast<float>(rng.normal());
  std::vector<float> x(in);
  for (float& v : x) v = static_cast<float>(rng.normal());
  const Matrix w_int = rotate_half_to_interleaved(w_hf, d);
  EXPECT_TRUE(same_bits(interleaved_to_rotate_half(w_int, d).span(), w_hf.span()));

  Matrix q_int(1, heads * d);  // interleaved path: permuted rows, our apply_rope
  for (int r = 0; r < heads * d; ++r)
    for (int c = 0; c < in; ++c) q_int(0, r) += w_int(r, c) * x[c];
  Matrix rotated = q_int;
  Matrix tall(pos + 1, heads * d);  // apply_rope rotates row t by position t
  std::copy_n(q_int.row(0), heads * d, tall.row(pos));
  apply_rope(tall, d, static_cast<float>(theta), 0);
  for (int h = 0; h < heads; ++h) {
    std::vector<double> q_hf(d);  // HF path: original rows, rotate-half RoPE
    for (int r = 0; r < d; ++r)
      for (int c = 0; c < in; ++c) q_hf[r] += static_cast<double>(w_hf(h * d + r, c)) * x[c];
    const auto rot = rope_rotate_half(q_hf, d, theta, pos);
    for (int i = 0; i < d / 2; ++i) {  // interleaved 2i <-> half i, 2i+1 <-> i + d/2
      EXPECT_NEAR(tall(pos, h * d + 2 * i), rot[i], 1e-4);
      EXPECT_NEAR(tall(pos, h * d + 2 * i + 1), rot[i + d / 2], 1e-4);
    }
  }
}

TEST(HfModel, StoriesExportedToHfLoadsBitExact) {
  test::TempDir dir;
  const Model m = load_model(test::stories260k_path());
  export_hf(m, dir.file("hf"));
  auto reader = open_model(dir.file("hf"));
  EXPECT_EQ(reader->format(), "hf");
  EXPECT_EQ(reader->config().arch, "llama");
  expect_same_model(m, load_model(*reader));
  // A single .safetensors file with config.json beside it opens too.
  expect_same_model(m, load_model(dir.file("hf") + "/model.safetensors"));
}

TEST(HfModel, ShardedQwen2WithBiasesLoadsBitExact) {
  test::TempDir dir;
  ModelConfig c = test::tiny_config(32, 48, 3, 4, 2, 70, 64);
  c.arch = "qwen2";
  c.qkv_bias = true;
  c.tied_embeddings = false;
  c.rope_theta = 1e6f;
  c.norm_eps = 1e-6f;
  const Model m = test::random_model(c, 5);
  export_hf(m, dir.file("qwen"), 8000);  // several shards
  EXPECT_TRUE(std::filesystem::exists(dir.file("qwen") + "/model.safetensors.index.json"));
  const Model back = load_model(dir.file("qwen"));
  expect_same_model(m, back);
  const std::vector<int> tokens = {1, 5, 9, 33, 2, 60, 7};
  const Matrix a = forward_logits(m, tokens), b = forward_logits(back, tokens);
  EXPECT_TRUE(same_bits(a.span(), b.span()));
}

// A random 4-bit grid (fp16-exact scales, integer zeros) and codes for an [N, K] linear.
GptqLinear random_gptq(int64_t N, int64_t K, int group, uint64_t seed) {
  Rng rng(seed);
  Grid g = make_grid_layout(N, K, group, 15);
  g.scale.assign(static_cast<size_t>(N * g.n_groups), 0.0f);
  g.bias = g.scale;
  g.zero.assign(g.scale.size(), 0);
  for (size_t i = 0; i < g.scale.size(); ++i) {
    g.scale[i] = 0.0625f * static_cast<float>(1 + rng.below(8));
    g.zero[i] = static_cast<int32_t>(rng.below(16));
    g.bias[i] = -g.scale[i] * static_cast<float>(g.zero[i]);
  }
  std::vector<uint8_t> codes(static_cast<size_t>(N * K));
  for (auto& q : codes) q = static_cast<uint8_t>(rng.below(16));
  return pack_gptq_linear(g, codes, 4, GptqCheckpointFormat::V2);
}

TEST(HfModel, GptqLinearsAreDequantized) {
  test::TempDir dir;
  const ModelConfig c = test::tiny_config(32, 64, 1, 4, 2, 40, 32);
  const Model m = test::random_model(c, 3);
  PackedLinears packed;
  packed["model.layers.0.self_attn.q_proj"] = random_gptq(32, 32, 16, 1);
  packed["model.layers.0.mlp.down_proj"] = random_gptq(32, 64, 16, 2);
  nlohmann::json j = hf_config(c);
  j["quantization_config"] = {
      {"quant_method", "gptq"}, {"bits", 4}, {"group_size", 16}, {"checkpoint_format", "gptq_v2"}};
  export_hf(m, dir.file("gptq"), 0, &j, packed);
  const Model back = load_model(dir.file("gptq"));
  const Matrix q_hf =
      dequantize_gptq_linear(packed["model.layers.0.self_attn.q_proj"], GptqCheckpointFormat::V2);
  const Matrix down =
      dequantize_gptq_linear(packed["model.layers.0.mlp.down_proj"], GptqCheckpointFormat::V2);
  EXPECT_TRUE(same_bits(back.blocks[0].wq.span(), rotate_half_to_interleaved(q_hf, 8).span()));
  EXPECT_TRUE(same_bits(back.blocks[0].w_down.span(), down.span()));
  EXPECT_TRUE(same_bits(back.blocks[0].wk.span(), m.blocks[0].wk.span()));  // float ones stay
  // Without the quantization_config the packed tensors cannot be read.
  j.erase("quantization_config");
  export_hf(m, dir.file("noconf"), 0, &j, packed);
  EXPECT_THAT(error_of([&] { load_model(dir.file("noconf")); }),
              HasSubstr("no quantization_config"));
}

TEST(HfModel, TiedEmbeddingsInferredWhenUnstated) {
  test::TempDir dir;
  const Model m = test::random_model(test::tiny_config(), 2);
  nlohmann::json j = hf_config(m.config);
  j.erase("tie_word_embeddings");
  export_hf(m, dir.file("t"), 0, &j);
  EXPECT_TRUE(load_model(dir.file("t")).config.tied_embeddings);
}

TEST(HfModel, BadConfigsRejected) {
  test::TempDir dir;
  const Model m = test::random_model(test::tiny_config(), 2);
  int counter = 0;
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = hf_config(m.config);
    edit(j);
    const std::string d =
        dir.file(fmt::format("m{}", counter++));  // (GCC 12 -Wrestrict on "m" + s)
    export_hf(m, d, 0, &j);
    return error_of([&] { load_model(d); });
  };
  EXPECT_THAT(with([](auto& j) { j.erase("hidden_size"); }), HasSubstr("'hidden_size'"));
  EXPECT_THAT(with([](auto& j) {
                j["architectures"] = {"GPT2LMHeadModel"};
                j["model_type"] = "gpt2";
              }),
              HasSubstr("unsupported architecture 'GPT2LMHeadModel'"));
  EXPECT_THAT(with([](auto& j) {
                j["rope_scaling"] = {{"rope_type", "llama3"}};
              }),
              HasSubstr("rope_scaling of type 'llama3'"));
  EXPECT_THAT(with([](auto& j) { j["num_key_value_heads"] = 3; }),
              HasSubstr("not a multiple of n_kv_heads"));
  EXPECT_THAT(with([](auto& j) { j["intermediate_size"] = 25; }),
              HasSubstr("w_gate: shape [24, 16], expected [25, 16]"));
}

}  // namespace
}  // namespace cdq
