// Decoding with a KV cache: one token per step through the same building blocks as the batched
// forward pass (linear_forward, apply_rope, feed_forward, head_forward).
#include <algorithm>
#include <cdquant/decoder.hpp>
#include <cdquant/error.hpp>
#include <cdquant/forward.hpp>
#include <cmath>

#include "model/forward_blocks.hpp"

namespace cdq {

// The cache grows with the positions used (doubling, capped at max_seq_len) instead of holding
// max_seq_len rows from the start: a GGUF may claim a context of millions of tokens, and
// generate uses prompt + max_tokens of them.
Decoder::Decoder(const Model& model) : model_(model) {
  const ModelConfig& c = model.config;
  keys_.assign(static_cast<size_t>(c.n_layers), Matrix(0, c.kv_dim()));
  values_.assign(static_cast<size_t>(c.n_layers), Matrix(0, c.kv_dim()));
}

void Decoder::reserve_position(int64_t pos) {
  if (keys_.empty() || pos < keys_.front().rows) return;
  const int64_t rows =
      std::min<int64_t>(std::max<int64_t>(2 * keys_.front().rows, 64), model_.config.max_seq_len);
  for (auto* cache : {&keys_, &values_})
    for (Matrix& m : *cache) {
      m.data.resize(static_cast<size_t>(rows * m.cols));
      m.rows = rows;
    }
}

// out [1, q_dim]: every query head of q [1, q_dim] over cached positions 0..pos_ of its kv
// head (head h reads kv head h / (n_heads / n_kv_heads)).
void Decoder::attend(const Matrix& q, int64_t layer, Matrix& out) const {
  const ModelConfig& c = model_.config;
  const Matrix& k = keys_[static_cast<size_t>(layer)];
  const Matrix& v = values_[static_cast<size_t>(layer)];
  const int hd = c.head_dim;
  const int rep = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n = pos_ + 1;
  std::vector<float> p(static_cast<size_t>(n));
  for (int h = 0; h < c.n_heads; ++h) {
    const float* qh = q.row(0) + h * hd;
    const int64_t col = static_cast<int64_t>(h / rep) * hd;
    for (int64_t s = 0; s < n; ++s) {
      float dot = 0.0f;
      for (int i = 0; i < hd; ++i) dot += qh[i] * k(s, col + i);
      p[static_cast<size_t>(s)] = dot * scale;
    }
    const float mx = *std::max_element(p.begin(), p.end());
    float sum = 0.0f;
    for (float& x : p) sum += (x = std::exp(x - mx));
    float* o = out.row(0) + h * hd;
    std::fill(o, o + hd, 0.0f);
    for (int64_t s = 0; s < n; ++s) {
      const float w = p[static_cast<size_t>(s)] / sum;
      for (int i = 0; i < hd; ++i) o[i] += w * v(s, col + i);
    }
  }
}

std::span<const float> Decoder::step(int token) {
  const ModelConfig& c = model_.config;
  CDQ_CHECK(pos_ < c.max_seq_len, "decode: position {} is past the model's max_seq_len {}", pos_,
            c.max_seq_len);
  CDQ_CHECK(token >= 0 && token < model_.tok_embeddings.rows,
            "decode: token id {} at position {} is outside the vocabulary [0, {})", token, pos_,
            model_.tok_embeddings.rows);
  reserve_position(pos_);
  const int ids[1] = {token};
  Matrix x = embed_tokens(model_.tok_embeddings, ids);  // [1, dim]
  Matrix a, q, kv, att(1, c.q_dim()), y;
  for (size_t l = 0; l < model_.blocks.size(); ++l) {
    const BlockWeights& b = model_.blocks[l];
    rmsnorm_rows(x, b.attn_norm, c.norm_eps, a);
    linear_forward(a, b.wq, b.bq, q, act_of(b, Linear::Q));  // [1, q_dim]
    apply_rope(q, c.head_dim, c.rope_theta, 1, pos_);
    linear_forward(a, b.wk, b.bk, kv, act_of(b, Linear::K));  // [1, kv_dim]
    apply_rope(kv, c.head_dim, c.rope_theta, 1, pos_);
    std::copy_n(kv.row(0), kv.cols, keys_[l].row(pos_));
    linear_forward(a, b.wv, b.bv, kv, act_of(b, Linear::V));
    std::copy_n(kv.row(0), kv.cols, values_[l].row(pos_));
    attend(q, static_cast<int64_t>(l), att);
    linear_forward(att, b.wo, {}, y, act_of(b, Linear::O));  // [1, dim]
    for (int64_t i = 0; i < x.cols; ++i) x(0, i) += y(0, i);
    feed_forward(b, c, x);
  }
  ++pos_;
  logits_ = head_forward(model_.final_norm, model_.classifier(), c, x, model_.classifier_act);
  return {logits_.row(0), static_cast<size_t>(logits_.cols)};
}

}  // namespace cdq
