// llama2.c legacy checkpoints as outputs: float32, written as an OutputFile.
#include <cdquant/error.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/output_file.hpp>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "model/llama2c.hpp"

namespace cdq {

void write_llama2c(const Model& m, const std::string& path) {
  OutputFile out(path);
  write_llama2c(m, out);
}

void write_llama2c(const Model& m, OutputFile& out) {
  const std::string& path = out.path();
  check_model(m);
  const ModelConfig& c = m.config;
  CDQ_CHECK(!c.qkv_bias, "{}: llama2.c checkpoints cannot hold q/k/v biases ({} model)", path,
            c.arch);
  CDQ_CHECK(c.q_dim() == c.dim, "{}: llama2.c needs n_heads * head_dim == dim (here {} * {} != {})",
            path, c.n_heads, c.head_dim, c.dim);
  CDQ_CHECK(c.rope_theta == 10000.0f && c.norm_eps == 1e-5f,
            "{}: llama2.c fixes rope_theta = 10000 and norm_eps = 1e-5 (model has {} and {})", path,
            c.rope_theta, c.norm_eps);
  CDQ_CHECK(c.dim <= kLlama2cMaxDim && c.hidden_dim <= kLlama2cMaxHidden &&
                c.n_layers <= kLlama2cMaxLayers && c.vocab_size <= kLlama2cMaxVocab &&
                c.max_seq_len <= kLlama2cMaxSeq,
            "{}: model too large for the llama2.c header limits", path);

  const Llama2cHeader h{c.dim,        c.hidden_dim,
                        c.n_layers,   c.n_heads,
                        c.n_kv_heads, c.tied_embeddings ? c.vocab_size : -c.vocab_size,
                        c.max_seq_len};
  out.write(&h, sizeof h);
  const auto floats = [&](std::span<const float> v) { out.write(v.data(), v.size_bytes()); };
  floats(m.tok_embeddings.span());
  auto each_block = [&](auto&& get) {
    for (const BlockWeights& b : m.blocks) floats(get(b));
  };
  each_block([](const BlockWeights& b) { return std::span<const float>(b.attn_norm); });
  each_block([](const BlockWeights& b) { return b.wq.span(); });
  each_block([](const BlockWeights& b) { return b.wk.span(); });
  each_block([](const BlockWeights& b) { return b.wv.span(); });
  each_block([](const BlockWeights& b) { return b.wo.span(); });
  each_block([](const BlockWeights& b) { return std::span<const float>(b.ffn_norm); });
  each_block([](const BlockWeights& b) { return b.w_gate.span(); });
  each_block([](const BlockWeights& b) { return b.w_down.span(); });
  each_block([](const BlockWeights& b) { return b.w_up.span(); });
  floats(m.final_norm);
  // Legacy RoPE tables, filled with the real values so that old readers that use them work.
  const int half = c.head_dim / 2;
  std::vector<float> cos_t(static_cast<size_t>(c.max_seq_len) * half);
  std::vector<float> sin_t(cos_t.size());
  for (int pos = 0; pos < c.max_seq_len; ++pos)
    for (int i = 0; i < half; ++i) {
      const double freq = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / c.head_dim);
      cos_t[static_cast<size_t>(pos) * half + i] = static_cast<float>(std::cos(pos * freq));
      sin_t[static_cast<size_t>(pos) * half + i] = static_cast<float>(std::sin(pos * freq));
    }
  floats(cos_t);
  floats(sin_t);
  if (!c.tied_embeddings) floats(m.output.span());
  out.commit();
}

}  // namespace cdq
