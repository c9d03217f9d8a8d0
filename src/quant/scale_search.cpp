// Scale selection for uniform integer grids: min-max, MSE search and OWC.
//
// The candidates follow the GPTQ reference quantizer's `mse` option: start from the min-max
// range [xmin, xmax] (forced to include 0; symmetric: [-m, m]), shrink it by p_i = 1 - i/points
// for i < max_shrink * points, scale_i = (p xmax - p xmin) / maxq, zero_i = round(-p xmin /
// scale_i) (or the fixed symmetric zero), and keep a candidate only when it scores strictly
// better than every earlier one. i = 0 is min-max itself, so no search is ever worse than
// min-max by its own score. MSE scores sum |Q(w) - w|^norm; OWC scores e^T H_gg e, e = Q(w) - w,
// with H_gg the group's diagonal block of H.
//
// OWC speed: the quadratic costs O(n^2) per row and candidate. All rows of a group are scored
// at once with one BLAS product E H_gg per candidate (E = errors [rows, n]). For groups wider
// than spec.owc_exact_cols (per-channel on wide layers: O(d_in^2) per row and candidate, ~50
// candidates), candidates are first screened by the block-diagonal part of H (blocks of
// owc_exact_cols columns: O(n * owc_exact_cols) per row and candidate) and only min-max plus
// the spec.owc_refine best screened ones are scored exactly; the kept candidate is still
// chosen by the exact score, so OWC stays never worse than min-max.
//
// HQQ (ScaleSearch::Hqq) is not a candidate search: fit_grid runs HQQ on the whole matrix (its
// early stop watches the whole tensor, as HQQ's); GPTQ's dynamic groups run it on the group's
// current columns alone.
#include "quant/scale_search.hpp"

#include <algorithm>
#include <cdquant/grid.hpp>
#include <cdquant/half.hpp>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "linalg/linalg.hpp"
#include "quant/hqq.hpp"

namespace cdq {

namespace {

struct Range {
  float xmin = 0.0f;
  float xmax = 0.0f;
};

struct Params {
  float scale = 0.0f;
  int32_t zero = 0;
};

// The reference's range of a group (same rules as minmax_params).
Range group_range(const float* w, int64_t n, bool symmetric) {
  Range r;
  for (int64_t i = 0; i < n; ++i) {
    r.xmin = std::min(r.xmin, w[i]);
    r.xmax = std::max(r.xmax, w[i]);
  }
  if (symmetric) {
    r.xmax = std::max(-r.xmin, r.xmax);
    if (r.xmin < 0.0f) r.xmin = -r.xmax;
  }
  if (r.xmin == 0.0f && r.xmax == 0.0f) {
    r.xmin = -1.0f;
    r.xmax = 1.0f;
  }
  return r;
}

// Candidate i of the search, in float32 as the reference computes it.
Params candidate(const Range& r, int i, const GridSpec& spec) {
  const int maxq = spec.maxq();
  const float p = static_cast<float>(1.0 - static_cast<double>(i) / spec.search_points);
  const float xmin1 = p * r.xmin;
  const float xmax1 = p * r.xmax;
  Params c;
  c.scale = (xmax1 - xmin1) / static_cast<float>(maxq);
  // fp16-exact scales (GPTQ export): every search path (min-max, MSE, OWC; RTN, GPTQ's dynamic
  // and static groups) scores and keeps the stored value; the zero follows from it. A scale
  // below fp16's smallest subnormal keeps that subnormal (never 0), one above its largest
  // finite value keeps that (no throwing here: this runs inside OpenMP regions).
  if (spec.fp16_scales)
    c.scale = std::clamp(fp16_to_float(float_to_fp16(c.scale)), 0x1p-24f, 65504.0f);
  c.zero = spec.symmetric ? (maxq + 1) / 2 : static_cast<int32_t>(std::nearbyint(-xmin1 / c.scale));
  return c;
}

// The reference quantize(): scale * (clamp(round(x / scale) + zero, 0, maxq) - zero).
inline float quant_value(float x, float scale, float zero, float maxq) {
  const float q = std::clamp(std::nearbyint(x / scale) + zero, 0.0f, maxq);
  return scale * (q - zero);
}

void fill_errors(const float* x, int64_t n, int maxq, const Params& c, float* e) {
  const float z = static_cast<float>(c.zero), mq = static_cast<float>(maxq);
  for (int64_t j = 0; j < n; ++j) e[j] = quant_value(x[j], c.scale, z, mq) - x[j];
}

double dot_double(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(a[j]) * b[j];
  return s;
}

MatrixView mutable_view(const ConstBlock& b) {
  return {const_cast<float*>(b.data), b.rows, b.cols, b.ld};  // read-only use (BLAS input)
}

// Below this many operations a parallel region costs more than it saves.
constexpr int64_t kParallelWork = int64_t{1} << 16;

// Rows per BLAS batch: bounded memory (E and E H of [chunk, n] floats, ~16 MiB each).
int64_t row_chunk(int64_t rows, int64_t n) {
  return std::clamp<int64_t>((int64_t{1} << 22) / std::max<int64_t>(n, 1), 1, rows);
}

// H-weighted scores [rows, slots] of candidate cand_of(r, s) for every row r and slot s, using
// the block-diagonal part of H with blocks of `block` columns (block >= n: the exact e^T H e).
// One BLAS product E_B H_BB per block, candidate slot and chunk of rows.
template <typename CandOf>
std::vector<double> owc_scores(const ConstBlock& w, const GridSpec& spec, const ConstBlock& h,
                               int slots, int64_t block, CandOf cand_of) {
  const int64_t n = w.cols;
  const int64_t chunk = row_chunk(w.rows, n);
  Matrix e(chunk, n), f(chunk, n);
  std::vector<double> scores(static_cast<size_t>(w.rows * slots));
  for (int64_t r0 = 0; r0 < w.rows; r0 += chunk) {
    const int64_t rows = std::min(chunk, w.rows - r0);
    for (int s = 0; s < slots; ++s) {
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork)
      for (int64_t r = 0; r < rows; ++r)
        fill_errors(w.row(r0 + r), n, spec.maxq(), cand_of(r0 + r, s), e.row(r));
      for (int64_t c0 = 0; c0 < n; c0 += block) {  // F_B = E_B H_BB
        const int64_t len = std::min(block, n - c0);
        const ConstBlock hb{h.row(c0) + c0, len, len, h.ld};
        gemm(false, false, 1.0f, {e.data.data() + c0, rows, len, n}, mutable_view(hb), 0.0f,
             {f.data.data() + c0, rows, len, n});
      }
#pragma omp parallel for schedule(static) if (rows * n > kParallelWork)
      for (int64_t r = 0; r < rows; ++r)
        scores[static_cast<size_t>((r0 + r) * slots + s)] = dot_double(e.row(r), f.row(r), n);
    }
  }
  return scores;
}

// Index of the first smallest of n scores (the reference keeps strictly better ones only).
int first_min(const double* s, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (s[i] < s[best]) best = i;
  return best;
}

void fit_owc(const ConstBlock& w, const GridSpec& spec, const ConstBlock& h,
             const std::vector<Range>& ranges, std::vector<Params>& best) {
  const int n_cand = scale_candidates(spec);
  auto cand = [&](int64_t r, int i) { return candidate(ranges[static_cast<size_t>(r)], i, spec); };
  const bool exact =
      spec.owc_refine < 0 || w.cols <= spec.owc_exact_cols || spec.owc_refine >= n_cand - 1;
  if (exact) {
    const auto scores = owc_scores(w, spec, h, n_cand, w.cols, cand);
    for (int64_t r = 0; r < w.rows; ++r)
      best[static_cast<size_t>(r)] = cand(r, first_min(scores.data() + r * n_cand, n_cand));
    return;
  }
  // Screen every candidate on the block-diagonal part of H, keep min-max plus the owc_refine
  // best (by increasing index, so exact ties still resolve as in the reference), score those
  // exactly.
  const int keep = spec.owc_refine, slots = 1 + keep;
  const auto screen = owc_scores(w, spec, h, n_cand, std::max(spec.owc_exact_cols, 1), cand);
  std::vector<int> sel(static_cast<size_t>(w.rows * slots));
  for (int64_t r = 0; r < w.rows; ++r) {
    std::vector<int> idx(static_cast<size_t>(n_cand - 1));
    std::iota(idx.begin(), idx.end(), 1);
    const double* sc = screen.data() + r * n_cand;
    std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(),
                      [&](int a, int b) { return sc[a] < sc[b] || (sc[a] == sc[b] && a < b); });
    int* out = sel.data() + r * slots;
    out[0] = 0;
    std::copy_n(idx.begin(), keep, out + 1);
    std::sort(out + 1, out + slots);
  }
  auto chosen = [&](int64_t r, int s) { return cand(r, sel[static_cast<size_t>(r * slots + s)]); };
  const auto scores = owc_scores(w, spec, h, slots, w.cols, chosen);
  for (int64_t r = 0; r < w.rows; ++r)
    best[static_cast<size_t>(r)] = chosen(r, first_min(scores.data() + r * slots, slots));
}

// The stored value of a fitted scale where the format stores fp16 (as candidate() rounds).
float fp16_exact(float scale) {
  return std::clamp(fp16_to_float(float_to_fp16(scale)), 0x1p-24f, 65504.0f);
}

HqqSpec hqq_spec_of(const GridSpec& spec, bool integer_zero) {
  CDQ_CHECK(!spec.symmetric,
            "HQQ fits the zero points, which a symmetric grid fixes: drop --sym for hqq (method "
            "or --scales)");
  HqqSpec hs;  // HQQ's defaults (p = 0.7, beta 10, kappa 1.01, 20 iterations, early stop)
  hs.bits = spec.bits;
  hs.group_size = spec.group_size;
  hs.integer_zero = integer_zero;
  return hs;
}

}  // namespace

Grid fit_hqq_grid(const Matrix& w, const GridSpec& spec, bool integer_zero) {
  Grid g = hqq_quantize(w, hqq_spec_of(spec, integer_zero)).grid;
  if (spec.fp16_scales)
    for (size_t k = 0; k < g.scale.size(); ++k) {
      const float s = fp16_exact(g.scale[k]);
      g.bias[k] = integer_zero ? -s * static_cast<float>(g.zero[k]) : g.bias[k] * (s / g.scale[k]);
      g.scale[k] = s;
    }
  return g;
}

int scale_candidates(const GridSpec& spec) {
  if (spec.search == ScaleSearch::MinMax) return 1;
  // Python: range(int(maxshrink * grid)); the epsilon absorbs float32 storage of max_shrink
  // (0.7f * 100 = 69.99999...). Zero iterations keep min-max, the same as candidate 0 alone.
  const double n = static_cast<double>(spec.max_shrink) * spec.search_points;
  return std::max(1, static_cast<int>(std::floor(n + 1e-4)));
}

double mse_score(const float* values, int64_t n, int maxq, float scale, int32_t zero, float norm) {
  const float z = static_cast<float>(zero), mq = static_cast<float>(maxq);
  double s = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const float e = std::abs(quant_value(values[j], scale, z, mq) - values[j]);
    s += norm == 2.0f ? static_cast<double>(e) * e : std::pow(static_cast<double>(e), norm);
  }
  return s;
}

double owc_score(const float* values, int64_t n, int maxq, float scale, int32_t zero,
                 const float* h_block, int64_t ldh) {
  std::vector<float> e(static_cast<size_t>(n));
  fill_errors(values, n, maxq, {scale, zero}, e.data());
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (e[i] == 0.0f) continue;
    s += static_cast<double>(e[i]) * dot_double(h_block + i * ldh, e.data(), n);
  }
  return s;
}

void fit_group_columns(const ConstBlock& w, const GridSpec& spec, const ConstBlock* h_block,
                       float* scale, int32_t* zero, int64_t stride) {
  CDQ_CHECK(spec.bits >= 1 && spec.bits <= 8, "bits must be in 1..8, got {}", spec.bits);
  CDQ_CHECK(spec.search == ScaleSearch::MinMax || spec.search_points > 0,
            "scale search needs search_points > 0, got {}", spec.search_points);
  if (w.rows == 0 || w.cols == 0) return;
  if (spec.search == ScaleSearch::Hqq) {  // the group's columns as one per-row HQQ problem
    Matrix cols(w.rows, w.cols);
    for (int64_t r = 0; r < w.rows; ++r) std::copy_n(w.row(r), w.cols, cols.row(r));
    GridSpec one = spec;
    one.group_size = 0;
    const Grid g = fit_hqq_grid(cols, one, true);
    for (int64_t r = 0; r < w.rows; ++r) {
      scale[r * stride] = g.scale[static_cast<size_t>(r)];
      zero[r * stride] = g.zero[static_cast<size_t>(r)];
    }
    return;
  }
  std::vector<Range> ranges(static_cast<size_t>(w.rows));
  std::vector<Params> best(static_cast<size_t>(w.rows));
#pragma omp parallel for schedule(static) if (w.rows * w.cols > kParallelWork)
  for (int64_t r = 0; r < w.rows; ++r) {
    ranges[static_cast<size_t>(r)] = group_range(w.row(r), w.cols, spec.symmetric);
    best[static_cast<size_t>(r)] = candidate(ranges[static_cast<size_t>(r)], 0, spec);
  }
  const int n_cand = scale_candidates(spec);
  if (spec.search == ScaleSearch::Mse && n_cand > 1) {
#pragma omp parallel for schedule(dynamic, 16) if (w.rows * w.cols * n_cand > kParallelWork)
    for (int64_t r = 0; r < w.rows; ++r) {
      double best_err = std::numeric_limits<double>::infinity();
      for (int i = 0; i < n_cand; ++i) {
        const Params c = candidate(ranges[static_cast<size_t>(r)], i, spec);
        const double err = mse_score(w.row(r), w.cols, spec.maxq(), c.scale, c.zero, spec.mse_norm);
        if (err < best_err) {
          best_err = err;
          best[static_cast<size_t>(r)] = c;
        }
      }
    }
  } else if (spec.search == ScaleSearch::Owc && n_cand > 1) {
    CDQ_CHECK(h_block != nullptr, "OWC scale search needs the Hessian H");
    CDQ_ASSERT(h_block->rows == w.cols && h_block->cols == w.cols);
    fit_owc(w, spec, *h_block, ranges, best);
  }
  for (int64_t r = 0; r < w.rows; ++r) {
    scale[r * stride] = best[static_cast<size_t>(r)].scale;
    zero[r * stride] = best[static_cast<size_t>(r)].zero;
  }
}

void fit_group_params(const float* values, int64_t n, const GridSpec& spec, const float* h_block,
                      float& scale, int32_t& zero) {
  const ConstBlock w{values, 1, n, n};
  const ConstBlock h{h_block, n, n, n};
  fit_group_columns(w, spec, h_block ? &h : nullptr, &scale, &zero, 1);
}

Grid fit_grid(const Matrix& w, const GridSpec& spec, const Matrix* h) {
  CDQ_CHECK(spec.bits >= 1 && spec.bits <= 8, "bits must be in 1..8, got {}", spec.bits);
  CDQ_CHECK(spec.search != ScaleSearch::Owc || h != nullptr,
            "OWC scale search needs the Hessian H");
  CDQ_CHECK(h == nullptr || (h->rows == w.cols && h->cols == w.cols),
            "H must be [{}, {}] for W [{}, {}]", w.cols, w.cols, w.rows, w.cols);
  if (spec.search == ScaleSearch::Hqq) return fit_hqq_grid(w, spec, true);
  Grid g = make_grid_layout(w.rows, w.cols, spec.group_size, spec.maxq());
  g.zero.assign(g.scale.size(), 0);
  const int64_t gs = spec.group_size <= 0 ? w.cols : spec.group_size;
  for (int gi = 0; gi < g.n_groups; ++gi) {
    const int64_t c0 = gi * gs;
    const int64_t n = std::min<int64_t>(gs, w.cols - c0);
    const ConstBlock cols{w.data.data() + c0, w.rows, n, w.cols};
    ConstBlock hb;
    if (h != nullptr) hb = {h->data.data() + c0 * h->cols + c0, n, n, h->cols};
    fit_group_columns(cols, spec, h ? &hb : nullptr, g.scale.data() + gi, g.zero.data() + gi,
                      g.n_groups);
  }
  for (size_t k = 0; k < g.scale.size(); ++k)
    g.bias[k] = -g.scale[k] * static_cast<float>(g.zero[k]);
  return g;
}

}  // namespace cdq
