// Batched float32 forward pass: matrix products through BLAS (src/linalg), the rest as
// row-parallel OpenMP loops.
#include <algorithm>
#include <cdquant/forward.hpp>
#include <cmath>
#include <exception>

#include "linalg/linalg.hpp"
#include "model/forward_blocks.hpp"
#include "quant/ggml_quants.hpp"

namespace cdq {

namespace {

// Below this many floats of work, loops run on one thread: on a busy machine the barrier at
// the end of a parallel region costs far more than a small loop.
constexpr int64_t kParallelMin = 1 << 18;

// BLAS reads A and B only; MatrixView carries a mutable pointer for C's sake.
MatrixView cview(const Matrix& m) {
  return {const_cast<float*>(m.data.data()), m.rows, m.cols, m.cols};
}

void notify(const BlockInputsCallback* capture, BlockInput in, const Matrix& m) {
  if (capture != nullptr && *capture) (*capture)(in, m);
}

// x += y, both [T, dim].
void add_residual(const Matrix& y, Matrix& x) {
  CDQ_ASSERT(x.size() == y.size());
  for (int64_t i = 0; i < x.size(); ++i)
    x.data[static_cast<size_t>(i)] += y.data[static_cast<size_t>(i)];
}

// Queries per attention tile: the tile's scores [kQueryTile, keys] stay in cache, and the
// masked half of the diagonal tile (wasted products) is kQueryTile / (2 T) of the work.
constexpr int64_t kQueryTile = 128;

// One tile of causal attention for one head: queries t0..t0+rows of the window, keys 0..t0+rows.
// q, k, v, out point at the head's first column of the window's first row; ld* are row strides.
// s is scratch of rows * (t0 + rows) floats.
void attention_tile(const float* q, const float* k, const float* v, float* out, int64_t ldq,
                    int64_t ldkv, int64_t hd, int64_t t0, int64_t rows, float scale, float* s) {
  const int64_t keys = t0 + rows;
  const MatrixView sv{s, rows, keys, keys};
  // S = scale * Q K^T, [rows, keys].
  gemm(false, true, scale, {const_cast<float*>(q) + t0 * ldq, rows, hd, ldq},
       {const_cast<float*>(k), keys, hd, ldkv}, 0.0f, sv);
  // Row i sees keys 0..t0+i: a softmax stable under the row's maximum, zeros past the diagonal.
  for (int64_t i = 0; i < rows; ++i) {
    float* r = s + i * keys;
    const int64_t n = t0 + i + 1;
    const float mx = *std::max_element(r, r + n);
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) sum += (r[j] = std::exp(r[j] - mx));
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < n; ++j) r[j] *= inv;
    std::fill(r + n, r + keys, 0.0f);
  }
  // O = P V, [rows, hd].
  gemm(false, false, 1.0f, sv, {const_cast<float*>(v), keys, hd, ldkv}, 0.0f,
       {out + t0 * ldq, rows, hd, ldq});
}

}  // namespace

void causal_attention(const Matrix& q, const Matrix& k, const Matrix& v, int64_t T,
                      const ModelConfig& c, Matrix& out) {
  CDQ_ASSERT(q.rows % T == 0 && k.rows == q.rows && v.rows == q.rows);
  CDQ_ASSERT(q.cols == c.q_dim() && out.rows == q.rows && out.cols == q.cols);
  const int64_t hd = c.head_dim;
  const int rep = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n_seq = q.rows / T;
  const int64_t tiles = (T + kQueryTile - 1) / kQueryTile;
  const int64_t tasks = n_seq * c.n_heads * tiles;
  // Tasks in decreasing work (the last tiles see the most keys) so dynamic scheduling ends even.
  const bool parallel = tasks > 1 && n_seq * c.n_heads * T * T * hd >= 8 * kParallelMin;
  std::exception_ptr error;  // exceptions must not leave a parallel region
#pragma omp parallel if (parallel)
  {
    std::vector<float> s(static_cast<size_t>(kQueryTile * T));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      try {
        const int64_t tile = tiles - 1 - task / (n_seq * c.n_heads);
        const int64_t seq = task / c.n_heads % n_seq;
        const int64_t h = task % c.n_heads;
        const int64_t kv_col = h / rep * hd;
        const int64_t row0 = seq * T;
        const int64_t t0 = tile * kQueryTile;
        attention_tile(q.row(row0) + h * hd, k.row(row0) + kv_col, v.row(row0) + kv_col,
                       out.row(row0) + h * hd, q.cols, k.cols, hd, t0, std::min(kQueryTile, T - t0),
                       scale, s.data());
      } catch (...) {
#pragma omp critical(cdq_attention_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

void linear_forward(const Matrix& x, const Matrix& w, const std::vector<float>& bias, Matrix& y,
                    ActivationType act) {
  CDQ_ASSERT(x.cols == w.cols);
  if (y.rows != x.rows || y.cols != w.rows) y = Matrix(x.rows, w.rows);
  if (act == ActivationType::F32) {
    gemm(false, true, 1.0f, cview(x), cview(w), 0.0f, view(y));
  } else {
    Matrix r = x;
#pragma omp parallel for schedule(static) if (r.size() >= kParallelMin)
    for (int64_t t = 0; t < r.rows; ++t)
      round_activations(act, {r.row(t), static_cast<size_t>(r.cols)});
    gemm(false, true, 1.0f, cview(r), cview(w), 0.0f, view(y));
  }
  if (bias.empty()) return;
  CDQ_ASSERT(static_cast<int64_t>(bias.size()) == w.rows);
#pragma omp parallel for schedule(static) if (y.size() >= kParallelMin)
  for (int64_t t = 0; t < y.rows; ++t) {
    float* r = y.row(t);
    for (int64_t j = 0; j < y.cols; ++j) r[j] += bias[static_cast<size_t>(j)];
  }
}

BlockInput input_of(Linear l) {
  switch (l) {
    case Linear::Q:
    case Linear::K:
    case Linear::V:
      return BlockInput::AttnNorm;
    case Linear::O:
      return BlockInput::AttnOut;
    case Linear::Gate:
    case Linear::Up:
      return BlockInput::FfnNorm;
    case Linear::Down:
      return BlockInput::FfnAct;
  }
  CDQ_ASSERT(false);
  return BlockInput::AttnNorm;
}

const char* block_input_name(BlockInput in) {
  switch (in) {
    case BlockInput::AttnNorm:
      return "attn_norm";
    case BlockInput::AttnOut:
      return "attn_out";
    case BlockInput::FfnNorm:
      return "ffn_norm";
    case BlockInput::FfnAct:
      return "ffn_act";
  }
  return "?";
}

void rmsnorm_rows(const Matrix& x, std::span<const float> weight, float eps, Matrix& y) {
  CDQ_ASSERT(static_cast<int64_t>(weight.size()) == x.cols);
  if (y.rows != x.rows || y.cols != x.cols) y = Matrix(x.rows, x.cols);
#pragma omp parallel for schedule(static) if (x.size() >= kParallelMin)
  for (int64_t t = 0; t < x.rows; ++t) {
    const float* xr = x.row(t);
    float* yr = y.row(t);
    double ss = 0.0;
    for (int64_t j = 0; j < x.cols; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(x.cols) + eps));
    for (int64_t j = 0; j < x.cols; ++j) yr[j] = xr[j] * inv * weight[static_cast<size_t>(j)];
  }
}

void apply_rope(Matrix& x, int head_dim, float theta, int64_t seq_len, int64_t first_pos) {
  CDQ_ASSERT(head_dim % 2 == 0 && x.cols % head_dim == 0);
  if (seq_len <= 0) seq_len = x.rows;
  const int half = head_dim / 2;
  std::vector<double> freq(static_cast<size_t>(half));  // theta^(-2i / head_dim)
  for (int i = 0; i < half; ++i)
    freq[static_cast<size_t>(i)] = std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
  const int64_t n_heads = x.cols / head_dim;
#pragma omp parallel for schedule(static) if (x.size() >= kParallelMin)
  for (int64_t t = 0; t < x.rows; ++t) {
    const double pos = static_cast<double>(first_pos + t % seq_len);
    float* r = x.row(t);
    for (int i = 0; i < half; ++i) {
      const double a = pos * freq[static_cast<size_t>(i)];
      const float c = static_cast<float>(std::cos(a)), s = static_cast<float>(std::sin(a));
      for (int64_t h = 0; h < n_heads; ++h) {
        float* p = r + h * head_dim + 2 * i;
        const float x0 = p[0], x1 = p[1];
        p[0] = x0 * c - x1 * s;
        p[1] = x0 * s + x1 * c;
      }
    }
  }
}

Matrix embed_tokens(const Matrix& tok_embeddings, std::span<const int> tokens) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  Matrix x(T, tok_embeddings.cols);
  for (int64_t t = 0; t < T; ++t) {
    const int id = tokens[static_cast<size_t>(t)];
    CDQ_CHECK(id >= 0 && id < tok_embeddings.rows,
              "token id {} at position {} is outside the vocabulary [0, {})", id, t,
              tok_embeddings.rows);
    std::copy_n(tok_embeddings.row(id), x.cols, x.row(t));
  }
  return x;
}

void block_forward(const BlockWeights& b, const ModelConfig& c, Matrix& x,
                   const BlockInputsCallback* capture, int64_t seq_len) {
  CDQ_ASSERT(x.cols == c.dim);
  if (seq_len <= 0) seq_len = x.rows;
  CDQ_ASSERT(x.rows % seq_len == 0);

  // Attention.
  Matrix a, q, k, v, y;
  rmsnorm_rows(x, b.attn_norm, c.norm_eps, a);
  notify(capture, BlockInput::AttnNorm, a);
  linear_forward(a, b.wq, b.bq, q, act_of(b, Linear::Q));  // [T, q_dim]
  linear_forward(a, b.wk, b.bk, k, act_of(b, Linear::K));  // [T, kv_dim]
  linear_forward(a, b.wv, b.bv, v, act_of(b, Linear::V));  // [T, kv_dim]
  apply_rope(q, c.head_dim, c.rope_theta, seq_len);
  apply_rope(k, c.head_dim, c.rope_theta, seq_len);
  Matrix att(x.rows, c.q_dim());
  causal_attention(q, k, v, seq_len, c, att);
  notify(capture, BlockInput::AttnOut, att);
  linear_forward(att, b.wo, {}, y, act_of(b, Linear::O));  // [T, dim]
  add_residual(y, x);

  feed_forward(b, c, x, capture);
}

void feed_forward(const BlockWeights& b, const ModelConfig& c, Matrix& x,
                  const BlockInputsCallback* capture) {
  Matrix f, g, u, y;
  rmsnorm_rows(x, b.ffn_norm, c.norm_eps, f);
  notify(capture, BlockInput::FfnNorm, f);
  linear_forward(f, b.w_gate, {}, g, act_of(b, Linear::Gate));  // [T, hidden]
  linear_forward(f, b.w_up, {}, u, act_of(b, Linear::Up));      // [T, hidden]
#pragma omp parallel for schedule(static) if (g.size() >= kParallelMin)
  for (int64_t i = 0; i < g.size(); ++i) {
    const float z = g.data[static_cast<size_t>(i)];
    g.data[static_cast<size_t>(i)] = z / (1.0f + std::exp(-z)) * u.data[static_cast<size_t>(i)];
  }
  notify(capture, BlockInput::FfnAct, g);
  linear_forward(g, b.w_down, {}, y, act_of(b, Linear::Down));  // [T, dim]
  add_residual(y, x);
}

Matrix head_forward(const std::vector<float>& final_norm, const Matrix& classifier,
                    const ModelConfig& c, const Matrix& x, ActivationType act) {
  Matrix n, logits;
  rmsnorm_rows(x, final_norm, c.norm_eps, n);
  linear_forward(n, classifier, {}, logits, act);  // [T, vocab]
  return logits;
}

Matrix forward_logits(const Model& model, std::span<const int> tokens) {
  return forward_logits_batch(model, tokens, static_cast<int64_t>(tokens.size()));
}

Matrix forward_logits_batch(const Model& model, std::span<const int> tokens, int64_t seq_len) {
  const ModelConfig& c = model.config;
  CDQ_CHECK(!tokens.empty(), "forward: empty token window");
  CDQ_CHECK(seq_len > 0 && static_cast<int64_t>(tokens.size()) % seq_len == 0,
            "forward: {} tokens are not whole windows of {}", tokens.size(), seq_len);
  CDQ_CHECK(seq_len <= c.max_seq_len,
            "forward: window of {} tokens exceeds the model's max_seq_len {}", seq_len,
            c.max_seq_len);
  Matrix x = embed_tokens(model.tok_embeddings, tokens);
  for (const BlockWeights& b : model.blocks) block_forward(b, c, x, nullptr, seq_len);
  return head_forward(model.final_norm, model.classifier(), c, x, model.classifier_act);
}

void use_engine_activations(Model& model, bool on) {
  const auto act = [on](GgmlType t) { return on ? ggml_vec_dot_type(t) : ActivationType::F32; };
  for (BlockWeights& b : model.blocks)
    for (size_t i = 0; i < b.act.size(); ++i) b.act[i] = act(b.stored[i]);
  model.classifier_act = act(model.classifier_stored);
}

}  // namespace cdq
