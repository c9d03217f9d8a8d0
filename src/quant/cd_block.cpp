// Block coordinate descent. The block around seed i is {i} + its k-1 most correlated
// coordinates (bcd_partners). For a block B with gradient g_B the joint continuous optimum is
// delta* = -H_B^{-1} g_B; the candidates are every combination of the floor and ceiling of
// each member's optimum in code units (clamped to the grid), evaluated exactly. Each step takes
// the best move over all blocks and all single coordinates.
//
// Evaluating all blocks exactly every step would cost 2^k k^2 per block; instead each block
// gets an upper bound of any of its discrete decreases, and blocks are evaluated exactly in
// descending order of that bound until it falls below the best decrease found: the result is
// the exact best block. The bound: a move delta lowers the objective by
//   g_B^T H_B^{-1} g_B - (delta - delta*)^T H_B (delta - delta*),
// and every candidate lies at least s_m * dist(o_m, Z) from the continuous optimum in each
// member m (o_m its optimal move in code units); a candidate that changes anything moves some
// member off its code, i.e. at least s_m * dist(o_m, Z \ {0}) from the optimum. Hence
//   dec <= g_B^T H_B^{-1} g_B
//          - lambda_min(H_B) * (sum_m s_m^2 dist(o_m, Z)^2 + min_m s_m^2 extra_m),
// extra_m = dist(o_m, Z \ {0})^2 - dist(o_m, Z)^2 = (1 - 2|o_m|) when o_m rounds to 0, else 0.
// Codebook grids (Grid::levels) are the same with the levels in place of the integers: a
// member's candidates are the two levels bracketing its optimum x_m = L[c_m] + d_m / s_m (level
// units), dist(o_m, Z) becomes the distance from x_m to the nearest level and the extra term
// the distance to the nearest level other than L[c_m] when L[c_m] is the nearest one.
#include <algorithm>
#include <cmath>

#include "quant/cd_impl.hpp"

namespace cdq::cdk {

namespace {

// Inverts the symmetric positive-definite k x k matrix a (double, row-major) in place by
// Gauss-Jordan elimination; returns false when a pivot is not positive.
bool invert_small(double* a, int k) {
  double inv[kMaxCdBlock * kMaxCdBlock] = {};
  for (int i = 0; i < k; ++i) inv[i * k + i] = 1.0;
  for (int p = 0; p < k; ++p) {
    const double piv = a[p * k + p];
    if (!(piv > 0.0)) return false;
    for (int j = 0; j < k; ++j) {
      a[p * k + j] /= piv;
      inv[p * k + j] /= piv;
    }
    for (int i = 0; i < k; ++i) {
      if (i == p) continue;
      const double f = a[i * k + p];
      for (int j = 0; j < k; ++j) {
        a[i * k + j] -= f * a[p * k + j];
        inv[i * k + j] -= f * inv[p * k + j];
      }
    }
  }
  std::copy(inv, inv + k * k, a);
  return true;
}

struct BlockMove {
  int size = 0;
  int64_t coord[kMaxCdBlock] = {};
  float t[kMaxCdBlock] = {};  // move of each member, in codes
  double dec = 0.0;
};

// Members of seed i's block.
int block_members(const Shared& sh, int64_t i, int64_t* m) {
  m[0] = i;
  for (int p = 0; p < sh.k - 1; ++p) m[p + 1] = sh.partners[i * (sh.k - 1) + p];
  return sh.k;
}

// Codebook: the indices of the levels just below and above x = L[c] + d / s (level units),
// the codebook's floor and ceiling (both the end level outside the table; both c when s = 0).
void bracket_levels(const Codebook& cb, double c, double s, double d, double& lo, double& hi) {
  const int from = static_cast<int>(c);
  const double x = s != 0.0 ? cb.levels[from] + d / s : cb.levels[from];
  int up = 0;  // first level >= x
  while (up < cb.n && static_cast<double>(cb.levels[up]) < x) ++up;
  if (up == cb.n) {
    lo = hi = cb.n - 1;
    return;
  }
  hi = up;
  lo = static_cast<double>(cb.levels[up]) == x || up == 0 ? up : up - 1;
}

// The best candidate move of seed i's block, evaluated exactly in double.
BlockMove best_in_block(const Shared& sh, const Row& r, int64_t seed) {
  const int k = sh.k;
  BlockMove bm;
  bm.size = block_members(sh, seed, bm.coord);
  const float* inv = sh.block_inv + seed * (k * k + 1);
  double gb[kMaxCdBlock], lo[kMaxCdBlock], hi[kMaxCdBlock], hb[kMaxCdBlock][kMaxCdBlock];
  for (int m = 0; m < k; ++m) gb[m] = r.st.g[bm.coord[m]];
  for (int m = 0; m < k; ++m) {
    for (int l = 0; l < k; ++l) hb[m][l] = (*sh.h)(bm.coord[m], bm.coord[l]);
    double d = 0.0;  // joint continuous optimum of member m, value units
    for (int l = 0; l < k; ++l) d -= static_cast<double>(inv[m * k + l]) * gb[l];
    const double c = r.st.c[bm.coord[m]], s = r.st.s[bm.coord[m]];
    if (sh.codebook.levels != nullptr) {
      bracket_levels(sh.codebook, c, s, d, lo[m], hi[m]);
      continue;
    }
    const double x = s != 0.0 ? c + d / s : c;
    lo[m] = std::clamp(std::floor(x), 0.0, static_cast<double>(sh.maxq));
    hi[m] = std::clamp(std::ceil(x), 0.0, static_cast<double>(sh.maxq));
  }
  bm.dec = -1.0;
  for (int combo = 0; combo < (1 << k); ++combo) {
    double delta[kMaxCdBlock], t[kMaxCdBlock];
    for (int m = 0; m < k; ++m) {
      const double c = r.st.c[bm.coord[m]];
      t[m] = ((combo >> m) & 1 ? hi[m] : lo[m]) - c;
      if (sh.codebook.levels != nullptr) {
        const float* lv = sh.codebook.levels;
        delta[m] = static_cast<double>(r.st.s[bm.coord[m]]) *
                   (static_cast<double>(lv[static_cast<int>(c + t[m])]) - lv[static_cast<int>(c)]);
      } else {
        delta[m] = t[m] * r.st.s[bm.coord[m]];
      }
    }
    double dec = 0.0;
    for (int m = 0; m < k; ++m) {
      double hd = 0.0;
      for (int l = 0; l < k; ++l) hd += hb[m][l] * delta[l];
      dec -= delta[m] * (2.0 * gb[m] + hd);
    }
    if (dec > bm.dec) {
      bm.dec = dec;
      for (int m = 0; m < k; ++m) bm.t[m] = static_cast<float>(t[m]);
    }
  }
  return bm;
}

// block_bounds on a codebook grid (scalar: one level search per member).
void codebook_block_bounds(const Shared& sh, const Row& r, float* bound) {
  const int k = sh.k;
  const Codebook& cb = sh.codebook;
  for (int64_t i = 0; i < sh.n; ++i) {
    int64_t m[kMaxCdBlock];
    block_members(sh, i, m);
    const float* inv = sh.block_inv + i * (k * k + 1);
    float gb[kMaxCdBlock];
    for (int a = 0; a < k; ++a) gb[a] = r.st.g[m[a]];
    float gain = 0.0f, pen = 0.0f, extra = 3.4e38f;
    for (int a = 0; a < k; ++a) {
      float d = 0.0f;
      for (int b = 0; b < k; ++b) d -= inv[a * k + b] * gb[b];
      gain -= d * gb[a];
      const float sa = r.st.s[m[a]];
      const int c = static_cast<int>(r.st.c[m[a]]);
      const float x = cb.levels[c] + (sa != 0.0f ? d / sa : 0.0f);
      const int near = codebook_cell(cb, x);
      const float d1 = std::abs(cb.levels[near] - x);
      pen += sa * sa * d1 * d1;
      float e = 0.0f;
      if (near == c) {  // any change moves this member to a neighbouring level at least
        float d2 = 3.4e38f;
        if (c > 0) d2 = std::min(d2, std::abs(cb.levels[c - 1] - x));
        if (c + 1 < cb.n) d2 = std::min(d2, std::abs(cb.levels[c + 1] - x));
        e = sa * sa * (d2 * d2 - d1 * d1);
      }
      extra = std::min(extra, e);
    }
    pen += extra;
    bound[i] = gain - inv[k * k] * pen;
  }
}

// Upper bound of the best discrete decrease of every seed's block (see the top of the file).
void block_bounds(const Shared& sh, const Row& r, float* bound) {
  const int k = sh.k;
  const float* g = r.st.g;
  const float* s = r.st.s;
  if (sh.codebook.levels != nullptr) {
    codebook_block_bounds(sh, r, bound);
    return;
  }
  if (k == 2) {
#pragma omp simd
    for (int64_t i = 0; i < sh.n; ++i) {
      const float* inv = sh.block_inv + i * 5;
      const int32_t j = sh.partners[i];
      const float gi = g[i], gj = g[j];
      const float di = -(inv[0] * gi + inv[1] * gj), dj = -(inv[2] * gi + inv[3] * gj);
      const float si = s[i], sj = s[j];
      const float oi = si != 0.0f ? di / si : 0.0f, oj = sj != 0.0f ? dj / sj : 0.0f;
      const float ri = std::nearbyint(oi), rj = std::nearbyint(oj);
      const float fi = oi - ri, fj = oj - rj;
      const float ei = ri == 0.0f ? 1.0f - 2.0f * std::abs(oi) : 0.0f;
      const float ej = rj == 0.0f ? 1.0f - 2.0f * std::abs(oj) : 0.0f;
      const float si2 = si * si, sj2 = sj * sj;
      const float pen = si2 * fi * fi + sj2 * fj * fj + std::min(si2 * ei, sj2 * ej);
      bound[i] = -(di * gi + dj * gj) - inv[4] * pen;
    }
    return;
  }
  for (int64_t i = 0; i < sh.n; ++i) {
    int64_t m[kMaxCdBlock];
    block_members(sh, i, m);
    const float* inv = sh.block_inv + i * (k * k + 1);
    float gb[kMaxCdBlock];
    for (int a = 0; a < k; ++a) gb[a] = g[m[a]];
    float gain = 0.0f, pen = 0.0f, extra = 3.4e38f;
    for (int a = 0; a < k; ++a) {
      float d = 0.0f;
      for (int b = 0; b < k; ++b) d -= inv[a * k + b] * gb[b];
      gain -= d * gb[a];
      const float sa = s[m[a]];
      const float o = sa != 0.0f ? d / sa : 0.0f;
      const float ro = std::nearbyint(o);
      pen += sa * sa * (o - ro) * (o - ro);
      extra = std::min(extra, ro == 0.0f ? sa * sa * (1.0f - 2.0f * std::abs(o)) : 0.0f);
    }
    pen += extra;
    bound[i] = gain - inv[k * k] * pen;
  }
}

void observe_block(const Shared& sh, const Row& r, const BlockMove& bm) {
  CdMove mv;
  mv.row = r.row;
  mv.size = bm.size;
  for (int m = 0; m < bm.size; ++m) {
    mv.coord[m] = bm.coord[m];
    mv.from[m] = static_cast<int>(r.st.c[bm.coord[m]]);
    mv.to[m] = static_cast<int>(r.st.c[bm.coord[m]] + bm.t[m]);
  }
  mv.decrease = bm.dec;
  (*sh.observer)(mv);
}

constexpr size_t kEvalBatch = 32;  // blocks ranked and evaluated per round

}  // namespace

std::vector<float> block_inverses(const Matrix& h, const std::vector<int32_t>& partners, int k) {
  const int64_t n = h.rows;
  const int stride = k * k + 1;
  std::vector<float> out(static_cast<size_t>(n * stride));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    int64_t m[kMaxCdBlock];
    m[0] = i;
    for (int p = 0; p < k - 1; ++p) m[p + 1] = partners[static_cast<size_t>(i * (k - 1) + p)];
    double a[kMaxCdBlock * kMaxCdBlock];
    for (int x = 0; x < k; ++x)
      for (int y = 0; y < k; ++y) a[x * k + y] = h(m[x], m[y]);
    double lam = 0.0;  // set by one of the two branches below
    if (k == 2) {  // exact smallest eigenvalue of [[p, q], [q, t]]
      const double mid = 0.5 * (a[0] + a[3]), half = 0.5 * (a[0] - a[3]);
      lam = mid - std::sqrt(half * half + a[1] * a[1]);
    }
    CDQ_CHECK(invert_small(a, k), "BCD: the damped H restricted to block {} is singular", i);
    if (k != 2) {
      double tr = 0.0;
      for (int x = 0; x < k; ++x) tr += a[x * k + x];
      lam = 1.0 / tr;  // lambda_max(H_B^-1) <= trace(H_B^-1)
    }
    float* o = out.data() + i * stride;
    for (int x = 0; x < k * k; ++x) o[x] = static_cast<float>(a[x]);
    // Shrunk a little so that float rounding in the bound never makes it too tight.
    o[k * k] = static_cast<float>(std::max(0.0, lam) * (1.0 - 1e-3));
  }
  return out;
}

void block_row(const Shared& sh, Row& r, int64_t max_steps) {
  std::vector<float> bound(static_cast<size_t>(sh.n));
  std::vector<int32_t> cand;
  const auto scan = [&](const float* const* hrows, const float* delta, int n_upd) {
    if (sh.codebook.levels != nullptr)
      return update_and_scan_codebook(r.st, sh.hd, sh.n, sh.ld, sh.codebook, hrows, delta, n_upd);
    return update_and_scan(r.st, sh.hd, sh.n, sh.ld, sh.maxq, hrows, delta, n_upd);
  };
  Best b = scan(nullptr, nullptr, 0);
  int64_t steps = 0;
  while (steps < max_steps) {
    BlockMove best;
    best.dec = b.dec;
    best.size = 1;
    best.coord[0] = b.idx;
    best.t[0] = b.t;
    // Bounds are computed in float: a block is skipped only when its bound is below the best
    // decrease by more than the tolerance.
    const double slack = r.tol;
    const double threshold = std::max<double>(b.dec, r.tol) - slack;
    block_bounds(sh, r, bound.data());
    cand.clear();
    for (int64_t i = 0; i < sh.n; ++i)
      if (bound[i] > threshold) cand.push_back(static_cast<int32_t>(i));
    // Exact evaluation in descending order of the bound, kEvalBatch at a time.
    auto by_bound = [&](int32_t x, int32_t y) {
      return bound[x] > bound[y] || (bound[x] == bound[y] && x < y);
    };
    size_t done = 0;
    while (done < cand.size()) {
      const size_t end = std::min(cand.size(), done + kEvalBatch);
      if (end < cand.size())
        std::nth_element(cand.begin() + done, cand.begin() + end, cand.end(), by_bound);
      std::sort(cand.begin() + done, cand.begin() + end, by_bound);
      bool bounded = false;
      for (size_t q = done; q < end; ++q) {
        if (static_cast<double>(bound[cand[q]]) + slack <= best.dec) {
          bounded = true;
          break;
        }
        const BlockMove bm = best_in_block(sh, r, cand[q]);
        if (bm.dec > best.dec) best = bm;
      }
      if (bounded) break;
      done = end;
    }
    if (!(best.dec > r.tol)) break;

    if (sh.observer) {
      if (best.size == 1)
        observe_single(sh, r, best.coord[0], best.t[0], static_cast<float>(best.dec));
      else
        observe_block(sh, r, best);
    }
    const float* hrows[kMaxCdBlock];
    float deltas[kMaxCdBlock];
    int n_upd = 0;
    for (int m = 0; m < best.size; ++m) {
      if (best.t[m] == 0.0f) continue;
      const int64_t j = best.coord[m];
      hrows[n_upd] = sh.h->row(j);
      deltas[n_upd++] = sh.codebook.levels != nullptr
                            ? codebook_delta(sh.codebook, r.st.s[j], r.st.c[j], best.t[m])
                            : best.t[m] * r.st.s[j];
      r.st.c[j] += best.t[m];
    }
    r.obj -= best.dec;
    ++r.moves;
    if (++steps % sh.n == 0) r.trace.push_back(r.obj);
    b = scan(hrows, deltas, n_upd);
  }
  if (steps % sh.n != 0) r.trace.push_back(r.obj);
}

}  // namespace cdq::cdk
