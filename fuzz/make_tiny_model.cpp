// Writes a tiny random llama2.c checkpoint (dim 16, FFN 32, one layer, 4 heads over 2 KV
// heads, context 32) with the library's own writer: fuzz/make_corpus.sh turns it into GGUF and
// GPTQ files with cdquant, so the corpora also hold inputs of a few KB, which libFuzzer
// mutates far faster than stories260K's megabyte.
// Usage: make_tiny_model OUT.bin VOCAB
#include <cdquant/error.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/rng.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace {

cdq::Matrix random_matrix(cdq::Rng& rng, int64_t rows, int64_t cols) {
  cdq::Matrix m(rows, cols);
  const double s = 1.0 / std::sqrt(static_cast<double>(cols));
  for (float& v : m.data) v = static_cast<float>(rng.normal() * s);
  return m;
}

std::vector<float> random_norm(cdq::Rng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(1.0 + 0.1 * rng.normal());
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_tiny_model OUT.bin VOCAB\n");
    return 2;
  }
  cdq::Model m;
  cdq::ModelConfig& c = m.config;
  c.dim = 16;
  c.hidden_dim = 32;
  c.n_layers = 1;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.vocab_size = std::atoi(argv[2]);
  c.max_seq_len = 32;
  cdq::Rng rng(1);
  m.tok_embeddings = random_matrix(rng, c.vocab_size, c.dim);
  cdq::BlockWeights b;
  b.attn_norm = random_norm(rng, c.dim);
  b.ffn_norm = random_norm(rng, c.dim);
  for (cdq::Linear l : cdq::kAllLinears) {
    const auto s = cdq::linear_shape(c, l);
    b.linear(l) = random_matrix(rng, s.out, s.in);
  }
  m.blocks.push_back(std::move(b));
  m.final_norm = random_norm(rng, c.dim);
  try {
    cdq::write_llama2c(m, argv[1]);
  } catch (const cdq::Error& e) {
    std::fprintf(stderr, "make_tiny_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
