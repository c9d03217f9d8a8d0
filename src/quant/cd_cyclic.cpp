// Cyclic coordinate descent: sweep i = 0 .. d_in-1, moving each coordinate to its own optimum.
// Rows are processed in small batches, coordinate-major, so each row of H is read from memory
// once per batch rather than once per row.
#include "quant/cd_impl.hpp"

namespace cdq::cdk {

namespace {

// g[0..n) += delta * hrow[0..n)
void axpy(float* g, const float* hrow, float delta, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) g[j] += delta * hrow[j];
}

// kCodebook: codes index a codebook's levels (cd_kernels.hpp); one instantiation each.
template <bool kCodebook>
void sweeps_impl(const Shared& sh, Row* rows, int count, int sweeps) {
  bool active[64];
  CDQ_ASSERT(count <= 64);
  int n_active = count;
  for (int q = 0; q < count; ++q) active[q] = true;
  for (int sweep = 0; sweep < sweeps && n_active > 0; ++sweep) {
    bool changed[64] = {};
    for (int64_t i = 0; i < sh.n; ++i) {
      const float* hrow = sh.h->row(i);
      for (int q = 0; q < count; ++q) {
        if (!active[q]) continue;
        Row& r = rows[q];
        float t, dec, delta;
        if constexpr (kCodebook) {
          best_move_codebook(r.st.g[i], r.st.c[i], r.st.a[i], r.st.s[i], sh.hd[i], sh.codebook, t,
                             dec);
          delta = codebook_delta(sh.codebook, r.st.s[i], r.st.c[i], t);
        } else {
          best_move(r.st.g[i], r.st.c[i], r.st.a[i], r.st.s[i], sh.hd[i], sh.maxq, t, dec);
          delta = t * r.st.s[i];
        }
        if (!(dec > r.tol)) continue;
        if (sh.observer) observe_single(sh, r, i, t, dec);
        r.st.c[i] += t;
        r.obj -= dec;
        ++r.moves;
        changed[q] = true;
        axpy(r.st.g, hrow, delta, sh.n);
      }
    }
    for (int q = 0; q < count; ++q) {
      if (!active[q]) continue;
      rows[q].trace.push_back(rows[q].obj);
      if (!changed[q]) {
        active[q] = false;
        --n_active;
      }
    }
  }
}

}  // namespace

void cyclic_sweeps(const Shared& sh, Row* rows, int count, int sweeps) {
  if (sh.codebook.levels != nullptr)
    sweeps_impl<true>(sh, rows, count, sweeps);
  else
    sweeps_impl<false>(sh, rows, count, sweeps);
}

}  // namespace cdq::cdk
