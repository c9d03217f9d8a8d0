// Coordinate-descent refinement driver (refine_codes), greedy CD, the damped Hessian and the
// refinement stage of the method registry (refine_cd).
#include "quant/cd.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "linalg/linalg.hpp"
#include "quant/cd_impl.hpp"
#include "quant/gptq.hpp"
#include "quant/hessian.hpp"
#include "quant/method_stages.hpp"

namespace cdq {

namespace cdk {

void observe_single(const Shared& sh, const Row& r, int64_t i, float t, float dec) {
  CdMove mv;
  mv.row = r.row;
  mv.size = 1;
  mv.coord[0] = i;
  mv.from[0] = static_cast<int>(r.st.c[i]);
  mv.to[0] = static_cast<int>(r.st.c[i] + t);
  mv.decrease = dec;
  (*sh.observer)(mv);
}

namespace {

// Greedy CD on one row; kCodebook: codes index a codebook's levels (one instantiation each, so
// the affine loop is exactly the one without codebooks).
template <bool kCodebook>
void greedy_impl(const Shared& sh, Row& r, int64_t max_steps) {
  const auto scan = [&](const float* const* hrows, const float* delta, int n_upd) {
    if constexpr (kCodebook)
      return update_and_scan_codebook(r.st, sh.hd, sh.n, sh.ld, sh.codebook, hrows, delta, n_upd);
    else
      return update_and_scan(r.st, sh.hd, sh.n, sh.ld, sh.maxq, hrows, delta, n_upd);
  };
  Best b = scan(nullptr, nullptr, 0);
  int64_t steps = 0;
  while (steps < max_steps && b.dec > r.tol) {
    const int64_t i = b.idx;
    float delta;
    if constexpr (kCodebook)
      delta = codebook_delta(sh.codebook, r.st.s[i], r.st.c[i], b.t);
    else
      delta = b.t * r.st.s[i];
    if (sh.observer) observe_single(sh, r, i, b.t, b.dec);
    r.st.c[i] += b.t;
    r.obj -= b.dec;
    ++r.moves;
    if (++steps % sh.n == 0) r.trace.push_back(r.obj);
    const float* hrow = sh.h->row(i);  // H symmetric: row i is column i
    b = scan(&hrow, &delta, 1);
  }
  if (steps % sh.n != 0) r.trace.push_back(r.obj);
}

}  // namespace

void greedy_row(const Shared& sh, Row& r, int64_t max_steps) {
  if (sh.codebook.levels != nullptr)
    greedy_impl<true>(sh, r, max_steps);
  else
    greedy_impl<false>(sh, r, max_steps);
}

void descend(const Shared& sh, Row& r) {
  if (sh.kind == CdKind::Cyclic) {
    cyclic_sweeps(sh, &r, 1, sh.sweeps);
    return;
  }
  const int64_t left = sh.max_steps - r.steps, before = r.moves;
  if (left <= 0) return;
  if (sh.kind == CdKind::Greedy || sh.k == 1)
    greedy_row(sh, r, left);
  else
    block_row(sh, r, left);
  r.steps += r.moves - before;
}

}  // namespace cdk

namespace {

int thread_count(int requested) {
  return requested > 0 ? requested : omp_get_max_threads();
}

constexpr int kRowBatch = 8;  // rows sharing each H row in the cyclic sweeps and scale refits
static_assert(kRowBatch <= cdk::kMaxRescaleRows);

// G = (Q - W) H for all rows, [d_out, ld] with zero padding.
std::vector<float> initial_gradient(const Matrix& w, const Matrix& h, const Grid& grid,
                                    const std::vector<uint8_t>& codes, int64_t ld, int nt) {
  const int64_t n = w.cols;
  Matrix e(w.rows, n);
  if (grid.is_codebook()) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < w.rows; ++r)
      for (int64_t j = 0; j < n; ++j)
        e(r, j) = grid.codebook_value(r, j, codes[static_cast<size_t>(r * n + j)]) - w(r, j);
  } else {  // the affine loop as it always was (grid.hpp, affine_value)
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < w.rows; ++r)
      for (int64_t j = 0; j < n; ++j)
        e(r, j) = grid.affine_value(r, j, codes[static_cast<size_t>(r * n + j)]) - w(r, j);
  }
  std::vector<float> g(static_cast<size_t>(w.rows * ld), 0.0f);
  const MatrixView gv{g.data(), w.rows, n, ld};
  gemm(false, false, 1.0f, view(e), MatrixView{const_cast<float*>(h.data.data()), n, n, n}, 0.0f,
       gv);
  return g;
}

// W H for all rows, [d_out, ld] with zero padding: with it the per-channel scale refit gets
// H Q = g + H w without another product per round.
std::vector<float> weight_gradient(const Matrix& w, const Matrix& h, int64_t ld) {
  const int64_t n = w.cols;
  std::vector<float> out(static_cast<size_t>(w.rows * ld), 0.0f);
  gemm(false, false, 1.0f, MatrixView{const_cast<float*>(w.data.data()), w.rows, n, n},
       MatrixView{const_cast<float*>(h.data.data()), n, n, n}, 0.0f,
       MatrixView{out.data(), w.rows, n, ld});
  return out;
}

}  // namespace

std::vector<int32_t> bcd_partners(const Matrix& h, int k) {
  const int64_t n = h.rows;
  CDQ_CHECK(k >= 1 && k <= kMaxCdBlock, "BCD block size must be in 1..{}, got {}", kMaxCdBlock, k);
  CDQ_CHECK(k <= n, "BCD block size {} exceeds d_in = {}", k, n);
  const int np = k - 1;
  std::vector<int32_t> out(static_cast<size_t>(n * np));
  if (np == 0) return out;
  std::vector<float> inv_sqrt(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) inv_sqrt[i] = h(i, i) > 0 ? 1.0f / std::sqrt(h(i, i)) : 0.0f;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    // Keep the np best (correlation, index) pairs, best first.
    float best_v[kMaxCdBlock];
    int32_t best_j[kMaxCdBlock];
    int have = 0;
    const float* hi = h.row(i);
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const float v = std::abs(hi[j]) * inv_sqrt[i] * inv_sqrt[j];
      if (have == np && !(v > best_v[np - 1])) continue;
      int pos = have < np ? have++ : np - 1;
      while (pos > 0 && v > best_v[pos - 1]) {
        best_v[pos] = best_v[pos - 1];
        best_j[pos] = best_j[pos - 1];
        --pos;
      }
      best_v[pos] = v;
      best_j[pos] = static_cast<int32_t>(j);
    }
    for (int m = 0; m < np; ++m) out[static_cast<size_t>(i * np + m)] = best_j[m];
  }
  return out;
}

CdStats refine_codes(const Matrix& w, const Matrix& h, Grid& grid, std::vector<uint8_t>& codes,
                     const CdOptions& options, const CdObserver* observer) {
  const int64_t n = w.cols, d_out = w.rows;
  CDQ_ASSERT(h.rows == n && h.cols == n && grid.d_out == d_out && grid.d_in == n);
  CDQ_ASSERT(codes.size() == static_cast<size_t>(d_out * n));
  CDQ_CHECK(options.budget >= 0.0, "cd_budget must be >= 0, got {}", options.budget);
  CDQ_CHECK(options.sweeps >= 0 && options.warm_sweeps >= 0, "CD sweeps must be >= 0");
  const int nt = observer ? 1 : thread_count(options.threads);
  const int64_t ld = cdk::padded(n);
  const auto max_steps = static_cast<int64_t>(std::ceil(options.budget * static_cast<double>(n)));

  std::vector<float> g;
  if (options.initial_gradient) {
    CDQ_ASSERT(options.initial_gradient->size() == static_cast<size_t>(d_out * ld));
    g = std::move(*options.initial_gradient);
  } else {
    g = initial_gradient(w, h, grid, codes, ld, nt);
  }
  std::vector<float> hd(static_cast<size_t>(ld), 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    hd[j] = h(j, j);
    CDQ_CHECK(hd[j] > 0.0f, "CD needs a positive diagonal of the damped H, H[{},{}] = {}", j, j,
              hd[j]);
  }

  cdk::Shared sh;
  sh.h = &h;
  sh.hd = hd.data();
  sh.n = n;
  sh.ld = ld;
  sh.maxq = static_cast<float>(grid.maxq);
  std::vector<float> mids;  // codebook midpoints (cd_kernels.hpp, Codebook)
  if (grid.is_codebook()) {
    CDQ_CHECK(grid.levels.size() == static_cast<size_t>(grid.maxq) + 1,
              "codebook grid: {} levels with maxq {}", grid.levels.size(), grid.maxq);
    for (size_t k = 0; k + 1 < grid.levels.size(); ++k)
      mids.push_back(0.5f * (grid.levels[k] + grid.levels[k + 1]));
    sh.codebook = {grid.levels.data(), mids.data(), static_cast<int>(grid.levels.size())};
  }
  sh.observer = observer;
  std::vector<int32_t> partners;
  std::vector<float> block_inv;
  if (options.kind == CdKind::Block) {
    sh.k = std::min<int>(options.block, static_cast<int>(n));
    partners = bcd_partners(h, sh.k);
    block_inv = cdk::block_inverses(h, partners, sh.k);
    sh.partners = partners.data();
    sh.block_inv = block_inv.data();
  }
  sh.kind = options.kind;
  sh.max_steps = max_steps;
  sh.sweeps = options.sweeps;
  const bool rescale = options.rescale_rounds > 0;
  CDQ_CHECK(!rescale || !grid.is_codebook() || options.sub_scale != nullptr,
            "the scale refit of a codebook grid needs its block multipliers (sub-scales)");
  CDQ_CHECK(!rescale || grid.is_integer_grid() || options.sub_scale != nullptr,
            "the scale refit needs a uniform integer grid (not a scale/bias grid such as ggml's "
            "Q4_1 or K-quant blocks)");
  cdk::RescaleColumns columns;
  std::vector<float> hw;
  if (rescale) {
    columns = cdk::group_columns(grid);
    if (grid.n_groups == 1 && options.sub_scale == nullptr) hw = weight_gradient(w, h, ld);
    sh.rescale = {&grid,
                  hw.data(),
                  columns.cols.data(),
                  columns.start.data(),
                  options.fp16_scales,
                  options.rescale_rounds,
                  options.shift_zero && grid.n_groups == 1,
                  options.sub_scale,
                  std::max(1, options.constraint ? options.constraint->block_groups : 1),
                  options.constraint ? options.constraint->sub_lo : 1,
                  options.constraint ? options.constraint->sub_hi : 1};
  }

  std::vector<int64_t> moves(static_cast<size_t>(d_out), 0);
  std::vector<std::vector<double>> traces(static_cast<size_t>(d_out));
  const int64_t n_batches = (d_out + kRowBatch - 1) / kRowBatch;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> buf(static_cast<size_t>(3 * kRowBatch * ld), 0.0f);
    cdk::Row rows[kRowBatch];
#pragma omp for schedule(dynamic, 1)
    for (int64_t bi = 0; bi < n_batches; ++bi) {
      const int64_t r0 = bi * kRowBatch;
      const int count = static_cast<int>(std::min<int64_t>(kRowBatch, d_out - r0));
      for (int q = 0; q < count; ++q) {
        cdk::Row& rw = rows[q];
        const int64_t r = r0 + q;
        rw.row = r;
        rw.st.g = g.data() + r * ld;
        rw.st.c = buf.data() + (3 * q) * ld;
        rw.st.a = rw.st.c + ld;
        rw.st.s = rw.st.a + ld;
        // One loop per grid kind, each with its own value function inlined (a branch per
        // element would change how the affine loop is compiled).
        const auto fill = [&](auto value_of) {
          double obj = 0.0;
          for (int64_t j = 0; j < n; ++j) {
            const uint8_t code = codes[static_cast<size_t>(r * n + j)];
            const float s = grid.scale[grid.at(r, grid.group_of(j))];
            rw.st.c[j] = code;
            rw.st.s[j] = s;
            rw.st.a[j] = s != 0.0f ? 1.0f / (hd[j] * s) : 0.0f;
            obj += static_cast<double>(value_of(j, code) - w(r, j)) * rw.st.g[j];
          }
          return obj;
        };
        const double obj =
            grid.is_codebook()
                ? fill([&](int64_t j, int code) { return grid.codebook_value(r, j, code); })
                : fill([&](int64_t j, int code) { return grid.affine_value(r, j, code); });
        rw.obj = obj;
        rw.tol =
            std::max(static_cast<float>(options.tol_rel * obj), std::numeric_limits<float>::min());
        rw.moves = 0;
        rw.steps = 0;
        rw.trace.assign(1, obj);
      }
      const int sweeps = options.kind == CdKind::Cyclic ? options.sweeps : options.warm_sweeps;
      if (sweeps > 0) cdk::cyclic_sweeps(sh, rows, count, sweeps);
      for (int q = 0; q < count; ++q) {
        cdk::Row& rw = rows[q];
        if (options.kind != CdKind::Cyclic) cdk::descend(sh, rw);
      }
      if (rescale) cdk::refit_rows(sh, rows, count);
      for (int q = 0; q < count; ++q) {
        cdk::Row& rw = rows[q];
        for (int64_t j = 0; j < n; ++j)
          codes[static_cast<size_t>(rw.row * n + j)] = static_cast<uint8_t>(rw.st.c[j]);
        moves[rw.row] = rw.moves;
        traces[rw.row] = std::move(rw.trace);
      }
    }
  }

  CdStats stats;
  size_t len = 2;
  for (const auto& t : traces) len = std::max(len, t.size());
  stats.convergence.assign(len, 0.0);
  double total_moves = 0.0;
  for (int64_t r = 0; r < d_out; ++r) {
    const auto& t = traces[r];
    for (size_t k = 0; k < len; ++k) stats.convergence[k] += t[std::min(k, t.size() - 1)];
    total_moves += static_cast<double>(moves[r]);
  }
  stats.moves_per_row = total_moves / static_cast<double>(d_out);
  stats.start_objective = stats.convergence.front();
  stats.final_objective = stats.convergence.back();
  return stats;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void refine_cd(CdKind kind, const Matrix& w, const Matrix& h, const SolverOptions& options,
               SolveResult& res, StageState& state) {
  const auto t0 = std::chrono::steady_clock::now();
  const PreparedHessian ph = prepare_hessian(h, state.percdamp);
  Matrix w_live;
  if (ph.dead_count() > 0) {
    w_live = w;
    zero_dead_columns(w_live, ph);
  }
  CdOptions co;
  co.kind = kind;
  co.budget = options.cd_budget;
  co.block = options.bcd_block;
  co.sweeps = options.cyclic_sweeps;
  co.warm_sweeps = options.cd_warm_sweeps;
  co.threads = options.threads;
  std::vector<float> g0;
  if (state.gptq.u.rows > 0) {
    g0 = gptq_gradient(state.gptq, cdk::padded(w.cols));
    co.initial_gradient = &g0;
  }
  // A fixed grid (GGUF block scales, or a caller's) is kept, codes only, unless the format's
  // fp16 block multipliers d are free (GridConstraint); its zero points and biases never move.
  const bool fixed = options.fixed_grid() != nullptr;
  const bool free_d = fixed && options.constraint->free_multipliers();
  co.rescale_rounds = !fixed || free_d ? options.cd_rescale_rounds : 0;
  co.shift_zero = !fixed && !options.grid.symmetric;
  co.fp16_scales = fixed ? free_d : options.grid.fp16_scales;
  if (free_d) {
    const auto n_scales = static_cast<size_t>(res.grid.d_out * res.grid.n_groups);
    CDQ_CHECK(options.constraint->sub_scale.size() == n_scales,
              "grid constraint: {} sub-scales for a grid of {} scales",
              options.constraint->sub_scale.size(), n_scales);
    res.sub_scale = options.constraint->sub_scale;
    co.constraint = options.constraint;
    co.sub_scale = res.sub_scale.data();
  }
  const CdStats st = refine_codes(ph.dead_count() > 0 ? w_live : w, ph.h, res.grid, res.codes, co);
  res.seconds_refine = seconds_since(t0);
  res.convergence = st.convergence;
  res.moves_per_row = st.moves_per_row;
}

}  // namespace cdq
