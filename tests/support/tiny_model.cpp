#include "support/tiny_model.hpp"

#include <cdquant/rng.hpp>
#include <cmath>

#include "support/paths.hpp"

namespace cdq::test {

ModelConfig tiny_config(int dim, int hidden, int n_layers, int n_heads, int n_kv_heads, int vocab,
                        int seq_len) {
  ModelConfig c;
  c.dim = dim;
  c.hidden_dim = hidden;
  c.n_layers = n_layers;
  c.n_heads = n_heads;
  c.n_kv_heads = n_kv_heads;
  c.head_dim = dim / n_heads;
  c.vocab_size = vocab;
  c.max_seq_len = seq_len;
  return c;
}

std::vector<int> random_tokens(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(static_cast<size_t>(n));
  for (int& x : t) x = static_cast<int>(rng.below(static_cast<uint64_t>(vocab)));
  return t;
}

namespace {

Matrix random_matrix(Rng& rng, int64_t rows, int64_t cols) {
  Matrix m(rows, cols);
  const double s = 1.0 / std::sqrt(static_cast<double>(cols));
  for (float& v : m.data) v = static_cast<float>(rng.normal() * s);
  return m;
}

std::vector<float> random_norm(Rng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(1.0 + 0.1 * rng.normal());
  return v;
}

std::vector<float> random_bias(Rng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(0.1 * rng.normal());
  return v;
}

}  // namespace

Model random_model(const ModelConfig& c, uint64_t seed) {
  Rng rng(seed);
  Model m;
  m.config = c;
  m.tok_embeddings = random_matrix(rng, c.vocab_size, c.dim);
  for (float& v : m.tok_embeddings.data) v *= 4.0f;  // embeddings of unit scale
  for (int l = 0; l < c.n_layers; ++l) {
    BlockWeights b;
    b.attn_norm = random_norm(rng, c.dim);
    b.wq = random_matrix(rng, c.q_dim(), c.dim);
    b.wk = random_matrix(rng, c.kv_dim(), c.dim);
    b.wv = random_matrix(rng, c.kv_dim(), c.dim);
    b.wo = random_matrix(rng, c.dim, c.q_dim());
    if (c.qkv_bias) {
      b.bq = random_bias(rng, c.q_dim());
      b.bk = random_bias(rng, c.kv_dim());
      b.bv = random_bias(rng, c.kv_dim());
    }
    b.ffn_norm = random_norm(rng, c.dim);
    b.w_gate = random_matrix(rng, c.hidden_dim, c.dim);
    b.w_up = random_matrix(rng, c.hidden_dim, c.dim);
    b.w_down = random_matrix(rng, c.dim, c.hidden_dim);
    m.blocks.push_back(std::move(b));
  }
  m.final_norm = random_norm(rng, c.dim);
  if (!c.tied_embeddings) m.output = random_matrix(rng, c.vocab_size, c.dim);
  return m;
}

std::string stories260k_path() {
  return shared_dir() + "/models/stories260K.bin";
}
std::string babyllama_path() {
  return shared_dir() + "/models/babyllama-tok105/model5000.bin";
}

std::vector<ModelConfig> odd_shape_configs() {
  ModelConfig gqa = tiny_config(32, 48, 2, 8, 2, 60, 64);
  ModelConfig biased = tiny_config(32, 40, 2, 4, 2, 50, 64);
  biased.qkv_bias = true;
  biased.head_dim = 16;  // q_dim 64 != dim 32
  ModelConfig untied = tiny_config(16, 24, 2, 2, 1, 40, 64);
  untied.tied_embeddings = false;
  return {gqa, biased, untied};
}

}  // namespace cdq::test
