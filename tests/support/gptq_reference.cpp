#include "support/gptq_reference.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace cdq::test {

namespace {

using Dense = std::vector<std::vector<double>>;

struct Quant {
  float scale = 1.0f;
  int32_t zero = 0;
};

// gptq.py Quantizer.find_params (min-max) on one row's values.
Quant find_params(const double* x, int64_t n, int bits, bool sym) {
  const int maxq = (1 << bits) - 1;
  float xmin = 0.0f, xmax = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    xmin = std::min(xmin, static_cast<float>(x[i]));
    xmax = std::max(xmax, static_cast<float>(x[i]));
  }
  if (sym) {
    xmax = std::max(std::abs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  Quant p;
  p.scale = (xmax - xmin) / static_cast<float>(maxq);
  p.zero = sym ? (maxq + 1) / 2 : static_cast<int32_t>(std::nearbyint(-xmin / p.scale));
  return p;
}

int quantize_code(double x, const Quant& p, int maxq) {
  const double q = std::nearbyint(x / p.scale) + p.zero;
  return static_cast<int>(std::clamp(q, 0.0, static_cast<double>(maxq)));
}

// Lower Cholesky factor of SPD a (throws when not positive definite).
Dense cholesky_lower(const Dense& a) {
  const size_t n = a.size();
  Dense l(n, std::vector<double>(n, 0.0));
  for (size_t j = 0; j < n; ++j) {
    double d = a[j][j];
    for (size_t k = 0; k < j; ++k) d -= l[j][k] * l[j][k];
    if (!(d > 0)) throw std::runtime_error("reference: H not positive definite");
    l[j][j] = std::sqrt(d);
    for (size_t i = j + 1; i < n; ++i) {
      double s = a[i][j];
      for (size_t k = 0; k < j; ++k) s -= l[i][k] * l[j][k];
      l[i][j] = s / l[j][j];
    }
  }
  return l;
}

// inverse(L L^T) by solving L L^T X = I column by column.
Dense cholesky_inverse(const Dense& l) {
  const size_t n = l.size();
  Dense inv(n, std::vector<double>(n, 0.0));
  std::vector<double> y(n);
  for (size_t c = 0; c < n; ++c) {
    for (size_t i = 0; i < n; ++i) {
      double s = i == c ? 1.0 : 0.0;
      for (size_t k = 0; k < i; ++k) s -= l[i][k] * y[k];
      y[i] = s / l[i][i];
    }
    for (size_t i = n; i-- > 0;) {
      double s = y[i];
      for (size_t k = i + 1; k < n; ++k) s -= l[k][i] * inv[k][c];
      inv[i][c] = s / l[i][i];
    }
  }
  return inv;
}

}  // namespace

GptqReference gptq_reference(const Matrix& w_in, const Matrix& h_in,
                             const GptqReferenceOptions& o) {
  const int64_t m = w_in.rows, n = w_in.cols;
  const int bits = o.grid.bits, maxq = (1 << bits) - 1;
  const bool sym = o.grid.symmetric;
  const bool grouped = o.grid.group_size > 0;
  const int64_t gs = grouped ? o.grid.group_size : n;
  Dense w(m, std::vector<double>(n)), h(n, std::vector<double>(n));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) w[r][c] = w_in(r, c);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) h[i][j] = h_in(i, j);

  GptqReference out;
  out.n_groups = static_cast<int>((n + gs - 1) / gs);
  out.scale.assign(static_cast<size_t>(m * out.n_groups), 0.0f);
  out.zero.assign(out.scale.size(), 0);
  out.g_idx.assign(static_cast<size_t>(n), 0);
  auto set_params = [&](int64_t r, int64_t g, const Quant& p) {
    out.scale[static_cast<size_t>(r * out.n_groups + g)] = p.scale;
    out.zero[static_cast<size_t>(r * out.n_groups + g)] = p.zero;
  };
  auto params = [&](int64_t r, int64_t g) {
    const size_t k = static_cast<size_t>(r * out.n_groups + g);
    return Quant{out.scale[k], out.zero[k]};
  };

  if (!grouped)  // per-channel: fitted before the dead fix
    for (int64_t r = 0; r < m; ++r) set_params(r, 0, find_params(w[r].data(), n, bits, sym));
  for (int64_t i = 0; i < n; ++i)
    if (h[i][i] == 0) {
      h[i][i] = 1;
      for (int64_t r = 0; r < m; ++r) w[r][i] = 0;
    }
  if (grouped && o.static_groups)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t g = 0; g < out.n_groups; ++g)
        set_params(r, g, find_params(w[r].data() + g * gs, std::min(gs, n - g * gs), bits, sym));

  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (o.act_order) {
    std::vector<double> diag(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) diag[static_cast<size_t>(i)] = h[i][i];
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return diag[a] > diag[b]; });
  }
  Dense wp(m, std::vector<double>(n)), hp(n, std::vector<double>(n));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) wp[r][j] = w[r][perm[j]];
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) hp[i][j] = h[perm[i]][perm[j]];
    mean += hp[i][i] / static_cast<double>(n);
  }
  for (int64_t i = 0; i < n; ++i) hp[i][i] += o.percdamp * mean;
  const Dense l2 = cholesky_lower(cholesky_inverse(cholesky_lower(hp)));  // Hinv = L2 L2^T
  auto u = [&](int64_t i, int64_t j) { return l2[j][i]; };                // U = L2^T

  out.codes.assign(static_cast<size_t>(m * n), 0);
  Dense snapshot;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t c = perm[j];
    if (j % o.fit_block == 0) snapshot = wp;
    const bool fit_now = grouped && !o.static_groups && j % gs == 0;
    const int64_t g = !grouped ? 0 : o.static_groups ? c / gs : j / gs;
    out.g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(g);
    for (int64_t r = 0; r < m; ++r) {
      if (fit_now)
        set_params(r, g, find_params(snapshot[r].data() + j, std::min(gs, n - j), bits, sym));
      const Quant p = params(r, g);
      const int code = quantize_code(wp[r][j], p, maxq);
      const double qv = static_cast<double>(p.scale) * (code - p.zero);
      out.codes[static_cast<size_t>(r * n + c)] = static_cast<uint8_t>(code);
      const double err = (wp[r][j] - qv) / u(j, j);
      for (int64_t t = j + 1; t < n; ++t) wp[r][t] -= err * u(j, t);
    }
  }
  out.q = Matrix(m, n);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      const Quant p = params(r, out.g_idx[static_cast<size_t>(c)]);
      out.q(r, c) =
          p.scale * static_cast<float>(out.codes[static_cast<size_t>(r * n + c)] - p.zero);
    }
  return out;
}

}  // namespace cdq::test
