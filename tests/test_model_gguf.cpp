// GGUF files as models: llama (interleaved q/k as llama.cpp stores them) and qwen2 (rotate-half
// q/k and biases) written with the GGUF writer load back exactly; block-quantized tensors come
// out dequantized; unsupported architectures are rejected by name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/forward.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/model.hpp>
#include <cstring>
#include <map>

#include "quant/ggml_quants.hpp"
#include "support/errors.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;

using test::error_of;

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

// Writes a model as llama.cpp would: q/k rows interleaved for llama, rotate-half for qwen2.
// Tensors listed in `types` are stored in that ggml type (default F32).
void export_gguf(const Model& m, const std::string& path, const std::string& arch,
                 const std::map<std::string, GgmlType>& types = {}) {
  const ModelConfig& c = m.config;
  const bool rot = arch == "qwen2";
  std::vector<std::pair<std::string, Matrix>> tensors;
  auto mat = [&](const std::string& name, Matrix w) { tensors.emplace_back(name, std::move(w)); };
  auto vec = [&](const std::string& name, const std::vector<float>& v) {
    Matrix w(1, static_cast<int64_t>(v.size()));
    w.data = v;
    tensors.emplace_back(name, std::move(w));
  };
  mat("token_embd.weight", m.tok_embeddings);
  for (int l = 0; l < c.n_layers; ++l) {
    const BlockWeights& b = m.blocks[static_cast<size_t>(l)];
    const std::string p = fmt::format("blk.{}.", l);
    vec(p + "attn_norm.weight", b.attn_norm);
    mat(p + "attn_q.weight", rot ? interleaved_to_rotate_half(b.wq, c.head_dim) : b.wq);
    mat(p + "attn_k.weight", rot ? interleaved_to_rotate_half(b.wk, c.head_dim) : b.wk);
    mat(p + "attn_v.weight", b.wv);
    mat(p + "attn_output.weight", b.wo);
    vec(p + "ffn_norm.weight", b.ffn_norm);
    mat(p + "ffn_gate.weight", b.w_gate);
    mat(p + "ffn_up.weight", b.w_up);
    mat(p + "ffn_down.weight", b.w_down);
    if (c.qkv_bias) {
      vec(p + "attn_q.bias", rot ? interleaved_to_rotate_half(b.bq, c.head_dim) : b.bq);
      vec(p + "attn_k.bias", rot ? interleaved_to_rotate_half(b.bk, c.head_dim) : b.bk);
      vec(p + "attn_v.bias", b.bv);
    }
  }
  vec("output_norm.weight", m.final_norm);
  if (!c.tied_embeddings) mat("output.weight", m.output);

  GgufWriter w(path);
  auto u32 = [](int v) { return GgufValue::scalar(static_cast<uint32_t>(v)); };
  w.set("general.architecture", GgufValue::string(arch));
  w.set(arch + ".context_length", u32(c.max_seq_len));
  w.set(arch + ".embedding_length", u32(c.dim));
  w.set(arch + ".block_count", u32(c.n_layers));
  w.set(arch + ".feed_forward_length", u32(c.hidden_dim));
  w.set(arch + ".rope.dimension_count", u32(c.head_dim));
  w.set(arch + ".attention.head_count", u32(c.n_heads));
  w.set(arch + ".attention.head_count_kv", u32(c.n_kv_heads));
  w.set(arch + ".attention.layer_norm_rms_epsilon", GgufValue::scalar(c.norm_eps));
  w.set(arch + ".rope.freq_base", GgufValue::scalar(c.rope_theta));
  std::vector<std::vector<uint8_t>> bytes;
  for (const auto& [name, t] : tensors) {
    const auto it = types.find(name);
    const GgmlType type = it == types.end() ? GgmlType::F32 : it->second;
    w.add_tensor(name, {static_cast<uint64_t>(t.cols), static_cast<uint64_t>(t.rows)}, type);
    bytes.push_back(quantize_reference(type, t));
  }
  w.write_header();
  for (size_t i = 0; i < tensors.size(); ++i) w.write_tensor(tensors[i].first, bytes[i]);
  w.finish();
}

void expect_same_model(const Model& a, const Model& b) {
  EXPECT_EQ(a.config.dim, b.config.dim);
  EXPECT_EQ(a.config.n_kv_heads, b.config.n_kv_heads);
  EXPECT_EQ(a.config.vocab_size, b.config.vocab_size);
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
    EXPECT_TRUE(same_bits(a.blocks[l].ffn_norm, b.blocks[l].ffn_norm));
  }
  EXPECT_TRUE(same_bits(a.final_norm, b.final_norm));
  EXPECT_TRUE(same_bits(a.output.span(), b.output.span()));
}

TEST(GgufModel, StoriesAsLlamaGgufLoadsBitExact) {
  test::TempDir dir;
  const Model m = load_model(test::stories260k_path());
  export_gguf(m, dir.file("s.gguf"), "llama");
  auto reader = open_model(dir.file("s.gguf"));
  EXPECT_EQ(reader->format(), "gguf");
  expect_same_model(m, load_model(*reader));
}

TEST(GgufModel, Qwen2WithBiasesLoadsBitExact) {
  test::TempDir dir;
  ModelConfig c = test::tiny_config(32, 48, 2, 4, 2, 70, 64);
  c.arch = "qwen2";
  c.qkv_bias = true;
  c.tied_embeddings = false;
  c.rope_theta = 1e6f;
  c.norm_eps = 1e-6f;
  const Model m = test::random_model(c, 9);
  export_gguf(m, dir.file("q.gguf"), "qwen2");
  const Model back = load_model(dir.file("q.gguf"));
  expect_same_model(m, back);
  const std::vector<int> tokens = {1, 4, 9, 16, 25, 36, 49};
  EXPECT_TRUE(same_bits(forward_logits(m, tokens).span(), forward_logits(back, tokens).span()));
}

TEST(GgufModel, QuantizedTensorsAreDequantized) {
  test::TempDir dir;
  const Model m = test::random_model(test::tiny_config(64, 64, 1, 4, 2, 40, 32), 4);
  export_gguf(m, dir.file("q8.gguf"), "llama",
              {{"blk.0.attn_q.weight", GgmlType::Q8_0}, {"blk.0.ffn_down.weight", GgmlType::Q4_0}});
  const Model back = load_model(dir.file("q8.gguf"));
  const BlockWeights& b = m.blocks[0];
  const Matrix q8 = dequantize_tensor(GgmlType::Q8_0, quantize_reference(GgmlType::Q8_0, b.wq),
                                      b.wq.rows, b.wq.cols);
  const Matrix q4 = dequantize_tensor(GgmlType::Q4_0, quantize_reference(GgmlType::Q4_0, b.w_down),
                                      b.w_down.rows, b.w_down.cols);
  EXPECT_TRUE(same_bits(back.blocks[0].wq.span(), q8.span()));
  EXPECT_TRUE(same_bits(back.blocks[0].w_down.span(), q4.span()));
  EXPECT_FALSE(same_bits(back.blocks[0].wq.span(), b.wq.span()));  // really quantized
  EXPECT_TRUE(same_bits(back.blocks[0].wk.span(), b.wk.span()));
}

TEST(GgufModel, UnsupportedArchitectureRejected) {
  test::TempDir dir;
  GgufWriter w(dir.file("g.gguf"));
  w.set("general.architecture", GgufValue::string("gpt2"));
  w.write_header();
  w.finish();
  EXPECT_THAT(error_of([&] { open_model(dir.file("g.gguf")); }),
              HasSubstr("GGUF architecture 'gpt2' is not supported"));
}

}  // namespace
}  // namespace cdq
