// HQQ zero-point optimisation. One pass over a group per iteration computes the error of the
// current zero points and their update together; per-row partial sums are reduced in row order
// so the early stop does not depend on the thread count.
#include "quant/hqq.hpp"

#include <algorithm>
#include <cdquant/error.hpp>
#include <cmath>
#include <limits>

namespace cdq {

namespace {

// Column range [begin, end) of each group (contiguous, as make_grid_layout lays them out).
struct GroupRanges {
  std::vector<int64_t> begin, end;  // [n_groups]
};

GroupRanges group_ranges(const Grid& layout) {
  GroupRanges g;
  g.begin.assign(static_cast<size_t>(layout.n_groups), layout.d_in);
  g.end.assign(static_cast<size_t>(layout.n_groups), 0);
  for (int64_t c = 0; c < layout.d_in; ++c) {
    const auto k = static_cast<size_t>(layout.group_of(c));
    g.begin[k] = std::min(g.begin[k], c);
    g.end[k] = std::max(g.end[k], c + 1);
  }
  return g;
}

struct GroupSums {
  double lp = 0.0, abs = 0.0;
};

// The group's quantities of one step: v = W - We (the weights the split pulls towards) and Wq.
struct SplitSums {
  double v = 0.0, vv = 0.0, vq = 0.0, q = 0.0, z = 0.0;  // sums of v, v^2, v Wq, Wq, Wq - v s
};

// Next (s, z) of a group from its split sums: HQQ's z = mean(Wq - v s) with s kept, or
// (optimize_scale) the least-squares fit Wq ~ s v + z of both, keeping s where that fit is
// degenerate or not positive.
void next_params(const SplitSums& t, int64_t n, bool optimize_scale, float& s, float& z) {
  const auto m = static_cast<double>(n);
  if (optimize_scale) {
    const double den = m * t.vv - t.v * t.v;
    const double fit = den > 0.0 ? (m * t.vq - t.v * t.q) / den : 0.0;
    if (fit > 0.0 && std::isfinite(fit)) {
      s = static_cast<float>(fit);
      z = static_cast<float>((t.q - fit * t.v) / m);
      return;
    }
  }
  z = static_cast<float>(t.z / m);
}

// One HQQ step on one group of n weights at inverse scale s and zero z: the errors of (s, z),
// and the next parameters in s_next, z_next.
GroupSums hqq_group_step(const float* w, int64_t n, float s, float z, float maxq, float p,
                         float beta, bool optimize_scale, float& s_next, float& z_next) {
  GroupSums sums;
  SplitSums t;
  for (int64_t i = 0; i < n; ++i) {
    const float wq = std::clamp(std::nearbyint(w[i] * s + z), 0.0f, maxq);
    const float e = w[i] - (wq - z) / s;
    const float a = std::abs(e);
    sums.abs += a;
    sums.lp += std::pow(static_cast<double>(a), static_cast<double>(p));
    // HQQ's shrinkage (the proximal step of the lp term), with its 1e-8 guard at e = 0.
    const float shrunk = std::max(a - std::pow(a + 1e-8f, p - 1.0f) / beta, 0.0f);
    const float v = w[i] - std::copysign(shrunk, e);
    t.z += wq - v * s;
    t.v += v;
    t.vv += static_cast<double>(v) * v;
    t.vq += static_cast<double>(v) * wq;
    t.q += wq;
  }
  s_next = s;
  next_params(t, n, optimize_scale, s_next, z_next);
  return sums;
}

// Min-max start of one group: s = maxq / (max - min) (capped at 2e4 as HQQ for flat groups),
// z = -min s.
void minmax_start(const float* w, int64_t n, float maxq, float& s, float& z) {
  const auto [lo, hi] = std::minmax_element(w, w + n);
  s = std::min(maxq / (*hi - *lo), 2e4f);
  z = -*lo * s;
}

// sum |w - (clamp(round(w s + z), 0, maxq) - z) / s|^p of one group at zero point z.
double group_lp(const float* w, int64_t n, float s, float z, float maxq, double p) {
  double e = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float wq = std::clamp(std::nearbyint(w[i] * s + z), 0.0f, maxq);
    e += std::pow(std::abs(static_cast<double>(w[i]) - (wq - z) / s), p);
  }
  return e;
}

// The integer zero point for z: floor or ceil (in [0, maxq]), whichever has the lower lp
// error on the group (rounding z to the nearest alone loses most of what HQQ gained).
int32_t integer_zero(const float* w, int64_t n, float s, float z, int32_t maxq, double p) {
  const auto lo = std::clamp(static_cast<int32_t>(std::floor(z)), 0, maxq);
  const int32_t hi = std::min(lo + 1, maxq);
  const auto fm = static_cast<float>(maxq);
  return group_lp(w, n, s, static_cast<float>(hi), fm, p) <
                 group_lp(w, n, s, static_cast<float>(lo), fm, p)
             ? hi
             : lo;
}

// Fills grid scale/bias (and integer zeros) from the inverse scales and zero points
// [d_out, n_groups].
void fill_grid(Grid& grid, const Matrix& w, const GroupRanges& ranges, const std::vector<float>& s,
               const std::vector<float>& z, bool integer, double p) {
  grid.scale.resize(s.size());
  grid.bias.resize(s.size());
  if (integer) grid.zero.resize(s.size());
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < w.rows; ++r)
    for (int g = 0; g < grid.n_groups; ++g) {
      const size_t k = grid.at(r, g);
      grid.scale[k] = 1.0f / s[k];
      if (!integer) {
        grid.bias[k] = -z[k] * grid.scale[k];
        continue;
      }
      const int64_t b = ranges.begin[static_cast<size_t>(g)];
      grid.zero[k] = integer_zero(w.row(r) + b, ranges.end[static_cast<size_t>(g)] - b, s[k], z[k],
                                  grid.maxq, p);
      grid.bias[k] = -grid.scale[k] * static_cast<float>(grid.zero[k]);
    }
}

}  // namespace

double lp_error(const Matrix& w, const Grid& grid, const std::vector<uint8_t>& codes, double p) {
  CDQ_CHECK(codes.size() == static_cast<size_t>(w.size()), "lp_error: {} codes for {} weights",
            codes.size(), w.size());
  std::vector<double> rows(static_cast<size_t>(w.rows));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < w.rows; ++r) {
    double s = 0.0;
    for (int64_t c = 0; c < w.cols; ++c) {
      const float q = grid.affine_value(r, c, codes[static_cast<size_t>(r * w.cols + c)]);
      s += std::pow(std::abs(static_cast<double>(w(r, c)) - q), p);
    }
    rows[static_cast<size_t>(r)] = s;
  }
  double total = 0.0;
  for (double v : rows) total += v;
  return total;
}

namespace {

void check_spec(const Matrix& w, const HqqSpec& spec) {
  CDQ_CHECK(spec.bits >= 2 && spec.bits <= 8, "HQQ bits must be 2..8, got {}", spec.bits);
  CDQ_CHECK(spec.p > 0.0 && spec.p < 1.0, "HQQ lp norm must be in (0, 1), got {}", spec.p);
  CDQ_CHECK(spec.iters >= 0 && spec.beta > 0.0, "HQQ needs iters >= 0 and beta > 0");
  CDQ_CHECK(all_finite(w.span()), "HQQ: weights contain NaN or Inf");
}

// The iterations from inverse scales s and zero points z [d_out, n_groups].
HqqResult hqq_iterate(const Matrix& w, const HqqSpec& spec, std::vector<float> s,
                      std::vector<float> z);

}  // namespace

HqqResult hqq_quantize(const Matrix& w, const HqqSpec& spec) {
  check_spec(w, spec);
  const Grid layout = make_grid_layout(w.rows, w.cols, spec.group_size, (1 << spec.bits) - 1);
  const GroupRanges ranges = group_ranges(layout);
  const int64_t ng = layout.n_groups;
  const auto maxq = static_cast<float>(layout.maxq);
  std::vector<float> s(static_cast<size_t>(w.rows * ng)), z(s.size());  // [d_out, n_groups]
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t b = ranges.begin[static_cast<size_t>(g)];
      const size_t k = static_cast<size_t>(r * ng + g);
      minmax_start(w.row(r) + b, ranges.end[static_cast<size_t>(g)] - b, maxq, s[k], z[k]);
    }
  return hqq_iterate(w, spec, std::move(s), std::move(z));
}

HqqResult hqq_quantize_from(const Matrix& w, const HqqSpec& spec, std::vector<float> inv_scale,
                            std::vector<float> zero) {
  check_spec(w, spec);
  const Grid layout = make_grid_layout(w.rows, w.cols, spec.group_size, (1 << spec.bits) - 1);
  const size_t n = static_cast<size_t>(w.rows * layout.n_groups);
  CDQ_CHECK(inv_scale.size() == n && zero.size() == n,
            "HQQ start: {} scales and {} zero points for {} groups", inv_scale.size(), zero.size(),
            n);
  for (size_t k = 0; k < n; ++k)
    CDQ_CHECK(std::isfinite(inv_scale[k]) && inv_scale[k] > 0.0f && std::isfinite(zero[k]),
              "HQQ start: group {} has inverse scale {} and zero point {}", k, inv_scale[k],
              zero[k]);
  return hqq_iterate(w, spec, std::move(inv_scale), std::move(zero));
}

namespace {

HqqResult hqq_iterate(const Matrix& w, const HqqSpec& spec, std::vector<float> s,
                      std::vector<float> z) {
  HqqResult res;
  res.grid = make_grid_layout(w.rows, w.cols, spec.group_size, (1 << spec.bits) - 1);
  const Grid& layout = res.grid;
  const GroupRanges ranges = group_ranges(layout);
  const int64_t ng = layout.n_groups;
  const auto maxq = static_cast<float>(layout.maxq);
  std::vector<float> s_next(s.size()), z_next(z.size()), best_s = s, best_z = z;
  std::vector<GroupSums> row_sums(static_cast<size_t>(w.rows));
  double beta = spec.beta, best_abs = std::numeric_limits<double>::infinity();
  double best_lp = best_abs;
  HqqTrace& tr = res.trace;
  const double count = static_cast<double>(w.size());
  // Iteration `it` measures the zero points it starts from; `iters` updates, one more measure.
  for (int it = 0; it <= spec.iters; ++it) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < w.rows; ++r) {
      GroupSums acc;
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t b = ranges.begin[static_cast<size_t>(g)];
        const size_t k = static_cast<size_t>(r * ng + g);
        const GroupSums gs =
            hqq_group_step(w.row(r) + b, ranges.end[static_cast<size_t>(g)] - b, s[k], z[k], maxq,
                           static_cast<float>(spec.p), static_cast<float>(beta),
                           spec.optimize_scale, s_next[k], z_next[k]);
        acc.lp += gs.lp;
        acc.abs += gs.abs;
      }
      row_sums[static_cast<size_t>(r)] = acc;
    }
    GroupSums total;
    for (const GroupSums& rs : row_sums) {
      total.lp += rs.lp;
      total.abs += rs.abs;
    }
    tr.lp_error.push_back(total.lp);
    tr.mean_abs_error.push_back(total.abs / count);
    // HQQ's early stop reads mean |W - Wr|; the iterate kept is the one with the lowest lp
    // error (the objective), so what is returned never has a higher objective than an
    // earlier iterate, although the iterations themselves may raise it slightly.
    const bool improved = tr.mean_abs_error.back() < best_abs;
    if (improved) best_abs = tr.mean_abs_error.back();
    if (total.lp < best_lp) {
      best_lp = total.lp;
      best_s = s;
      best_z = z;
      tr.accepted.push_back(it);
    }
    if (it == spec.iters) break;  // measured the last update; no further step
    if (spec.early_stop && !improved) {
      tr.stopped_early = true;
      if (spec.reference_return) {  // HQQ has already applied this update
        s.swap(s_next);
        z.swap(z_next);
      }
      break;
    }
    s.swap(s_next);
    z.swap(z_next);
    beta *= spec.kappa;
    ++tr.iterations;
  }
  if (!spec.reference_return) {
    s.swap(best_s);
    z.swap(best_z);
  }
  fill_grid(res.grid, w, ranges, s, z, spec.integer_zero, spec.p);
  res.codes = round_to_grid(res.grid, w);
  tr.final_lp_error = lp_error(w, res.grid, res.codes, spec.p);
  tr.final_mean_abs_error = lp_error(w, res.grid, res.codes, 1.0) / count;
  return res;
}

}  // namespace

}  // namespace cdq
