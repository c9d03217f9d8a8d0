#include "support/reference_forward.hpp"

#include <cmath>

namespace cdq::test {

namespace {

using Vec = std::vector<double>;

Vec rmsnorm(const Vec& x, const std::vector<float>& w, double eps) {
  double ss = 0.0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

// out[r] = sum_c W[r][c] x[c] (+ b[r])
Vec matvec(const Matrix& w, const Vec& x, const std::vector<float>& b = {}) {
  Vec out(static_cast<size_t>(w.rows));
  for (int64_t r = 0; r < w.rows; ++r) {
    double s = b.empty() ? 0.0 : b[static_cast<size_t>(r)];
    for (int64_t c = 0; c < w.cols; ++c)
      s += static_cast<double>(w(r, c)) * x[static_cast<size_t>(c)];
    out[static_cast<size_t>(r)] = s;
  }
  return out;
}

// Rotates each pair (2i, 2i+1) of each head by pos * theta^(-2i / head_dim).
void rope(Vec& v, int head_dim, double theta, int pos) {
  for (size_t base = 0; base < v.size(); base += static_cast<size_t>(head_dim))
    for (int i = 0; i < head_dim; i += 2) {
      const double angle = pos * std::pow(theta, -static_cast<double>(i) / head_dim);
      const double a = v[base + i], b = v[base + i + 1];
      v[base + i] = a * std::cos(angle) - b * std::sin(angle);
      v[base + i + 1] = a * std::sin(angle) + b * std::cos(angle);
    }
}

}  // namespace

std::vector<std::vector<double>> reference_logits(const Model& m, std::span<const int> tokens) {
  const ModelConfig& c = m.config;
  const int hd = c.head_dim;
  const int group = c.n_heads / c.n_kv_heads;
  const size_t L = m.blocks.size();
  // KV cache: [layer][pos] -> key / value vectors of size kv_dim.
  std::vector<std::vector<Vec>> key_cache(L), value_cache(L);
  std::vector<std::vector<double>> result;

  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    Vec x(static_cast<size_t>(c.dim));
    for (int i = 0; i < c.dim; ++i) x[static_cast<size_t>(i)] = m.tok_embeddings(tokens[pos], i);

    for (size_t l = 0; l < L; ++l) {
      const BlockWeights& b = m.blocks[l];
      const Vec xa = rmsnorm(x, b.attn_norm, c.norm_eps);
      Vec q = matvec(b.wq, xa, b.bq);
      Vec k = matvec(b.wk, xa, b.bk);
      Vec v = matvec(b.wv, xa, b.bv);
      rope(q, hd, c.rope_theta, static_cast<int>(pos));
      rope(k, hd, c.rope_theta, static_cast<int>(pos));
      key_cache[l].push_back(k);
      value_cache[l].push_back(v);

      Vec att(static_cast<size_t>(c.q_dim()), 0.0);
      for (int h = 0; h < c.n_heads; ++h) {
        const size_t qo = static_cast<size_t>(h) * hd;
        const size_t ko = static_cast<size_t>(h / group) * hd;
        Vec score(pos + 1);
        double mx = -INFINITY;
        for (size_t s = 0; s <= pos; ++s) {
          double d = 0.0;
          for (int i = 0; i < hd; ++i) d += q[qo + i] * key_cache[l][s][ko + i];
          score[s] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, score[s]);
        }
        double z = 0.0;
        for (double& s : score) z += (s = std::exp(s - mx));
        for (size_t s = 0; s <= pos; ++s)
          for (int i = 0; i < hd; ++i) att[qo + i] += score[s] / z * value_cache[l][s][ko + i];
      }
      const Vec o = matvec(b.wo, att);
      for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];

      const Vec xf = rmsnorm(x, b.ffn_norm, c.norm_eps);
      const Vec g = matvec(b.w_gate, xf);
      const Vec u = matvec(b.w_up, xf);
      Vec act(g.size());
      for (size_t i = 0; i < g.size(); ++i) act[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      const Vec d = matvec(b.w_down, act);
      for (size_t i = 0; i < x.size(); ++i) x[i] += d[i];
    }
    result.push_back(matvec(m.classifier(), rmsnorm(x, m.final_norm, c.norm_eps)));
  }
  return result;
}

}  // namespace cdq::test
