#include "support/hf_model.hpp"

#include <cdquant/half.hpp>
#include <cdquant/rng.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "export/hf_writer.hpp"

namespace cdq::test {

void write_hf_model(const Model& m, const std::string& dir, DType dtype, uint64_t shard_bytes) {
  const ModelConfig& c = m.config;
  SafetensorsWriter w;
  auto mat = [&](const std::string& name, const Matrix& x) { w.add_matrix(name, x, dtype); };
  auto vec = [&](const std::string& name, const std::vector<float>& v) {
    w.add_floats(name, {static_cast<int64_t>(v.size())}, v, dtype);
  };
  mat("model.embed_tokens.weight", m.tok_embeddings);
  for (int l = 0; l < c.n_layers; ++l) {
    const BlockWeights& b = m.blocks[static_cast<size_t>(l)];
    const std::string p = fmt::format("model.layers.{}.", l);
    vec(p + "input_layernorm.weight", b.attn_norm);
    vec(p + "post_attention_layernorm.weight", b.ffn_norm);
    for (Linear lin : kAllLinears) {
      const bool qk = lin == Linear::Q || lin == Linear::K;
      const Matrix& x = b.linear(lin);
      mat(hf_linear_prefix(l, lin) + ".weight", qk ? interleaved_to_rotate_half(x, c.head_dim) : x);
    }
    if (c.qkv_bias) {
      vec(p + "self_attn.q_proj.bias", interleaved_to_rotate_half(b.bq, c.head_dim));
      vec(p + "self_attn.k_proj.bias", interleaved_to_rotate_half(b.bk, c.head_dim));
      vec(p + "self_attn.v_proj.bias", b.bv);
    }
  }
  vec("model.norm.weight", m.final_norm);
  if (!c.tied_embeddings) mat("lm_head.weight", m.output);
  std::filesystem::create_directories(dir);
  if (shard_bytes > 0)
    w.write_sharded(dir, shard_bytes);
  else
    w.write(dir + "/model.safetensors");
  const char* dt = dtype == DType::F32 ? "float32" : dtype == DType::F16 ? "float16" : "bfloat16";
  std::ofstream(dir + "/config.json") << hf_config_for(c, dt).dump(2);
  std::ofstream(dir + "/tokenizer_config.json") << R"({"model_max_length": 64})";
}

std::vector<float> rounded_to(std::span<const float> v, DType dtype) {
  std::vector<float> out(v.begin(), v.end());
  for (float& x : out) {
    if (dtype == DType::F16) x = fp16_to_float(float_to_fp16(x));
    if (dtype == DType::BF16) x = bf16_to_float(float_to_bf16(x));
  }
  return out;
}

Matrix rounded_to(const Matrix& m, DType dtype) {
  Matrix out = m;
  out.data = rounded_to(m.span(), dtype);
  return out;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

std::vector<std::vector<int>> random_windows(int vocab, int n, int seqlen, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<int>> windows(static_cast<size_t>(n));
  for (auto& w : windows) {
    w.push_back(1);
    while (static_cast<int>(w.size()) < seqlen)
      w.push_back(static_cast<int>(rng.below(static_cast<uint64_t>(vocab))));
  }
  return windows;
}

}  // namespace cdq::test
