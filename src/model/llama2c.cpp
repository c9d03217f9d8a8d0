// llama2.c legacy checkpoint reader (memory-mapped, one block at a time) and writer.
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

// Limits against absurd header values (a corrupt or foreign file): far above any real model
// but low enough that every size below fits comfortably in 64 bits.
constexpr int32_t kMaxDim = 1 << 16;
constexpr int32_t kMaxHidden = 1 << 18;
constexpr int32_t kMaxLayers = 1 << 10;
constexpr int32_t kMaxVocab = 1 << 22;
constexpr int32_t kMaxSeq = 1 << 22;

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

// Buffered float writer. Writes to PATH.partial and renames on success, so that a failed
// write never leaves a truncated checkpoint under the real name.
class FloatWriter {
 public:
  explicit FloatWriter(const std::string& path)
      : path_(path), tmp_(path + ".partial"), out_(tmp_, std::ios::binary) {
    CDQ_CHECK(out_.good(), "{}: cannot open for writing", tmp_);
  }
  ~FloatWriter() {
    if (!done_) {
      out_.close();
      std::remove(tmp_.c_str());
    }
  }
  void raw(const void* p, size_t bytes) {
    out_.write(static_cast<const char*>(p), static_cast<std::streamsize>(bytes));
  }
  void floats(std::span<const float> v) { raw(v.data(), v.size() * sizeof(float)); }
  void finish() {
    out_.close();
    CDQ_CHECK(!out_.fail(), "{}: write failed (disk full?)", tmp_);
    CDQ_CHECK(std::rename(tmp_.c_str(), path_.c_str()) == 0, "{}: cannot rename {} to it", path_,
              tmp_);
    done_ = true;
  }

 private:
  std::string path_, tmp_;
  std::ofstream out_;
  bool done_ = false;
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
  CDQ_CHECK(h.dim <= kMaxDim && h.hidden_dim <= kMaxHidden && h.n_layers <= kMaxLayers &&
                h.n_heads <= h.dim && h.vocab_size >= -kMaxVocab && h.vocab_size <= kMaxVocab &&
                h.seq_len <= kMaxSeq,
            "{}: bad llama2.c header ({}): values beyond any plausible model (limits: dim {}, "
            "hidden_dim {}, n_layers {}, n_heads <= dim, |vocab_size| {}, seq_len {})",
            what, header_text(), kMaxDim, kMaxHidden, kMaxLayers, kMaxVocab, kMaxSeq);
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

void write_llama2c(const Model& m, const std::string& path) {
  check_model(m);
  const ModelConfig& c = m.config;
  CDQ_CHECK(!c.qkv_bias, "{}: llama2.c checkpoints cannot hold q/k/v biases ({} model)", path,
            c.arch);
  CDQ_CHECK(c.q_dim() == c.dim, "{}: llama2.c needs n_heads * head_dim == dim (here {} * {} != {})",
            path, c.n_heads, c.head_dim, c.dim);
  CDQ_CHECK(c.rope_theta == 10000.0f && c.norm_eps == 1e-5f,
            "{}: llama2.c fixes rope_theta = 10000 and norm_eps = 1e-5 (model has {} and {})", path,
            c.rope_theta, c.norm_eps);
  CDQ_CHECK(c.dim <= kMaxDim && c.hidden_dim <= kMaxHidden && c.n_layers <= kMaxLayers &&
                c.vocab_size <= kMaxVocab && c.max_seq_len <= kMaxSeq,
            "{}: model too large for the llama2.c header limits", path);

  const Llama2cHeader h{c.dim,        c.hidden_dim,
                        c.n_layers,   c.n_heads,
                        c.n_kv_heads, c.tied_embeddings ? c.vocab_size : -c.vocab_size,
                        c.max_seq_len};
  FloatWriter out(path);
  out.raw(&h, sizeof h);
  out.floats(m.tok_embeddings.span());
  auto each_block = [&](auto&& get) {
    for (const BlockWeights& b : m.blocks) out.floats(get(b));
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
  out.floats(m.final_norm);
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
  out.floats(cos_t);
  out.floats(sin_t);
  if (!c.tied_embeddings) out.floats(m.output.span());
  out.finish();
}

}  // namespace cdq
