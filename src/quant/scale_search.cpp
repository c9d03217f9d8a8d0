// Scale selection for uniform integer grids: min-max, MSE search and OWC.
#include <cdquant/grid.hpp>

#include <vector>

namespace cdq {

Grid fit_grid(const Matrix& w, const GridSpec& spec, const Matrix* h) {
  CDQ_CHECK(spec.bits >= 1 && spec.bits <= 8, "bits must be in 1..8, got {}", spec.bits);
  Grid g = make_grid_layout(w.rows, w.cols, spec.group_size, spec.maxq());
  g.zero.assign(g.scale.size(), 0);
  CDQ_CHECK(spec.search == ScaleSearch::MinMax, "scale search '{}' is not implemented yet",
            scale_search_name(spec.search));
  (void)h;
  const int64_t gs = spec.group_size <= 0 ? w.cols : spec.group_size;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int gi = 0; gi < g.n_groups; ++gi) {
      const int64_t c0 = gi * gs;
      const int64_t n = std::min<int64_t>(gs, w.cols - c0);
      const size_t k = g.at(r, gi);
      minmax_params(w.row(r) + c0, n, spec.bits, spec.symmetric, g.scale[k], g.zero[k]);
      g.bias[k] = -g.scale[k] * static_cast<float>(g.zero[k]);
    }
  }
  return g;
}

}  // namespace cdq
