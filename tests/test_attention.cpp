// The BLAS-tiled causal attention (causal_attention) against the scalar loops it replaced
// (kept here as the reference), to a tolerance derived from float32 rounding.
//
// Tolerance. Both compute o_t = sum_s p_ts v_s with p_t = softmax(scale * q_t . k_s), s <= t,
// in float32 (u = 2^-24, gamma_n = n u / (1 - n u)). A score is a dot product of head_dim
// terms then scaled: its error is at most delta = gamma_{hd+2} * A with A = max over (t, s) of
// scale * sum_i |q_ti k_si|. Moving every score by at most delta moves each weight p by a
// relative 2 delta (numerator and normaliser), and exp, the sum over <= T keys and the division
// add gamma_{T+4}; the weighted sum of values adds gamma_T relative to sum_s p |v_s|
// <= max |v|. So each implementation is within E = max|v| (2 delta + 2 gamma_{T+4}) of the
// exact value per output, and the two within 2E. That is a few 1e-5 here, while a wrong mask,
// tile edge or kv head moves outputs by O(max |v|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cdquant/rng.hpp>
#include <cmath>

#include "model/forward_blocks.hpp"

namespace cdq {
namespace {

// The scalar implementation before BLAS tiles: per (sequence, kv head), K and V transposed,
// then one query at a time.
void scalar_attention(const Matrix& q, const Matrix& k, const Matrix& v, int64_t T,
                      const ModelConfig& c, Matrix& out) {
  const int hd = c.head_dim;
  const int rep = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n_seq = q.rows / T;
  std::vector<float> kt(static_cast<size_t>(hd * T)), vt(static_cast<size_t>(hd * T));
  std::vector<float> p(static_cast<size_t>(T));
  for (int64_t task = 0; task < n_seq * c.n_kv_heads; ++task) {
    const int64_t row0 = (task / c.n_kv_heads) * T;
    const int64_t kvh = task % c.n_kv_heads;
    for (int64_t s = 0; s < T; ++s)
      for (int i = 0; i < hd; ++i) {
        kt[static_cast<size_t>(i * T + s)] = k(row0 + s, kvh * hd + i);
        vt[static_cast<size_t>(i * T + s)] = v(row0 + s, kvh * hd + i);
      }
    for (int64_t h = kvh * rep; h < (kvh + 1) * rep; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const float* qr = q.row(row0 + t) + h * hd;
        const int64_t n = t + 1;
        std::fill(p.begin(), p.begin() + n, 0.0f);
        for (int i = 0; i < hd; ++i) {
          const float qi = qr[i] * scale;
          for (int64_t s = 0; s < n; ++s)
            p[static_cast<size_t>(s)] += qi * kt[static_cast<size_t>(i * T + s)];
        }
        const float mx = *std::max_element(p.begin(), p.begin() + n);
        float sum = 0.0f;
        for (int64_t s = 0; s < n; ++s)
          sum += (p[static_cast<size_t>(s)] = std::exp(p[static_cast<size_t>(s)] - mx));
        float* o = out.row(row0 + t) + h * hd;
        for (int i = 0; i < hd; ++i) {
          float acc = 0.0f;
          for (int64_t s = 0; s < n; ++s)
            acc += p[static_cast<size_t>(s)] * vt[static_cast<size_t>(i * T + s)];
          o[i] = acc / sum;
        }
      }
  }
}

Matrix random_matrix(int64_t rows, int64_t cols, double sigma, uint64_t seed) {
  Rng rng(seed);
  Matrix m(rows, cols);
  for (float& x : m.data) x = static_cast<float>(sigma * rng.normal());
  return m;
}

double gamma(double n) {
  const double u = std::ldexp(1.0, -24);
  return n * u / (1.0 - n * u);
}

// 2E of the file comment for these inputs.
double tolerance(const Matrix& q, const Matrix& k, const Matrix& v, int64_t T,
                 const ModelConfig& c) {
  const int hd = c.head_dim;
  const int rep = c.n_heads / c.n_kv_heads;
  double a = 0.0;  // max over heads and causal (t, s) pairs of scale * sum_i |q_ti k_si|
  for (int64_t row0 = 0; row0 < q.rows; row0 += T)
    for (int h = 0; h < c.n_heads; ++h)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t s = 0; s <= t; ++s) {
          double d = 0.0;
          for (int i = 0; i < hd; ++i)
            d += std::abs(q(row0 + t, h * hd + i) * k(row0 + s, h / rep * hd + i));
          a = std::max(a, d);
        }
  a /= std::sqrt(static_cast<double>(hd));
  double v_inf = 0.0;
  for (float x : v.data) v_inf = std::max(v_inf, static_cast<double>(std::abs(x)));
  const double delta = gamma(hd + 2) * a;
  return 2.0 * v_inf * (2.0 * delta + 2.0 * gamma(static_cast<double>(T) + 4));
}

struct Case {
  int n_heads, n_kv_heads, head_dim;
  int64_t T, n_seq;
};

class AttentionMatchesScalar : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionMatchesScalar, WithinTheRoundingBound) {
  const Case p = GetParam();
  ModelConfig c;
  c.n_heads = p.n_heads;
  c.n_kv_heads = p.n_kv_heads;
  c.head_dim = p.head_dim;
  c.dim = c.q_dim();
  const int64_t rows = p.T * p.n_seq;
  // q scaled up so that the softmax is peaked on some rows and flat on others.
  const Matrix q = random_matrix(rows, c.q_dim(), 2.0, 1);
  const Matrix k = random_matrix(rows, c.kv_dim(), 1.0, 2);
  const Matrix v = random_matrix(rows, c.kv_dim(), 1.0, 3);
  Matrix got(rows, c.q_dim()), want(rows, c.q_dim());
  causal_attention(q, k, v, p.T, c, got);
  scalar_attention(q, k, v, p.T, c, want);
  const double tol = tolerance(q, k, v, p.T, c);
  double worst = 0.0;
  for (size_t i = 0; i < got.data.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::abs(got.data[i] - want.data[i])));
  std::printf("max |blas - scalar| %.3g, bound %.3g\n", worst, tol);
  EXPECT_LE(worst, tol);
  // The bound is tight enough to catch a real mistake (outputs are O(0.1 .. 1)).
  EXPECT_LT(tol, 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionMatchesScalar,
                         ::testing::Values(Case{4, 2, 16, 300, 2},    // GQA, 3 tiles, ragged last
                                           Case{2, 2, 8, 128, 1},     // exactly one tile
                                           Case{3, 1, 8, 1, 3},       // one token per window
                                           Case{8, 8, 64, 257, 1}));  // one past two tiles

}  // namespace
}  // namespace cdq
