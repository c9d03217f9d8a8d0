// llama2.c legacy checkpoint reader (memory-mapped, one block at a time); the writer is
// src/export/llama2c_writer.cpp.
#include "model/llama2c.hpp"

#include <bit>
#include <cdquant/error.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "io/mapped_file.hpp"

namespace cdq {

static_assert(std::endian::native == std::endian::little,
              "llama2.c checkpoints are little-endian; big-endian hosts are not supported");

namespace {

// Offsets in floats from the end of the header of each stacked array.
struct Layout {
  int64_t emb, attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, final_norm, rope, output, end;
};

Layout layout_of(const ModelConfig& c) {
  const int64_t d = c.dim, h = c.hidden_dim, n = c.n_layers, kv = c.kv_dim(), q = c.q_dim();
  const int64_t v = c.vocab_size;
  Layout l{};
  int64_t at = 0;
  auto take = [&at](int64_t count) {
    const int64_t here = at;
    at += count;
    return here;
  };
  l.emb = take(v * d);
  l.attn_norm = take(n * d);
  l.wq = take(n * q * d);
  l.wk = take(n * kv * d);
  l.wv = take(n * kv * d);
  l.wo = take(n * d * q);
  l.ffn_norm = take(n * d);
  l.w1 = take(n * h * d);
  l.w2 = take(n * d * h);
  l.w3 = take(n * h * d);
  l.final_norm = take(d);
  // Legacy cos and sin tables: seq_len * head_size / 2 floats each, skipped on read.
  l.rope = take(2 * static_cast<int64_t>(c.max_seq_len) * c.head_dim / 2);
  l.output = take(c.tied_embeddings ? 0 : v * d);
  l.end = at;
  return l;
}

class Llama2cReader final : public ModelReader {
 public:
  explicit Llama2cReader(const std::string& path) : file_(path) {
    CDQ_CHECK(file_.size() >= kLlama2cHeaderBytes,
              "{}: not a llama2.c checkpoint: {} bytes, shorter than the 28-byte header", path,
              file_.size());
    Llama2cHeader h{};
    std::memcpy(&h, file_.data(), sizeof h);
    config_ = llama2c_config(h, path);
    layout_ = layout_of(config_);
    const uint64_t expected = llama2c_file_bytes(config_);
    CDQ_CHECK(file_.size() == expected,
              "{}: llama2.c checkpoint size mismatch: the header (dim {}, hidden_dim {}, "
              "n_layers {}, n_heads {}, n_kv_heads {}, vocab_size {}, seq_len {}) implies {} "
              "bytes but the file has {} bytes ({})",
              path, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size,
              h.seq_len, expected, file_.size(),
              file_.size() < expected ? "truncated" : "trailing data");
  }

  const ModelConfig& config() const override { return config_; }
  std::string format() const override { return "llama2c"; }

  Matrix read_embeddings() override {
    return matrix_at(layout_.emb, config_.vocab_size, config_.dim);
  }

  BlockWeights read_block(int layer) override {
    const ModelConfig& c = config_;
    CDQ_CHECK(layer >= 0 && layer < c.n_layers, "{}: layer {} out of range (n_layers {})",
              file_.path(), layer, c.n_layers);
    const int64_t l = layer, d = c.dim, h = c.hidden_dim, q = c.q_dim(), kv = c.kv_dim();
    BlockWeights b;
    b.attn_norm = vector_at(layout_.attn_norm + l * d, d);
    b.wq = matrix_at(layout_.wq + l * q * d, q, d);
    b.wk = matrix_at(layout_.wk + l * kv * d, kv, d);
    b.wv = matrix_at(layout_.wv + l * kv * d, kv, d);
    b.wo = matrix_at(layout_.wo + l * d * q, d, q);
    b.ffn_norm = vector_at(layout_.ffn_norm + l * d, d);
    b.w_gate = matrix_at(layout_.w1 + l * h * d, h, d);
    b.w_down = matrix_at(layout_.w2 + l * d * h, d, h);
    b.w_up = matrix_at(layout_.w3 + l * h * d, h, d);
    return b;
  }

  std::vector<float> read_final_norm() override {
    return vector_at(layout_.final_norm, config_.dim);
  }

  Matrix read_output() override {
    if (config_.tied_embeddings) return {};
    return matrix_at(layout_.output, config_.vocab_size, config_.dim);
  }

 private:
  void copy_floats(int64_t offset, int64_t count, float* out) const {
    const auto bytes = file_.range(kLlama2cHeaderBytes + 4 * static_cast<uint64_t>(offset),
                                   4 * static_cast<uint64_t>(count));
    std::memcpy(out, bytes.data(), bytes.size());
  }
  Matrix matrix_at(int64_t offset, int64_t rows, int64_t cols) const {
    Matrix m(rows, cols);
    copy_floats(offset, rows * cols, m.data.data());
    return m;
  }
  std::vector<float> vector_at(int64_t offset, int64_t count) const {
    std::vector<float> v(static_cast<size_t>(count));
    copy_floats(offset, count, v.data());
    return v;
  }

  MappedFile file_;
  ModelConfig config_;
  Layout layout_{};
};

}  // namespace

ModelConfig llama2c_config(const Llama2cHeader& h, const std::string& what) {
  const auto header_text = [&] {
    return fmt::format(
        "dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, "
        "vocab_size {}, seq_len {}",
        h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len);
  };
  CDQ_CHECK(h.dim > 0 && h.hidden_dim > 0 && h.n_layers > 0 && h.n_heads > 0 && h.n_kv_heads > 0 &&
                h.vocab_size != 0 && h.seq_len > 0,
            "{}: bad llama2.c header ({}): sizes must be positive", what, header_text());
  CDQ_CHECK(h.dim <= kLlama2cMaxDim && h.hidden_dim <= kLlama2cMaxHidden &&
                h.n_layers <= kLlama2cMaxLayers && h.n_heads <= h.dim &&
                h.vocab_size >= -kLlama2cMaxVocab && h.vocab_size <= kLlama2cMaxVocab &&
                h.seq_len <= kLlama2cMaxSeq,
            "{}: bad llama2.c header ({}): values beyond any plausible model (limits: dim {}, "
            "hidden_dim {}, n_layers {}, n_heads <= dim, |vocab_size| {}, seq_len {})",
            what, header_text(), kLlama2cMaxDim, kLlama2cMaxHidden, kLlama2cMaxLayers,
            kLlama2cMaxVocab, kLlama2cMaxSeq);
  CDQ_CHECK(h.dim % h.n_heads == 0,
            "{}: bad llama2.c header ({}): dim is not a multiple of "
            "n_heads",
            what, header_text());
  CDQ_CHECK(h.n_heads % h.n_kv_heads == 0,
            "{}: bad llama2.c header ({}): n_heads is not a multiple of n_kv_heads", what,
            header_text());
  CDQ_CHECK((h.dim / h.n_heads) % 2 == 0,
            "{}: bad llama2.c header ({}): head size dim / n_heads must be even for RoPE", what,
            header_text());
  ModelConfig c;
  c.arch = "llama";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.vocab_size = h.vocab_size < 0 ? -h.vocab_size : h.vocab_size;
  c.tied_embeddings = h.vocab_size > 0;
  c.max_seq_len = h.seq_len;
  c.rope_theta = 10000.0f;
  c.norm_eps = 1e-5f;
  return c;
}

uint64_t llama2c_file_bytes(const ModelConfig& c) {
  return kLlama2cHeaderBytes + 4 * static_cast<uint64_t>(layout_of(c).end);
}

std::unique_ptr<ModelReader> open_llama2c(const std::string& path) {
  return std::make_unique<Llama2cReader>(path);
}

}  // namespace cdq
