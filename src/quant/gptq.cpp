// GPTQ main loop. Per block of B columns [i1, i2): every row (in parallel) copies its B values
// to a local buffer, quantizes them one by one and spreads each error over the rest of the
// block with row U[j, j:i2]; then one sgemm W[:, i2:] -= Err [d_out, B] U[i1:i2, i2:] applies
// the block's updates to the trailing columns.
#include "quant/gptq.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "linalg/linalg.hpp"
#include "quant/hessian.hpp"
#include "quant/scale_search.hpp"

namespace cdq {

namespace {

std::vector<int64_t> act_order_perm(const std::vector<float>& diag) {
  std::vector<int64_t> perm(diag.size());
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
    return diag[static_cast<size_t>(a)] > diag[static_cast<size_t>(b)];
  });
  return perm;
}

// Below this many multiply-adds a parallel region costs more than it saves (and on a loaded
// machine OpenMP barriers with descheduled threads are very slow).
constexpr int64_t kParallelWork = int64_t{1} << 18;

Matrix permute_columns(const Matrix& w, const std::vector<int64_t>& perm) {
  Matrix p(w.rows, w.cols);
#pragma omp parallel for schedule(static) if (w.size() > kParallelWork)
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t j = 0; j < w.cols; ++j) p(r, j) = w(r, perm[static_cast<size_t>(j)]);
  return p;
}

// H[perm[j0 + a], perm[j0 + b]] for a, b < n: the group's diagonal block in processing order.
Matrix gather_block(const Matrix& h, const std::vector<int64_t>& perm, int64_t j0, int64_t n) {
  Matrix b(n, n);
  for (int64_t a = 0; a < n; ++a)
    for (int64_t c = 0; c < n; ++c)
      b(a, c) = h(perm[static_cast<size_t>(j0 + a)], perm[static_cast<size_t>(j0 + c)]);
  return b;
}

struct Pass {
  const Matrix& u;                        // [n, n] upper Cholesky factor of H^-1 (processing order)
  const std::vector<int64_t>& perm;       // [n]
  const std::vector<int32_t>& col_group;  // [n] grid group of each processing position
  Grid& grid;
  Matrix& wp;                   // [d_out, n] W in processing order, updated per block
  std::vector<uint8_t>& codes;  // [d_out, n] original order
  int threads;
};

// Code and value of x in grid cell k (row r, original column c). kCodebook: the grid is a
// codebook (nearest level); otherwise affine, with the code the affine path always had.
template <bool kCodebook>
inline int quantize_one(const Grid& g, size_t k, int64_t r, int64_t c, float x, float& v) {
  if constexpr (kCodebook) {
    const int q = g.nearest(r, c, x);
    v = g.codebook_value(r, c, q);
    return q;
  } else {
    if (g.is_integer_grid() && g.scale[k] != 0.0f) {  // the reference quantize(), inlined
      const float s = g.scale[k], z = static_cast<float>(g.zero[k]);
      const float q = std::clamp(std::nearbyint(x / s) + z, 0.0f, static_cast<float>(g.maxq));
      v = s * (q - z);
      return static_cast<int>(q);
    }
    const int q = g.nearest(r, c, x);
    v = g.affine_value(r, c, q);
    return q;
  }
}

// Quantizes columns [i1, i2) of every row; writes the scaled errors to err [d_out, i2 - i1].
// One instantiation per grid kind, chosen once per block (quantize_block).
template <bool kCodebook>
void quantize_rows(const Pass& p, int64_t i1, int64_t i2, Matrix& err) {
  const int64_t n = p.wp.cols, cnt = i2 - i1;
#pragma omp parallel num_threads(p.threads) if (p.wp.rows * cnt * cnt / 2 > kParallelWork)
  {
    std::vector<float> w1(static_cast<size_t>(cnt));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < p.wp.rows; ++r) {
      std::copy_n(p.wp.row(r) + i1, cnt, w1.begin());
      float* e = err.row(r);
      for (int64_t i = 0; i < cnt; ++i) {
        const int64_t j = i1 + i;
        const int64_t c = p.perm[static_cast<size_t>(j)];
        float v = 0.0f;
        const size_t k = p.grid.at(r, p.col_group[static_cast<size_t>(j)]);
        p.codes[static_cast<size_t>(r * n + c)] = static_cast<uint8_t>(
            quantize_one<kCodebook>(p.grid, k, r, c, w1[static_cast<size_t>(i)], v));
        const float ei = (w1[static_cast<size_t>(i)] - v) / p.u(j, j);
        e[i] = ei;
        const float* urow = p.u.row(j) + i1;
        for (int64_t t = i + 1; t < cnt; ++t) w1[static_cast<size_t>(t)] -= ei * urow[t];
      }
    }
  }
}

void quantize_block(const Pass& p, int64_t i1, int64_t i2, Matrix& err) {
  if (p.grid.is_codebook())
    quantize_rows<true>(p, i1, i2, err);
  else
    quantize_rows<false>(p, i1, i2, err);
}

// Fits the dynamic groups that start in [i1, i2) on the block-start W (see gptq.hpp).
void fit_dynamic_groups(const Pass& p, const Matrix& h, const GridSpec& spec, int64_t i1,
                        int64_t i2) {
  const int64_t n = p.wp.cols, gs = spec.group_size;
  for (int64_t j = (i1 + gs - 1) / gs * gs; j < i2; j += gs) {
    const int64_t len = std::min(gs, n - j);
    const int g = static_cast<int>(j / gs);
    const ConstBlock cols{p.wp.data.data() + j, p.wp.rows, len, n};
    Matrix hb;
    ConstBlock hv;
    if (spec.search == ScaleSearch::Owc) {
      hb = gather_block(h, p.perm, j, len);
      hv = {hb.data.data(), len, len, len};
    }
    fit_group_columns(cols, spec, spec.search == ScaleSearch::Owc ? &hv : nullptr,
                      p.grid.scale.data() + g, p.grid.zero.data() + g, p.grid.n_groups);
  }
}

}  // namespace

GptqResult gptq_quantize(const Matrix& w, const Matrix& h, const SolverOptions& opt,
                         bool keep_factors) {
  const int64_t m = w.rows, n = w.cols;
  CDQ_CHECK(h.rows == n && h.cols == n, "GPTQ: H must be [{}, {}], got [{}, {}]", n, n, h.rows,
            h.cols);
  CDQ_CHECK(opt.gptq_block > 0, "GPTQ block size must be positive, got {}", opt.gptq_block);
  const GridSpec& spec = opt.grid;
  const bool fixed = opt.fixed_grid() != nullptr;
  const bool grouped = !fixed && spec.group_size > 0;
  const bool dynamic = grouped && !opt.static_groups;

  GptqResult res;
  PreparedHessian ph = prepare_hessian(h, opt.percdamp);
  Matrix wd = w;
  zero_dead_columns(wd, ph);
  if (fixed) {
    const Grid& fg = *opt.fixed_grid();
    CDQ_CHECK(fg.d_out == m && fg.d_in == n && fg.maxq <= 255,
              "fixed grid is for [{}, {}] with maxq {}, W is [{}, {}]", fg.d_out, fg.d_in, fg.maxq,
              m, n);
    res.grid = fg;
  } else if (!grouped) {
    res.grid = fit_grid(w, spec, &h);  // the reference fits per-channel before the dead fix
  } else if (!dynamic) {
    res.grid = fit_grid(wd, spec, &h);
  } else {
    CDQ_CHECK(spec.bits >= 1 && spec.bits <= 8, "bits must be in 1..8, got {}", spec.bits);
    res.grid = make_grid_layout(m, n, spec.group_size, spec.maxq());
    res.grid.zero.assign(res.grid.scale.size(), 0);
  }

  res.perm.resize(static_cast<size_t>(n));
  std::iota(res.perm.begin(), res.perm.end(), int64_t{0});
  if (opt.act_order) {
    res.perm = act_order_perm(ph.diag);
    wd = permute_columns(wd, res.perm);
    ph.h = permute_symmetric(ph.h, res.perm);
  }
  Matrix u = inverse_cholesky_upper(ph);
  res.percdamp = ph.percdamp;
  res.notes = ph.notes;

  std::vector<int32_t> col_group(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const auto c = static_cast<size_t>(res.perm[static_cast<size_t>(j)]);
    if (dynamic) res.grid.g_idx[c] = static_cast<int32_t>(j / spec.group_size);
    col_group[static_cast<size_t>(j)] = res.grid.g_idx[c];
  }

  res.codes.assign(static_cast<size_t>(m * n), 0);
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  const Pass pass{u, res.perm, col_group, res.grid, wd, res.codes, threads};
  const int64_t bs = opt.gptq_block;
  Matrix err(m, std::min(bs, n));
  if (keep_factors) res.err = Matrix(m, n);
  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    const int64_t i2 = std::min(i1 + bs, n);
    if (dynamic) fit_dynamic_groups(pass, h, spec, i1, i2);
    quantize_block(pass, i1, i2, err);
    if (keep_factors)
      for (int64_t r = 0; r < m; ++r) std::copy_n(err.row(r), i2 - i1, res.err.row(r) + i1);
    if (i2 < n) {  // W[:, i2:] -= Err U[i1:i2, i2:]
      const MatrixView e{err.data.data(), m, i2 - i1, err.cols};
      const MatrixView ub{const_cast<float*>(u.row(i1)) + i2, i2 - i1, n - i2, n};
      gemm(false, false, -1.0f, e, ub, 1.0f, {wd.data.data() + i2, m, n - i2, n});
    }
  }
  if (!fixed)
    for (size_t k = 0; k < res.grid.scale.size(); ++k)
      res.grid.bias[k] = -res.grid.scale[k] * static_cast<float>(res.grid.zero[k]);
  if (keep_factors) res.u = std::move(u);
  return res;
}

std::vector<float> gptq_gradient(GptqResult& res, int64_t ld) {
  const int64_t m = res.err.rows, n = res.err.cols;
  CDQ_ASSERT(n > 0 && res.u.rows == n && ld >= n && res.perm.size() == static_cast<size_t>(n));
  const MatrixView e{res.err.data.data(), m, n, n};
  solve_right_upper_transposed({res.u.data.data(), n, n, n}, e);  // err u^-T
  std::vector<float> g(static_cast<size_t>(m * ld), 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < m; ++r) {
    const float* src = res.err.row(r);
    float* dst = g.data() + r * ld;
    for (int64_t j = 0; j < n; ++j) dst[res.perm[static_cast<size_t>(j)]] = -src[j];
  }
  res.err = Matrix();
  res.u = Matrix();
  return g;
}

}  // namespace cdq
