// Gaussian grids: closed-form Lloyd-Max for p = 1, seeded k-means for p = 2, and the nearest
// point search both share (a tile of vectors against every point, vectorised over the tile).
#include "quant/normal_grid.hpp"

#include <algorithm>
#include <array>
#include <cdquant/error.hpp>
#include <cdquant/rng.hpp>
#include <cmath>
#include <limits>
#include <mutex>
#include <numbers>

namespace cdq {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Published positive halves (ALGORITHMS.md, "Data-free methods").
constexpr std::array<double, 2> kLevels2 = {0.4528, 1.5104};
constexpr std::array<double, 4> kLevels3 = {0.2451, 0.7560, 1.3439, 2.1519};
constexpr std::array<double, 8> kLevels4 = {0.1284, 0.3880, 0.6568, 0.9423,
                                            1.2562, 1.6180, 2.0690, 2.7326};

double pdf(double x) {
  return std::isinf(x) ? 0.0 : std::exp(-0.5 * x * x) / std::sqrt(2 * std::numbers::pi);
}
double cdf(double x) {
  return 0.5 * std::erfc(-x / std::numbers::sqrt2);
}
// x * pdf(x), which tends to 0 at +-infinity.
double xpdf(double x) {
  return std::isinf(x) ? 0.0 : x * pdf(x);
}

void check_bits_dim(int bits, int dim) {
  CDQ_CHECK(dim == 1 || dim == 2, "Gaussian grids have dimension 1 or 2, got {}", dim);
  CDQ_CHECK(bits >= 1 && bits * dim <= 8, "Gaussian grid of {} bits x {} dims is out of range",
            bits, dim);
}

using SearchPoints = GridSearch::Points;
using CellIndex = GridSearch::Cells;

SearchPoints search_points(const NormalGrid& grid) {
  SearchPoints s;
  const int64_t k = grid.n_points();
  s.gx.resize(static_cast<size_t>(k));
  s.gy.assign(static_cast<size_t>(k), 0.0f);
  s.norm2.resize(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const float* p = grid.point(i);
    const float y = grid.dim == 2 ? p[1] : 0.0f;
    s.gx[static_cast<size_t>(i)] = 2.0f * p[0];
    s.gy[static_cast<size_t>(i)] = 2.0f * y;
    s.norm2[static_cast<size_t>(i)] = p[0] * p[0] + y * y;
  }
  return s;
}

constexpr int kTile = 64;

// Best point for each vector of a full tile (ux, uy [kTile]; uy zero for dim 1): the inner loop
// runs over the tile so it vectorises with blends; strict > keeps the lowest index on ties.
void assign_tile(const SearchPoints& s, const float* __restrict ux, const float* __restrict uy,
                 int32_t* __restrict idx) {
  float best[kTile];
  for (int j = 0; j < kTile; ++j) {
    best[j] = -std::numeric_limits<float>::infinity();
    idx[j] = 0;
  }
  const auto k = static_cast<int32_t>(s.gx.size());
  for (int32_t p = 0; p < k; ++p) {
    const float ax = s.gx[static_cast<size_t>(p)], ay = s.gy[static_cast<size_t>(p)];
    const float c = s.norm2[static_cast<size_t>(p)];
    for (int j = 0; j < kTile; ++j) {
      const float score = ax * ux[j] + ay * uy[j] - c;
      const bool better = score > best[j];
      best[j] = better ? score : best[j];
      idx[j] = better ? p : idx[j];
    }
  }
}

// Codes of n vectors u [n, dim] starting at u, in tiles (the tail padded with zeros).
template <typename Code>
void assign_range(const SearchPoints& s, int dim, const float* u, int64_t n, Code* codes) {
  float ux[kTile], uy[kTile];
  int32_t idx[kTile];
  for (int64_t t = 0; t < n; t += kTile) {
    const int m = static_cast<int>(std::min<int64_t>(kTile, n - t));
    for (int j = 0; j < kTile; ++j) {
      ux[j] = j < m ? u[(t + j) * dim] : 0.0f;
      uy[j] = (j < m && dim == 2) ? u[(t + j) * dim + 1] : 0.0f;
    }
    assign_tile(s, ux, uy, idx);
    for (int j = 0; j < m; ++j) codes[t + j] = static_cast<Code>(idx[j]);
  }
}

// Exact pruning for 2-D grids with many points: a uniform grid of cells over a box; for each
// cell, the points that can be nearest to some location in it (distance to the cell not above
// the smallest farthest-corner distance of any point, with a little slack so float rounding of
// the scores cannot drop the winner). Vectors outside the box fall back to the full search.

constexpr int kCells = 32;
constexpr float kBox = 4.5f;  // N(0, 1) entries beyond 4.5 are rare: they take the full search

CellIndex build_index(const NormalGrid& g) {
  CellIndex ix;
  ix.cells = kCells;
  ix.lo = -kBox;
  const float cell = 2.0f * kBox / kCells;
  ix.inv_cell = 1.0f / cell;
  ix.start.reserve(kCells * kCells + 1);
  ix.start.push_back(0);
  const int64_t k = g.n_points();
  std::vector<double> near(static_cast<size_t>(k));  // [k] squared distance to the cell
  for (int cy = 0; cy < kCells; ++cy)
    for (int cx = 0; cx < kCells; ++cx) {
      const double x0 = ix.lo + cx * cell, y0 = ix.lo + cy * cell;
      double reach = std::numeric_limits<double>::infinity();
      for (int64_t p = 0; p < k; ++p) {
        const double px = g.point(p)[0], py = g.point(p)[1];
        const double fx = std::max(std::abs(px - x0), std::abs(px - x0 - cell));
        const double fy = std::max(std::abs(py - y0), std::abs(py - y0 - cell));
        reach = std::min(reach, fx * fx + fy * fy);
        const double nx = std::max({x0 - px, 0.0, px - x0 - cell});
        const double ny = std::max({y0 - py, 0.0, py - y0 - cell});
        near[static_cast<size_t>(p)] = nx * nx + ny * ny;
      }
      const double limit = reach * (1.0 + 1e-4) + 1e-6;
      for (int64_t p = 0; p < k; ++p)
        if (near[static_cast<size_t>(p)] <= limit) ix.cand.push_back(static_cast<int32_t>(p));
      ix.start.push_back(static_cast<int32_t>(ix.cand.size()));
    }
  return ix;
}

// Nearest point of one 2-D vector with the same score (and tie rule) as assign_tile.
int32_t nearest_indexed(const SearchPoints& s, const CellIndex& ix, float x, float y) {
  const float fx = (x - ix.lo) * ix.inv_cell, fy = (y - ix.lo) * ix.inv_cell;
  const int32_t* begin = nullptr;
  const int32_t* end = nullptr;
  if (fx >= 0.0f && fy >= 0.0f && fx < ix.cells && fy < ix.cells) {
    const int cell = static_cast<int>(fy) * ix.cells + static_cast<int>(fx);
    begin = ix.cand.data() + ix.start[static_cast<size_t>(cell)];
    end = ix.cand.data() + ix.start[static_cast<size_t>(cell) + 1];
  }
  float best = -std::numeric_limits<float>::infinity();
  int32_t arg = 0;
  auto consider = [&](int32_t p) {
    const float score = s.gx[static_cast<size_t>(p)] * x + s.gy[static_cast<size_t>(p)] * y -
                        s.norm2[static_cast<size_t>(p)];
    arg = score > best ? p : arg;
    best = score > best ? score : best;
  };
  if (begin != nullptr) {
    for (const int32_t* c = begin; c != end; ++c) consider(*c);
  } else {
    for (int32_t p = 0; p < static_cast<int32_t>(s.gx.size()); ++p) consider(p);
  }
  return arg;
}

// Points above which the 2-D search prunes with a CellIndex instead of scanning all points.
constexpr int64_t kIndexedPoints = 64;

std::vector<float> gaussian_samples(int64_t n, int dim, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(n * dim));  // [n, dim]
  for (float& v : x) v = static_cast<float>(rng.normal());
  return x;
}

double dist2(const float* a, const float* b, int dim) {
  double d = 0.0;
  for (int i = 0; i < dim; ++i) d += (static_cast<double>(a[i]) - b[i]) * (a[i] - b[i]);
  return d;
}

// k-means++: each new centre drawn with probability proportional to the squared distance to
// the nearest centre so far.
std::vector<float> kmeans_pp(const std::vector<float>& x, int64_t n, int dim, int64_t k, Rng& rng) {
  std::vector<float> c(static_cast<size_t>(k * dim));  // [k, dim]
  std::vector<double> d2(static_cast<size_t>(n), kInf);
  int64_t pick = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)));
  for (int64_t j = 0; j < k; ++j) {
    std::copy_n(x.data() + pick * dim, dim, c.data() + j * dim);
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      d2[static_cast<size_t>(i)] =
          std::min(d2[static_cast<size_t>(i)], dist2(x.data() + i * dim, c.data() + j * dim, dim));
      total += d2[static_cast<size_t>(i)];
    }
    double r = rng.uniform() * total;
    pick = n - 1;
    for (int64_t i = 0; i < n; ++i) {
      r -= d2[static_cast<size_t>(i)];
      if (r < 0.0) {
        pick = i;
        break;
      }
    }
  }
  return c;
}

constexpr int64_t kChunk =
    4096;  // samples per partial sum: fixed, so sums do not depend on threads

// Per-chunk sums of assigned vectors, counts and squared errors: partial [chunks, k, dim + 1].
double accumulate_chunks(const NormalGrid& g, const std::vector<float>& x, int64_t n,
                         std::vector<double>& partial, std::vector<double>& chunk_err) {
  const GridSearch search(g);
  const int dim = g.dim;
  const int64_t k = g.n_points(), chunks = (n + kChunk - 1) / kChunk;
  std::fill(partial.begin(), partial.end(), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    int32_t codes[kChunk];
    const int64_t b = ch * kChunk, m = std::min(kChunk, n - b);
    search.nearest(x.data() + b * dim, m, codes);
    double* acc = partial.data() + ch * k * (dim + 1);
    double err = 0.0;
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x.data() + (b + i) * dim;
      double* a = acc + codes[i] * (dim + 1);
      for (int d = 0; d < dim; ++d) a[d] += xi[d];
      a[dim] += 1.0;
      err += dist2(xi, g.point(codes[i]), dim);
    }
    chunk_err[static_cast<size_t>(ch)] = err;
  }
  double total = 0.0;
  for (double e : chunk_err) total += e;
  return total / static_cast<double>(n * dim);
}

// Moves every point to the mean of its samples (an empty cell keeps its point).
void move_to_centroids(NormalGrid& g, const std::vector<double>& partial, int64_t chunks) {
  const int dim = g.dim;
  const int64_t k = g.n_points();
  for (int64_t p = 0; p < k; ++p) {
    double sum[3] = {0.0, 0.0, 0.0};
    for (int64_t ch = 0; ch < chunks; ++ch)
      for (int d = 0; d <= dim; ++d)
        sum[d] += partial[static_cast<size_t>((ch * k + p) * (dim + 1) + d)];
    if (sum[dim] == 0.0) continue;
    for (int d = 0; d < dim; ++d)
      g.points[static_cast<size_t>(p * dim + d)] = static_cast<float>(sum[d] / sum[dim]);
  }
}

NormalGrid table_grid(int bits) {
  const std::span<const double> half = lloyd_max_table(bits);
  NormalGrid g;
  g.bits = bits;
  g.dim = 1;
  std::vector<double> levels;
  for (auto it = half.rbegin(); it != half.rend(); ++it) levels.push_back(-*it);
  for (double v : half) levels.push_back(v);
  for (double v : levels) g.points.push_back(static_cast<float>(v));
  g.mse = gaussian_mse(levels);
  return g;
}

}  // namespace

std::span<const double> lloyd_max_table(int bits) {
  switch (bits) {
    case 2:
      return kLevels2;
    case 3:
      return kLevels3;
    case 4:
      return kLevels4;
    default:
      fail("no published Lloyd-Max table at {} bits (2, 3 or 4)", bits);
  }
}

double gaussian_cell_mean(double a, double b) {
  const double p = cdf(b) - cdf(a);
  CDQ_ASSERT(p > 0.0);
  return (pdf(a) - pdf(b)) / p;
}

std::vector<double> lloyd_max_levels(int bits, double tol, int max_iters) {
  check_bits_dim(bits, 1);
  const int n = 1 << bits;
  std::vector<double> c(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    c[static_cast<size_t>(i)] = -2.0 + 4.0 * (i + 0.5) / n;  // spread start
  std::vector<double> t(static_cast<size_t>(n + 1));
  for (int it = 0; it < max_iters; ++it) {
    t.front() = -kInf;
    t.back() = kInf;
    for (int i = 1; i < n; ++i)
      t[static_cast<size_t>(i)] = 0.5 * (c[static_cast<size_t>(i - 1)] + c[static_cast<size_t>(i)]);
    double moved = 0.0;
    for (int i = 0; i < n; ++i) {
      const double m = gaussian_cell_mean(t[static_cast<size_t>(i)], t[static_cast<size_t>(i + 1)]);
      moved = std::max(moved, std::abs(m - c[static_cast<size_t>(i)]));
      c[static_cast<size_t>(i)] = m;
    }
    if (moved < tol) break;
  }
  return c;
}

double gaussian_mse(std::span<const double> levels) {
  const auto n = static_cast<int64_t>(levels.size());
  CDQ_CHECK(n >= 1, "gaussian_mse needs at least one level");
  double mse = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double a =
        i == 0 ? -kInf
               : 0.5 * (levels[static_cast<size_t>(i - 1)] + levels[static_cast<size_t>(i)]);
    const double b =
        i == n - 1 ? kInf
                   : 0.5 * (levels[static_cast<size_t>(i)] + levels[static_cast<size_t>(i + 1)]);
    const double c = levels[static_cast<size_t>(i)];
    const double p = cdf(b) - cdf(a);
    const double m1 = pdf(a) - pdf(b);        // E[x; a < x < b]
    const double m2 = p + xpdf(a) - xpdf(b);  // E[x^2; a < x < b]
    mse += m2 - 2.0 * c * m1 + c * c * p;
  }
  return mse;
}

NormalGrid fit_gaussian_grid(int bits, int dim, const KMeansOptions& opts) {
  check_bits_dim(bits, dim);
  const int64_t n = opts.samples, k = int64_t{1} << (bits * dim);
  CDQ_CHECK(n >= 4 * k, "k-means of {} points needs at least {} samples, got {}", k, 4 * k, n);
  const std::vector<float> x = gaussian_samples(n, dim, opts.seed);  // [n, dim]
  Rng rng(opts.seed ^ 0x6B6D'6561'6E73ULL);
  NormalGrid g;
  g.bits = bits;
  g.dim = dim;
  g.points = kmeans_pp(x, n, dim, k, rng);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks * k * (dim + 1)));
  std::vector<double> chunk_err(static_cast<size_t>(chunks));
  double prev = kInf;
  for (int it = 0; it < opts.max_iters; ++it) {
    const double mse = accumulate_chunks(g, x, n, partial, chunk_err);
    if (prev - mse < opts.tol * mse) break;  // converged (Lloyd never raises the distortion)
    prev = mse;
    move_to_centroids(g, partial, chunks);
    g.fit_iterations = it + 1;
  }
  g.mse = accumulate_chunks(g, x, n, partial, chunk_err);
  return g;
}

const NormalGrid& normal_grid(int bits, int dim) {
  CDQ_CHECK(bits >= 2 && bits <= 4 && (dim == 1 || dim == 2),
            "HIGGS grids exist at 2, 3, 4 bits and dimension 1 or 2, got {} bits, dim {}", bits,
            dim);
  static std::once_flag once[3][2];
  static NormalGrid grids[3][2];
  const int b = bits - 2, d = dim - 1;
  std::call_once(once[b][d],
                 [&] { grids[b][d] = dim == 1 ? table_grid(bits) : fit_gaussian_grid(bits, dim); });
  return grids[b][d];
}

int32_t nearest_point(const NormalGrid& grid, const float* u) {
  float best = -std::numeric_limits<float>::infinity();
  int32_t arg = 0;
  for (int64_t p = 0; p < grid.n_points(); ++p) {
    const float* g = grid.point(p);
    float score = 0.0f;
    for (int d = 0; d < grid.dim; ++d) score += 2.0f * u[d] * g[d] - g[d] * g[d];
    if (score > best) {
      best = score;
      arg = static_cast<int32_t>(p);
    }
  }
  return arg;
}

GridSearch::GridSearch(const NormalGrid& grid)
    : dim_(grid.dim),
      points_(search_points(grid)),
      indexed_(grid.dim == 2 && grid.n_points() >= kIndexedPoints) {
  if (indexed_) cells_ = build_index(grid);
}

template <typename Code>
void GridSearch::run(const float* u, int64_t n, Code* codes) const {
  if (!indexed_) return assign_range(points_, dim_, u, n, codes);
  for (int64_t i = 0; i < n; ++i)
    codes[i] = static_cast<Code>(nearest_indexed(points_, cells_, u[2 * i], u[2 * i + 1]));
}

void GridSearch::nearest(const float* u, int64_t n, uint8_t* codes) const {
  CDQ_CHECK(points_.gx.size() <= 256, "codes of a {}-point grid do not fit a byte",
            points_.gx.size());
  run(u, n, codes);
}

void GridSearch::nearest(const float* u, int64_t n, int32_t* codes) const {
  run(u, n, codes);
}

void nearest_points(const NormalGrid& grid, const float* u, int64_t n, uint8_t* codes) {
  GridSearch(grid).nearest(u, n, codes);
}

double sampled_mse(const NormalGrid& grid, int64_t n, uint64_t seed) {
  const std::vector<float> x = gaussian_samples(n, grid.dim, seed);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks * grid.n_points() * (grid.dim + 1)));
  std::vector<double> chunk_err(static_cast<size_t>(chunks));
  return accumulate_chunks(grid, x, n, partial, chunk_err);
}

}  // namespace cdq
