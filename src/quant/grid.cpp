#include <algorithm>
#include <cdquant/grid.hpp>
#include <cmath>

#include "quant/scale_search.hpp"

namespace cdq {

namespace {

constexpr ScaleSearch kScaleSearches[] = {ScaleSearch::MinMax, ScaleSearch::Mse, ScaleSearch::Owc,
                                          ScaleSearch::Hqq};

}  // namespace

ScaleSearch parse_scale_search(std::string_view name) {
  for (ScaleSearch s : kScaleSearches)
    if (name == scale_search_name(s)) return s;
  std::string expected;
  const std::vector<std::string> names = scale_search_names();
  for (size_t i = 0; i < names.size(); ++i)
    expected += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  fail("unknown scale search '{}' (expected {})", name, expected);
}

const char* scale_search_name(ScaleSearch s) {
  switch (s) {
    case ScaleSearch::MinMax:
      return "minmax";
    case ScaleSearch::Mse:
      return "mse";
    case ScaleSearch::Owc:
      return "owc";
    case ScaleSearch::Hqq:
      return "hqq";
  }
  return "?";
}

std::vector<std::string> scale_search_names() {
  std::vector<std::string> out;
  for (ScaleSearch s : kScaleSearches) out.emplace_back(scale_search_name(s));
  return out;
}

int Grid::nearest(int64_t r, int64_t c, float w) const {
  const size_t k = at(r, group_of(c));
  const float s = scale[k];
  if (!levels.empty()) {
    if (s == 0.0f) return 0;  // every level is worth the bias
    return nearest_level(levels.data(), static_cast<int>(levels.size()), (w - bias[k]) / s);
  }
  if (s == 0.0f) return is_integer_grid() ? std::clamp(zero[k], 0, maxq) : 0;
  // Integer grids follow the reference exactly: clamp(round(w / s) + zero).
  const float q = is_integer_grid() ? std::nearbyint(w / s) + static_cast<float>(zero[k])
                                    : std::nearbyint((w - bias[k]) / s);
  return static_cast<int>(std::clamp(q, 0.0f, static_cast<float>(maxq)));
}

void set_codebook(Grid& grid, std::vector<float> levels) {
  CDQ_CHECK(levels.size() >= 2 && levels.size() <= 256, "a codebook needs 2..256 levels, got {}",
            levels.size());
  for (size_t i = 0; i < levels.size(); ++i) {
    CDQ_CHECK(std::isfinite(levels[i]), "codebook level {} is not finite", i);
    CDQ_CHECK(i == 0 || levels[i - 1] < levels[i], "codebook levels must strictly ascend ({}: {})",
              i, levels[i]);
  }
  grid.maxq = static_cast<int>(levels.size()) - 1;
  grid.zero.clear();
  grid.levels = std::move(levels);
}

Grid make_grid_layout(int64_t d_out, int64_t d_in, int group_size, int maxq) {
  CDQ_CHECK(d_out > 0 && d_in > 0, "grid needs a non-empty matrix, got {}x{}", d_out, d_in);
  Grid g;
  g.d_out = d_out;
  g.d_in = d_in;
  g.maxq = maxq;
  const int64_t gs = group_size <= 0 ? d_in : group_size;
  g.n_groups = static_cast<int>((d_in + gs - 1) / gs);
  g.g_idx.resize(static_cast<size_t>(d_in));
  for (int64_t c = 0; c < d_in; ++c) g.g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(c / gs);
  g.scale.assign(static_cast<size_t>(d_out * g.n_groups), 0.0f);
  g.bias.assign(g.scale.size(), 0.0f);
  return g;
}

void minmax_params(const float* w, int64_t n, int bits, bool symmetric, float& scale,
                   int32_t& zero) {
  const int maxq = (1 << bits) - 1;
  float xmin = 0.0f, xmax = 0.0f;  // the range always includes 0
  for (int64_t i = 0; i < n; ++i) {
    xmin = std::min(xmin, w[i]);
    xmax = std::max(xmax, w[i]);
  }
  if (symmetric) {
    xmax = std::max(-xmin, xmax);
    if (xmin < 0.0f) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  scale = (xmax - xmin) / static_cast<float>(maxq);
  zero = symmetric ? (maxq + 1) / 2 : static_cast<int32_t>(std::nearbyint(-xmin / scale));
}

Matrix dequantize(const Grid& grid, const std::vector<uint8_t>& codes) {
  CDQ_ASSERT(codes.size() == static_cast<size_t>(grid.d_out * grid.d_in));
  Matrix q(grid.d_out, grid.d_in);
  if (grid.is_codebook()) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < grid.d_out; ++r)
      for (int64_t c = 0; c < grid.d_in; ++c)
        q(r, c) = grid.codebook_value(r, c, codes[static_cast<size_t>(r * grid.d_in + c)]);
    return q;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < grid.d_out; ++r)
    for (int64_t c = 0; c < grid.d_in; ++c)
      q(r, c) = grid.affine_value(r, c, codes[static_cast<size_t>(r * grid.d_in + c)]);
  return q;
}

std::vector<uint8_t> round_to_grid(const Grid& grid, const Matrix& w) {
  std::vector<uint8_t> codes(static_cast<size_t>(w.size()));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c)
      codes[static_cast<size_t>(r * w.cols + c)] =
          static_cast<uint8_t>(grid.nearest(r, c, w(r, c)));
  return codes;
}

std::optional<float> shared_multiplier(const float* scale, const int16_t* sub, int64_t count) {
  for (int64_t k = 0; k < count; ++k)
    if (sub[k] != 0) return scale[k] / static_cast<float>(sub[k]);
  return std::nullopt;
}

}  // namespace cdq
