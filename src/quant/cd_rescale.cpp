// Scale refit between coordinate-descent rounds. With the codes fixed, the objective of one
// row is a quadratic in each group's scale: scaling group G's values v (v_j = s (c_j - z))
// by (1 + mu) changes the row objective by
//     2 mu v^T g + mu^2 v^T H_GG v,
// so mu* = -v^T g / v^T H_GG v (g = H e, the row gradient CD keeps). The zero point stays the
// same integer, so the result is still a uniform integer grid that every format can store.
// Rounds of "refit, descend" stop when no scale moves.
//
// Formats that store scale_k = d * sub_k with one fp16 d per block of groups (ggml's K-quants:
// 8 or 16 groups with integer sub-scales; the 32-weight types: one group, sub 1) refit d
// instead: scaling d by (1 + mu) scales the part u_j = s_k (c_j - z_k) of every value in the
// block (s_k c_j on a scale/bias grid, whose biases stay), so mu* = -u^T g / u^T H_BB u.
//
// Per-channel asymmetric rows then try shifting the zero point by -1 and +1: the codes shift
// along, so only the codes clamped at the ends of the range change value (the window of
// representable values slides by one step), then refit and descend again; the trial is kept
// when the row objective ends lower, else the row is restored.
//
// Cost per row: a single group (per channel) needs H v = H Q = g + H w, so with the rows of
// W H computed once the refit is O(d_in). A grouped row costs |G|^2 for v^T H_GG v and
// |G| d_in for the gradient update per group: one pass is as costly as d_in CD moves.
#include <algorithm>
#include <cdquant/half.hpp>
#include <cmath>
#include <optional>

#include "quant/cd_impl.hpp"
#include "quant/scale_search.hpp"

namespace cdq::cdk {

namespace {

// The new scale s (1 + mu), rounded as the format will store it; s itself when it would not
// stay finite, nonzero and of the same sign (ggml's Q4_0/Q5_0/Q8_0 block scales may be
// negative: their rule divides the signed extreme by -8, -16 or -127).
float realised_scale(float s, double mu, bool fp16) {
  float s_new = static_cast<float>(static_cast<double>(s) * (1.0 + mu));
  if (fp16) s_new = fp16_to_float(float_to_fp16(s_new));
  const bool same_sign = s > 0.0f ? s_new > 0.0f : s_new < 0.0f;
  return same_sign && std::isfinite(s_new) ? s_new : s;
}

// The relative step s_new / s - 1 that was realised (exact in double).
double realised_step(float s, float s_new) {
  return (static_cast<double>(s_new) - static_cast<double>(s)) / static_cast<double>(s);
}

double decrease(double mu, double vg, double vhv) {
  return -(2.0 * mu * vg + mu * mu * vhv);
}

// Sets group grp's scale of row r to s_new in the grid and in the row state (the bias of a
// scale/bias grid stays).
void apply_scale(const Shared& sh, Row& r, int grp, float s_new, const int32_t* cols,
                 int64_t count) {
  Grid& grid = *sh.rescale.grid;
  const size_t k = grid.at(r.row, grp);
  grid.scale[k] = s_new;
  if (grid.is_integer_grid()) grid.bias[k] = -s_new * static_cast<float>(grid.zero[k]);
  for (int64_t m = 0; m < count; ++m) {
    const int32_t j = cols[m];
    r.st.s[j] = s_new;
    r.st.a[j] = s_new != 0.0f ? 1.0f / (sh.hd[j] * s_new) : 0.0f;
  }
}

// What coordinate j's value is its group's scale times: c - z on an integer grid, c on a
// scale/bias grid, levels[c] on a codebook grid (ggml's IQ4 types).
float scale_unit(const Shared& sh, const Row& r, int64_t j, size_t k) {
  const Grid& grid = *sh.rescale.grid;
  if (sh.codebook.levels != nullptr) return sh.codebook.levels[static_cast<int>(r.st.c[j])];
  if (grid.is_integer_grid()) return r.st.c[j] - static_cast<float>(grid.zero[k]);
  return r.st.c[j];
}

// The part of coordinate j's value that scales with its group's scale.
float scale_part(const Shared& sh, const Row& r, int64_t j) {
  const Grid& grid = *sh.rescale.grid;
  const size_t k = grid.at(r.row, grid.group_of(j));
  return grid.scale[k] * scale_unit(sh, r, j, k);
}

bool rescale_single_group(const Shared& sh, Row& r) {
  const float* hw = sh.rescale.hw + r.row * sh.ld;
  double vg = 0.0, vhv = 0.0;
  for (int64_t j = 0; j < sh.n; ++j) {
    const double v = scale_part(sh, r, j);
    vg += v * r.st.g[j];
    vhv += v * (static_cast<double>(r.st.g[j]) + hw[j]);  // (H v)_j = (H Q)_j = g_j + (H w)_j
  }
  if (!(vhv > 0.0)) return false;
  const float s = sh.rescale.grid->scale[sh.rescale.grid->at(r.row, 0)];
  const float s_new = realised_scale(s, -vg / vhv, sh.rescale.fp16);
  const double mu = realised_step(s, s_new);
  const double dec = decrease(mu, vg, vhv);
  if (s_new == s || !(dec > r.tol)) return false;
  const auto muf = static_cast<float>(mu);
  for (int64_t j = 0; j < sh.n; ++j) r.st.g[j] += muf * (r.st.g[j] + hw[j]);
  apply_scale(sh, r, 0, s_new, sh.rescale.cols, sh.n);
  r.obj -= dec;
  return true;
}

// x^T H_CC x over the columns C = cols[0 .. count) (x in that order; double accumulation).
double quadratic_on(const Shared& sh, const int32_t* cols, int64_t count, const float* x) {
  double total = 0.0;
  for (int64_t k = 0; k < count; ++k) {
    const float* hrow = sh.h->row(cols[k]);
    double acc = 0.0;
    for (int64_t l = 0; l < count; ++l) acc += static_cast<double>(hrow[cols[l]]) * x[l];
    total += x[k] * acc;
  }
  return total;
}

// g_q += H[:, C] (factor_q x_q) for every row q with take[q] (x_q = x + q * stride, over the
// columns C = cols[0 .. width)): rows side by side, so each row of H read serves all of them.
void add_to_gradients(const Shared& sh, Row* rows, int count, const int32_t* cols, int64_t width,
                      const bool* take, const double* factor, const float* x, int64_t stride) {
  for (int64_t m = 0; m < width; ++m) {
    const float* hrow = sh.h->row(cols[m]);  // H symmetric: row j is column j
    for (int q = 0; q < count; ++q) {
      if (!take[q]) continue;
      const auto step = static_cast<float>(factor[q] * x[q * stride + m]);
      float* g = rows[q].st.g;
#pragma omp simd
      for (int64_t j = 0; j < sh.n; ++j) g[j] += step * hrow[j];
    }
  }
}

// The multiplier m that groups g0 .. g1 - 1 of row r share: their scale when there is no
// sub-scale (one group), else shared_multiplier of their scales and sub-scales.
std::optional<float> block_multiplier(const Shared& sh, const Row& r, int g0, int g1) {
  const Grid& grid = *sh.rescale.grid;
  const size_t k0 = grid.at(r.row, g0);
  if (sh.rescale.sub_scale == nullptr) return grid.scale[k0];
  return shared_multiplier(grid.scale.data() + k0, sh.rescale.sub_scale + k0, g1 - g0);
}

// One row's refit of a block of groups, between computing the step and applying it.
struct BlockStep {
  float m_new = 0.0f;
  double mu = 0.0;  // realised relative step of the multiplier
  double dec = 0.0;
  bool accept = false;
};

// Groups g0 .. g1 - 1 of row r scale with one multiplier m (scale_k = m * sub_k): the closed
// form over their columns B, mu* = -u^T g / u^T H_BB u with u (count values) the scale parts.
BlockStep block_step(const Shared& sh, const Row& r, int g0, int g1, float* u) {
  const int32_t* cols = sh.rescale.cols + sh.rescale.start[g0];
  const int64_t count = sh.rescale.start[g1] - sh.rescale.start[g0];
  BlockStep st;
  const std::optional<float> m = block_multiplier(sh, r, g0, g1);
  if (!m) return st;
  double vg = 0.0, vhv = 0.0;
  for (int64_t k = 0; k < count; ++k) {
    u[k] = scale_part(sh, r, cols[k]);
    vg += static_cast<double>(u[k]) * r.st.g[cols[k]];
  }
  vhv = quadratic_on(sh, cols, count, u);
  if (!(vhv > 0.0)) return st;
  st.m_new = realised_scale(*m, -vg / vhv, sh.rescale.fp16);
  st.mu = realised_step(*m, st.m_new);
  st.dec = decrease(st.mu, vg, vhv);
  st.accept = st.m_new != *m && st.dec > r.tol;
  return st;
}

void apply_block(const Shared& sh, Row& r, int g0, int g1, const BlockStep& st) {
  const Grid& grid = *sh.rescale.grid;
  for (int grp = g0; grp < g1; ++grp) {
    const float sub =
        sh.rescale.sub_scale ? static_cast<float>(sh.rescale.sub_scale[grid.at(r.row, grp)]) : 1.0f;
    const int64_t first = sh.rescale.start[grp];
    apply_scale(sh, r, grp, st.m_new * sub, sh.rescale.cols + first,
                sh.rescale.start[grp + 1] - first);
  }
  r.obj -= st.dec;
}

// One row's move of one group's integer sub-scale (K-quants): its scale becomes d * sub.
struct SubStep {
  int16_t sub = 0;
  float scale = 0.0f;
  double delta = 0.0;  // scale - the old scale, exact
  double dec = 0.0;
  bool accept = false;
};

// The value of coordinate j moves by delta * w_j when its group's scale moves by delta
// (w_j = scale_unit). The best delta is
// -w^T g / w^T H_GG w; the sub-scale nearest to it (in steps of d, within sub_lo..sub_hi) is
// taken when it lowers the row objective.
SubStep sub_step(const Shared& sh, const Row& r, int grp, float d, float* w) {
  const Grid& grid = *sh.rescale.grid;
  const size_t k = grid.at(r.row, grp);
  const int32_t* cols = sh.rescale.cols + sh.rescale.start[grp];
  const int64_t count = sh.rescale.start[grp + 1] - sh.rescale.start[grp];
  double wg = 0.0;
  for (int64_t m = 0; m < count; ++m) {
    w[m] = scale_unit(sh, r, cols[m], k);
    wg += static_cast<double>(w[m]) * r.st.g[cols[m]];
  }
  const double whw = quadratic_on(sh, cols, count, w);
  SubStep st;
  if (!(whw > 0.0)) return st;
  const float s = grid.scale[k];
  const double target = (static_cast<double>(s) - wg / whw) / static_cast<double>(d);
  st.sub = static_cast<int16_t>(
      std::clamp<double>(std::nearbyint(target), sh.rescale.sub_lo, sh.rescale.sub_hi));
  if (st.sub == sh.rescale.sub_scale[k]) return st;
  st.scale = d * static_cast<float>(st.sub);
  st.delta = static_cast<double>(st.scale) - static_cast<double>(s);
  st.dec = -(2.0 * st.delta * wg + st.delta * st.delta * whw);
  st.accept = st.dec > r.tol;
  return st;
}

// Moves the sub-scale of group grp in every row q with active[q] where that pays (rows side by
// side, as rescale_blocks). d[q]: row q's block multiplier (0: skip the row).
void move_sub_scales(const Shared& sh, Row* rows, int count, int grp, const float* d,
                     const bool* active, bool* moved, std::vector<float>& w, int64_t widest) {
  Grid& grid = *sh.rescale.grid;
  SubStep steps[kMaxRescaleRows];
  bool take[kMaxRescaleRows];
  double delta[kMaxRescaleRows];
  bool any = false;
  for (int q = 0; q < count; ++q) {
    steps[q] = active[q] && d[q] != 0.0f ? sub_step(sh, rows[q], grp, d[q], w.data() + q * widest)
                                         : SubStep{};
    take[q] = steps[q].accept;
    delta[q] = steps[q].delta;
    any = any || take[q];
  }
  if (!any) return;
  const int32_t* cols = sh.rescale.cols + sh.rescale.start[grp];
  const int64_t width = sh.rescale.start[grp + 1] - sh.rescale.start[grp];
  add_to_gradients(sh, rows, count, cols, width, take, delta, w.data(), widest);
  for (int q = 0; q < count; ++q) {
    if (!steps[q].accept) continue;
    sh.rescale.sub_scale[grid.at(rows[q].row, grp)] = steps[q].sub;
    apply_scale(sh, rows[q], grp, steps[q].scale, cols, width);
    rows[q].obj -= steps[q].dec;
    moved[q] = true;
  }
}

// One refit pass over the blocks of every row q with active[q], rows side by side so that each
// row of H read for the gradient update serves all of them (the update is the pass's main
// cost: |B| rows of H per block, all of H per row). moved[q]: some scale of row q moved. Each
// row sees exactly the operations of a pass on its own.
void rescale_blocks(const Shared& sh, Row* rows, int count, const bool* active, bool* moved) {
  const Grid& grid = *sh.rescale.grid;
  const int per_block = sh.rescale.sub_scale ? sh.rescale.block_groups : 1;
  int64_t widest = 0;
  for (int g0 = 0; g0 < grid.n_groups; g0 += per_block) {
    const int g1 = std::min(g0 + per_block, grid.n_groups);
    widest = std::max(widest, sh.rescale.start[g1] - sh.rescale.start[g0]);
  }
  std::vector<float> u(static_cast<size_t>(count * widest));
  BlockStep steps[kMaxRescaleRows];
  bool take[kMaxRescaleRows];
  double mu[kMaxRescaleRows];
  for (int q = 0; q < count; ++q) moved[q] = false;
  for (int g0 = 0; g0 < grid.n_groups; g0 += per_block) {
    const int g1 = std::min(g0 + per_block, grid.n_groups);
    const int32_t* cols = sh.rescale.cols + sh.rescale.start[g0];
    const int64_t width = sh.rescale.start[g1] - sh.rescale.start[g0];
    bool any = false;
    for (int q = 0; q < count; ++q) {
      steps[q] = active[q] ? block_step(sh, rows[q], g0, g1, u.data() + q * widest) : BlockStep{};
      take[q] = steps[q].accept;
      mu[q] = steps[q].mu;
      any = any || take[q];
    }
    if (any) {
      add_to_gradients(sh, rows, count, cols, width, take, mu, u.data(), widest);
      for (int q = 0; q < count; ++q) {
        if (!steps[q].accept) continue;
        apply_block(sh, rows[q], g0, g1, steps[q]);
        moved[q] = true;
      }
    }
    if (sh.rescale.sub_scale == nullptr || sh.rescale.sub_lo >= sh.rescale.sub_hi) continue;
    float d[kMaxRescaleRows];
    for (int q = 0; q < count; ++q) d[q] = block_multiplier(sh, rows[q], g0, g1).value_or(0.0f);
    for (int grp = g0; grp < g1; ++grp)
      move_sub_scales(sh, rows, count, grp, d, active, moved, u, widest);
  }
}

// Per-channel rows (one group, every scale free) refit one by one: rescale_single_group is
// O(d_in) with the rows of W H, so there is no H to share.
void refit_rounds(const Shared& sh, Row& r) {
  for (int round = 0; round < sh.rescale.rounds; ++round) {
    if (!rescale_single_group(sh, r)) break;
    r.trace.push_back(r.obj);
    descend(sh, r);
  }
}

// Everything a zero-shift trial may change in row r, to restore it when the trial loses.
struct RowSnapshot {
  std::vector<float> arrays;  // g, c, a, s
  double obj = 0.0;
  int64_t moves = 0, steps = 0;
  size_t trace_len = 0;
  float scale = 0.0f, bias = 0.0f;
  int32_t zero = 0;

  void save(const Shared& sh, const Row& r, size_t k) {
    const Grid& grid = *sh.rescale.grid;
    arrays.resize(static_cast<size_t>(4 * sh.ld));
    float* out = arrays.data();
    for (const float* p : {r.st.g, r.st.c, r.st.a, r.st.s}) out = std::copy(p, p + sh.ld, out);
    obj = r.obj;
    moves = r.moves;
    steps = r.steps;
    trace_len = r.trace.size();
    scale = grid.scale[k];
    bias = grid.bias[k];
    zero = grid.zero[k];
  }
  void restore(const Shared& sh, Row& r, size_t k) const {
    Grid& grid = *sh.rescale.grid;
    const float* in = arrays.data();
    for (float* p : {r.st.g, r.st.c, r.st.a, r.st.s}) {
      std::copy(in, in + sh.ld, p);
      in += sh.ld;
    }
    r.obj = obj;
    r.moves = moves;
    r.steps = steps;
    r.trace.resize(trace_len);
    grid.scale[k] = scale;
    grid.bias[k] = bias;
    grid.zero[k] = zero;
  }
};

// Moves the zero point of a per-channel row by delta, the codes along with it.
void shift_zero(const Shared& sh, Row& r, size_t k, int delta) {
  Grid& grid = *sh.rescale.grid;
  const float s = grid.scale[k], fd = static_cast<float>(delta);
  for (int64_t j = 0; j < sh.n; ++j) {
    const float c_new = std::clamp(r.st.c[j] + fd, 0.0f, sh.maxq);
    const float d = s * (c_new - r.st.c[j] - fd);  // value change: nonzero only when clamped
    r.st.c[j] = c_new;
    if (d == 0.0f) continue;
    r.obj += static_cast<double>(d) * (2.0 * r.st.g[j] + static_cast<double>(d) * sh.hd[j]);
    const float* hrow = sh.h->row(j);
#pragma omp simd
    for (int64_t l = 0; l < sh.n; ++l) r.st.g[l] += d * hrow[l];
  }
  grid.zero[k] += delta;
  grid.bias[k] = -s * static_cast<float>(grid.zero[k]);
}

// Trials that clamp more codes than this are skipped: measured on the synthetic problems
// (768..4096 wide, 3 and 4 bits), 97% of the winning shifts clamp at most 2 codes and none
// clamps more than 10, while each clamped code costs a pass over a row of H.
constexpr int64_t kMaxClampedForShift = 5;

// Whether a shift by delta clamps few enough codes to be worth trying.
bool few_clamped(const Shared& sh, const Row& r, int delta) {
  const float edge = delta > 0 ? sh.maxq : 0.0f;
  int64_t count = 0;
  for (int64_t j = 0; j < sh.n && count <= kMaxClampedForShift; ++j) count += r.st.c[j] == edge;
  return count <= kMaxClampedForShift;
}

// Alternates scale refits and descents (sh.rescale.rounds at most) on a per-channel row, then,
// when sh.rescale.shift_zero, tries moving its zero point by -1 and +1.
void refit_row(const Shared& sh, Row& r) {
  refit_rounds(sh, r);
  if (!sh.rescale.shift_zero) return;
  const Grid& grid = *sh.rescale.grid;
  const size_t k = grid.at(r.row, 0);
  RowSnapshot before;
  for (int delta : {-1, 1}) {
    const int z = grid.zero[k] + delta;
    if (z < 0 || z > grid.maxq) continue;
    if (!few_clamped(sh, r, delta)) continue;
    before.save(sh, r, k);
    shift_zero(sh, r, k, delta);
    descend(sh, r);
    refit_rounds(sh, r);
    if (r.obj < before.obj - r.tol) {
      r.trace.resize(before.trace_len);  // the trial passed through higher objectives
      r.trace.push_back(r.obj);
      continue;
    }
    before.restore(sh, r, k);
  }
}

}  // namespace

void refit_rows(const Shared& sh, Row* rows, int count) {
  CDQ_ASSERT(count <= kMaxRescaleRows);
  const Grid& grid = *sh.rescale.grid;
  if (grid.n_groups == 1 && sh.rescale.sub_scale == nullptr) {  // O(d_in) per row: no sharing
    for (int q = 0; q < count; ++q) refit_row(sh, rows[q]);
    return;
  }
  bool active[kMaxRescaleRows], moved[kMaxRescaleRows];
  for (int q = 0; q < count; ++q) active[q] = true;
  for (int round = 0; round < sh.rescale.rounds; ++round) {
    rescale_blocks(sh, rows, count, active, moved);
    bool any = false;
    for (int q = 0; q < count; ++q) {
      active[q] = active[q] && moved[q];
      if (!active[q]) continue;
      any = true;
      rows[q].trace.push_back(rows[q].obj);
      descend(sh, rows[q]);
    }
    if (!any) break;
  }
}

RescaleColumns group_columns(const Grid& grid) {
  RescaleColumns out;
  out.start.assign(static_cast<size_t>(grid.n_groups + 1), 0);
  for (int64_t j = 0; j < grid.d_in; ++j) ++out.start[grid.group_of(j) + 1];
  for (int grp = 0; grp < grid.n_groups; ++grp) out.start[grp + 1] += out.start[grp];
  out.cols.resize(static_cast<size_t>(grid.d_in));
  std::vector<int64_t> fill(out.start.begin(), out.start.end() - 1);
  for (int64_t j = 0; j < grid.d_in; ++j)
    out.cols[static_cast<size_t>(fill[grid.group_of(j)]++)] = static_cast<int32_t>(j);
  return out;
}

}  // namespace cdq::cdk
