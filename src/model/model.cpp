// Model bookkeeping: linear names and access, whole-model loading, shape checks.
#include <algorithm>
#include <cdquant/model.hpp>

namespace cdq {

const char* linear_name(Linear l) {
  switch (l) {
    case Linear::Q:
      return "q";
    case Linear::K:
      return "k";
    case Linear::V:
      return "v";
    case Linear::O:
      return "o";
    case Linear::Gate:
      return "gate";
    case Linear::Up:
      return "up";
    case Linear::Down:
      return "down";
  }
  return "?";
}

Matrix& BlockWeights::linear(Linear l) {
  return const_cast<Matrix&>(static_cast<const BlockWeights&>(*this).linear(l));
}

const Matrix& BlockWeights::linear(Linear l) const {
  switch (l) {
    case Linear::Q:
      return wq;
    case Linear::K:
      return wk;
    case Linear::V:
      return wv;
    case Linear::O:
      return wo;
    case Linear::Gate:
      return w_gate;
    case Linear::Up:
      return w_up;
    case Linear::Down:
      return w_down;
  }
  CDQ_ASSERT(false);
  return wq;
}

Model load_model(ModelReader& reader) {
  Model m;
  m.config = reader.config();
  m.tok_embeddings = reader.read_embeddings();
  m.blocks.reserve(static_cast<size_t>(m.config.n_layers));
  for (int l = 0; l < m.config.n_layers; ++l) m.blocks.push_back(reader.read_block(l));
  m.final_norm = reader.read_final_norm();
  m.output = reader.read_output();
  m.classifier_stored = reader.classifier_type();
  check_model(m);
  return m;
}

Model load_model(const std::string& path) {
  auto reader = open_model(path);
  return load_model(*reader);
}

void check_config(const ModelConfig& c) {
  CDQ_CHECK(c.dim > 0 && c.hidden_dim > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 &&
                c.head_dim > 0 && c.vocab_size > 0 && c.max_seq_len > 0,
            "model config: every size must be positive (dim {}, hidden_dim {}, n_layers {}, "
            "n_heads {}, n_kv_heads {}, head_dim {}, vocab_size {}, max_seq_len {})",
            c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size,
            c.max_seq_len);
  CDQ_CHECK(c.n_heads % c.n_kv_heads == 0,
            "model config: n_heads {} is not a multiple of n_kv_heads {}", c.n_heads, c.n_kv_heads);
  CDQ_CHECK(c.head_dim % 2 == 0, "model config: head_dim {} must be even for RoPE", c.head_dim);
  CDQ_CHECK(c.rope_theta > 0 && c.norm_eps > 0,
            "model config: rope_theta {} and norm_eps {} must be positive", c.rope_theta,
            c.norm_eps);
}

namespace {

void check_shape(const Matrix& m, int64_t rows, int64_t cols, const std::string& name) {
  CDQ_CHECK(m.rows == rows && m.cols == cols && static_cast<int64_t>(m.data.size()) == rows * cols,
            "model tensor {}: shape [{}, {}], expected [{}, {}]", name, m.rows, m.cols, rows, cols);
}

void check_vec(const std::vector<float>& v, int64_t n, const std::string& name) {
  CDQ_CHECK(static_cast<int64_t>(v.size()) == n, "model tensor {}: {} values, expected {}", name,
            v.size(), n);
}

}  // namespace

LinearShape linear_shape(const ModelConfig& c, Linear l) {
  switch (l) {
    case Linear::Q:
      return {c.q_dim(), c.dim};
    case Linear::K:
    case Linear::V:
      return {c.kv_dim(), c.dim};
    case Linear::O:
      return {c.dim, c.q_dim()};
    case Linear::Gate:
    case Linear::Up:
      return {c.hidden_dim, c.dim};
    case Linear::Down:
      return {c.dim, c.hidden_dim};
  }
  CDQ_ASSERT(false);
  return {};
}

void check_block(const BlockWeights& b, const ModelConfig& c, int l) {
  const std::string p = fmt::format("blocks.{}.", l);
  check_vec(b.attn_norm, c.dim, p + "attn_norm");
  check_vec(b.ffn_norm, c.dim, p + "ffn_norm");
  check_shape(b.wq, c.q_dim(), c.dim, p + "wq");
  check_shape(b.wk, c.kv_dim(), c.dim, p + "wk");
  check_shape(b.wv, c.kv_dim(), c.dim, p + "wv");
  check_shape(b.wo, c.dim, c.q_dim(), p + "wo");
  check_shape(b.w_gate, c.hidden_dim, c.dim, p + "w_gate");
  check_shape(b.w_up, c.hidden_dim, c.dim, p + "w_up");
  check_shape(b.w_down, c.dim, c.hidden_dim, p + "w_down");
  if (c.qkv_bias) {
    check_vec(b.bq, c.q_dim(), p + "bq");
    check_vec(b.bk, c.kv_dim(), p + "bk");
    check_vec(b.bv, c.kv_dim(), p + "bv");
  } else {
    CDQ_CHECK(b.bq.empty() && b.bk.empty() && b.bv.empty(),
              "model: {} has q/k/v biases but the config says qkv_bias = false", p);
  }
}

void check_model(const Model& m) {
  const ModelConfig& c = m.config;
  check_config(c);
  check_shape(m.tok_embeddings, c.vocab_size, c.dim, "tok_embeddings");
  CDQ_CHECK(static_cast<int>(m.blocks.size()) == c.n_layers, "model: {} blocks, expected {}",
            m.blocks.size(), c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) check_block(m.blocks[static_cast<size_t>(l)], c, l);
  check_vec(m.final_norm, c.dim, "final_norm");
  if (c.tied_embeddings)
    CDQ_CHECK(m.output.empty(), "model: tied embeddings but an output matrix is present");
  else
    check_shape(m.output, c.vocab_size, c.dim, "output");
}

namespace {

// Permutes the rows of each head block of [rows, cols] data (rows a multiple of head_dim).
std::vector<float> permute_head_rows(std::span<const float> src, int64_t rows, int64_t cols,
                                     int head_dim, bool to_interleaved) {
  CDQ_CHECK(head_dim > 0 && head_dim % 2 == 0 && rows % head_dim == 0,
            "q/k layout: {} rows are not whole heads of {} rows", rows, head_dim);
  const int64_t half = head_dim / 2;
  std::vector<float> out(src.size());
  for (int64_t h0 = 0; h0 < rows; h0 += head_dim)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t inter = h0 + 2 * i + j, rot = h0 + i + j * half;
        const int64_t from = to_interleaved ? rot : inter, to = to_interleaved ? inter : rot;
        std::copy_n(src.data() + from * cols, cols, out.data() + to * cols);
      }
  return out;
}

Matrix permute_matrix(const Matrix& w, int head_dim, bool to_interleaved) {
  Matrix out;
  out.rows = w.rows;
  out.cols = w.cols;
  out.data = permute_head_rows(w.span(), w.rows, w.cols, head_dim, to_interleaved);
  return out;
}

}  // namespace

Matrix rotate_half_to_interleaved(const Matrix& w, int head_dim) {
  return permute_matrix(w, head_dim, true);
}
Matrix interleaved_to_rotate_half(const Matrix& w, int head_dim) {
  return permute_matrix(w, head_dim, false);
}
std::vector<float> rotate_half_to_interleaved(const std::vector<float>& b, int head_dim) {
  return permute_head_rows(b, static_cast<int64_t>(b.size()), 1, head_dim, true);
}
std::vector<float> interleaved_to_rotate_half(const std::vector<float>& b, int head_dim) {
  return permute_head_rows(b, static_cast<int64_t>(b.size()), 1, head_dim, false);
}

}  // namespace cdq
