// Inner kernels shared by the coordinate-descent variants (internal to src/quant/cd*.cpp).
//
// Per row the state lives in contiguous float arrays of padded length ld (a multiple of 8,
// the padding is zero so padded coordinates never move):
//   g[j]  gradient (H e)_j with the damped H
//   c[j]  current code of coordinate j, as a float
//   a[j]  1 / (H_jj s_j): the continuous optimal move of j in code units is -g_j * a_j
//   s[j]  grid step s_j of j's group (value = s_j * code + bias)
// and shared by all rows: hd[j] = H_jj.
// The best move of j is t = clamp(round(-g_j a_j), -c_j, maxq - c_j) codes, i.e. delta = t s_j
// in value units, and it lowers the row objective by dec = -delta (2 g_j + delta H_jj).
// Codebook grids (Grid::levels) keep the same state with c[j] the index of j's level: the
// kernels for them are the *_codebook functions below; the affine ones are untouched by them.
#pragma once

#include <cdquant/grid.hpp>
#include <cstdint>
#include <cstring>

namespace cdq::cdk {

using v8f = float __attribute__((vector_size(32)));
using v8i = int32_t __attribute__((vector_size(32)));

inline v8f load(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, v8f v) {
  std::memcpy(p, &v, sizeof v);
}
inline v8f splat(float x) {
  return v8f{x, x, x, x, x, x, x, x};
}

constexpr int kMaxUpd = 4;                  // rows of H one update may add (the BCD block size)
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: (x + M) - M rounds to nearest even

inline int64_t padded(int64_t n) {
  return (n + 7) / 8 * 8;
}

struct RowState {
  float* g;
  float* c;
  float* a;
  float* s;
};

struct Best {
  int64_t idx = -1;
  float t = 0.0f;    // move in codes
  float dec = 0.0f;  // decrease of the row objective
};

// The best of the 8 lanes of a scan (largest decrease, ties to the lowest index).
inline Best best_lane(v8f best, v8f best_t, v8i best_i) {
  Best b;
  b.dec = -1.0f;
  for (int l = 0; l < 8; ++l) {
    if (best[l] > b.dec || (best[l] == b.dec && best_i[l] < b.idx)) {
      b.dec = best[l];
      b.t = best_t[l];
      b.idx = best_i[l];
    }
  }
  return b;
}

// Scalar version of the move rule (same operations as the vector kernel).
inline void best_move(float g, float c, float a, float s, float hd, float maxq, float& t,
                      float& dec) {
  float x = -g * a;
  x = x < -c ? -c : x;
  x = x > maxq - c ? maxq - c : x;
  t = (x + kRoundMagic) - kRoundMagic;
  const float ds = t * s;
  dec = -ds * (2.0f * g + ds * hd);
}

// Applies g += sum_m delta[m] * hrows[m][:] (n_upd rows of H, each of true length n) and
// returns the best single move of the updated row. n_upd may be 0 (scan only).
inline Best update_and_scan(const RowState& st, const float* hd, int64_t n, int64_t ld, float maxq,
                            const float* const* hrows, const float* delta, int n_upd) {
  v8f best = splat(-1.0f);
  v8f best_t = splat(0.0f);
  v8i best_i = v8i{0, 0, 0, 0, 0, 0, 0, 0};
  v8i idx = v8i{0, 1, 2, 3, 4, 5, 6, 7};
  const v8i eight = v8i{8, 8, 8, 8, 8, 8, 8, 8};
  const v8f vmaxq = splat(maxq), magic = splat(kRoundMagic), two = splat(2.0f);
  const int64_t n8 = n / 8 * 8;
  float tail[kMaxUpd][8];
  for (int m = 0; m < n_upd; ++m) {
    std::memset(tail[m], 0, sizeof tail[m]);
    if (n8 < n) std::memcpy(tail[m], hrows[m] + n8, sizeof(float) * static_cast<size_t>(n - n8));
  }
  for (int64_t j = 0; j < ld; j += 8) {
    v8f g = load(st.g + j);
    for (int m = 0; m < n_upd; ++m) {
      const float* hp = j < n8 ? hrows[m] + j : tail[m];
      g += splat(delta[m]) * load(hp);
    }
    if (n_upd) store(st.g + j, g);
    const v8f c = load(st.c + j);
    const v8f lo = -c, hi = vmaxq - c;
    v8f x = -g * load(st.a + j);
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    const v8f t = (x + magic) - magic;
    const v8f ds = t * load(st.s + j);
    const v8f dec = -ds * (two * g + ds * load(hd + j));
    const v8i m = dec > best;
    best = m ? dec : best;
    best_t = m ? t : best_t;
    best_i = m ? idx : best_i;
    idx += eight;
  }
  return best_lane(best, best_t, best_i);
}

// --- codebook grids ---
// Value of code q: s_j * levels[q] + bias. A move of t codes from c changes the value by
// delta = s_j (L[c + t] - L[c]). Along coordinate j the row objective is
// H_jj s_j^2 (L - x_j)^2 + const over the levels L, with x_j = L[c_j] - g_j a_j the continuous
// optimum in level units, so j's best single move goes to the level nearest x_j (exact for the
// 1-D convex quadratic): the level whose cell between midpoints contains x_j, i.e. the number
// of midpoints below x_j (a point on a midpoint goes to the lower level).
struct Codebook {
  const float* levels = nullptr;  // [n] ascending; null: an affine grid
  const float* mid = nullptr;     // [n - 1] (levels[k] + levels[k + 1]) / 2
  int n = 0;
};

// Tables this small are searched by counting midpoints with vector compares and selects (no
// gathers, no branches); larger ones by a scalar binary search.
constexpr int kVectorLevels = 16;

// Index of x's level: the number of midpoints below x.
inline int codebook_cell(const Codebook& cb, float x) {
  const int m = cb.n - 1;
  if (cb.n <= kVectorLevels) {
    int cnt = 0;
    for (int k = 0; k < m; ++k) cnt += cb.mid[k] < x;
    return cnt;
  }
  int lo = 0, hi = m;  // first midpoint >= x
  while (lo < hi) {
    const int h = (lo + hi) / 2;
    if (cb.mid[h] < x)
      lo = h + 1;
    else
      hi = h;
  }
  return lo;
}

inline float codebook_delta(const Codebook& cb, float s, float c, float t) {
  const int from = static_cast<int>(c);
  return s * (cb.levels[from + static_cast<int>(t)] - cb.levels[from]);
}

inline void best_move_codebook(float g, float c, float a, float s, float hd, const Codebook& cb,
                               float& t, float& dec) {
  const int from = static_cast<int>(c);
  const float x = cb.levels[from] - g * a;  // a = 0 (zero scale): x is the current level
  const int to = codebook_cell(cb, x);
  t = static_cast<float>(to - from);
  const float ds = s * (cb.levels[to] - cb.levels[from]);
  dec = -ds * (2.0f * g + ds * hd);
}

// update_and_scan on a codebook grid: the same gradient update, then the best move of every
// coordinate; ties to the lowest index, as the affine kernel. Up to kVectorLevels levels the
// scan runs 8 coordinates at a time: L[c] and the new level by selects over the table.
inline Best update_and_scan_codebook(const RowState& st, const float* hd, int64_t n, int64_t ld,
                                     const Codebook& cb, const float* const* hrows,
                                     const float* delta, int n_upd) {
  if (cb.n > kVectorLevels) {
    for (int m = 0; m < n_upd; ++m) {
      const float* hp = hrows[m];
      const float d = delta[m];
      float* g = st.g;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) g[j] += d * hp[j];
    }
    Best b;
    b.dec = -1.0f;
    for (int64_t j = 0; j < n; ++j) {
      float t, dec;
      best_move_codebook(st.g[j], st.c[j], st.a[j], st.s[j], hd[j], cb, t, dec);
      if (dec > b.dec) {
        b.dec = dec;
        b.t = t;
        b.idx = j;
      }
    }
    return b;
  }
  v8f best = splat(-1.0f);
  v8f best_t = splat(0.0f);
  v8i best_i = v8i{0, 0, 0, 0, 0, 0, 0, 0};
  v8i idx = v8i{0, 1, 2, 3, 4, 5, 6, 7};
  const v8i eight = v8i{8, 8, 8, 8, 8, 8, 8, 8};
  const v8f two = splat(2.0f), l0 = splat(cb.levels[0]);
  const int64_t n8 = n / 8 * 8;
  float tail[kMaxUpd][8];
  for (int m = 0; m < n_upd; ++m) {
    std::memset(tail[m], 0, sizeof tail[m]);
    if (n8 < n) std::memcpy(tail[m], hrows[m] + n8, sizeof(float) * static_cast<size_t>(n - n8));
  }
  for (int64_t j = 0; j < ld; j += 8) {
    v8f g = load(st.g + j);
    for (int m = 0; m < n_upd; ++m) {
      const float* hp = j < n8 ? hrows[m] + j : tail[m];
      g += splat(delta[m]) * load(hp);
    }
    if (n_upd) store(st.g + j, g);
    const v8f c = load(st.c + j);
    v8f lc = l0;  // L[c]: exact, by selects (padding: c = 0)
    for (int k = 1; k < cb.n; ++k)
      lc = c >= splat(static_cast<float>(k)) ? splat(cb.levels[k]) : lc;
    const v8f x = lc - g * load(st.a + j);
    v8f lx = l0, to = splat(0.0f);
    for (int k = 0; k + 1 < cb.n; ++k) {
      const v8i above = splat(cb.mid[k]) < x;
      lx = above ? splat(cb.levels[k + 1]) : lx;
      to = above ? splat(static_cast<float>(k + 1)) : to;
    }
    const v8f t = to - c;
    const v8f ds = (lx - lc) * load(st.s + j);
    const v8f dec = -ds * (two * g + ds * load(hd + j));
    const v8i m = dec > best;
    best = m ? dec : best;
    best_t = m ? t : best_t;
    best_i = m ? idx : best_i;
    idx += eight;
  }
  return best_lane(best, best_t, best_i);
}

}  // namespace cdq::cdk
