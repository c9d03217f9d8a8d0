// MSE-optimal grids for the standard normal N(0, 1), the codebooks of HIGGS: after a
// Hadamard rotation the entries of a weight block are close to N(0, 1), so a grid that is
// optimal for the Gaussian is close to optimal for them.
//  - p = 1: Lloyd-Max levels (symmetric), the published table of ALGORITHMS.md, and the Lloyd
//    iteration on the Gaussian density (closed forms with erf/exp) that reproduces it.
//  - p = 2: 2^(2b) points in the plane fitted by k-means (Lloyd's algorithm) on seeded Gaussian
//    samples; pairs of consecutive rotated entries are coded jointly.
// Internal header: include as "quant/normal_grid.hpp".
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace cdq {

// A codebook of points in R^dim (dim = 1 or 2).
struct NormalGrid {
  int bits = 0;               // bits per dimension: n_points = 2^(bits * dim)
  int dim = 0;                // 1 or 2
  std::vector<float> points;  // [n_points, dim]
  double mse = 0.0;  // E|u - Q(u)|^2 / dim for u ~ N(0, I): exact for p = 1, on the fit's samples
                     // for p = 2
  int fit_iterations = 0;  // Lloyd iterations of the k-means fit (0 for the table)

  int64_t n_points() const { return static_cast<int64_t>(points.size()) / dim; }
  const float* point(int64_t k) const { return points.data() + k * dim; }
};

// Positive half of the published p = 1 Lloyd-Max levels at 2, 3 or 4 bits, ascending.
std::span<const double> lloyd_max_table(int bits);

// All 2^bits levels (ascending) computed by Lloyd's iteration on N(0, 1): cells between
// midpoints of neighbouring levels, each level moved to its cell's conditional mean, until the
// largest move is below tol.
std::vector<double> lloyd_max_levels(int bits, double tol = 1e-13, int max_iters = 100000);

// Exact E(x - Q(x))^2 for x ~ N(0, 1) and Q the nearest of the ascending levels.
double gaussian_mse(std::span<const double> levels);

// Conditional mean E[x | a < x < b] for x ~ N(0, 1) (a or b may be +-infinity).
double gaussian_cell_mean(double a, double b);

struct KMeansOptions {
  int64_t samples = int64_t{1} << 18;  // Gaussian vectors in R^dim to fit on
  uint64_t seed = 0x4849'4747'5332ULL;
  int max_iters = 300;
  double tol = 1e-5;  // stop when the distortion falls by less than this fraction per iteration
};

// k-means on seeded N(0, I_dim) samples: k-means++ seeding, then Lloyd iterations. Deterministic
// for a given options (partial sums in fixed chunks, whatever the thread count).
NormalGrid fit_gaussian_grid(int bits, int dim, const KMeansOptions& opts = {});

// The HIGGS grid at bits 2, 3, 4 and dim 1 (the published table) or 2 (fitted once per process
// with the default KMeansOptions, then cached; thread-safe).
const NormalGrid& normal_grid(int bits, int dim);

// Index of the point g maximising 2 u.g - |g|^2 (the nearest point; ties to the lowest index).
int32_t nearest_point(const NormalGrid& grid, const float* u);

// The same search prepared once per grid: 2 g and |g|^2 as arrays (scanned by tiles of
// vectors, which vectorises), and for 2-D grids of >= 64 points an exact cell index that
// limits each vector to the points that can be nearest in its cell. Queries are const,
// thread-safe and allocate nothing.
class GridSearch {
 public:
  explicit GridSearch(const NormalGrid& grid);

  // Nearest point of each of n vectors u [n, dim] (row-major) into codes [n].
  void nearest(const float* u, int64_t n, uint8_t* codes) const;
  void nearest(const float* u, int64_t n, int32_t* codes) const;

  // Implementation details, public so the search kernels can take them.
  struct Points {
    std::vector<float> gx, gy, norm2;  // [k] 2 g_x, 2 g_y (0 for dim 1), |g|^2
  };
  struct Cells {
    float lo = 0.0f, inv_cell = 0.0f;
    int cells = 0;               // per axis
    std::vector<int32_t> start;  // [cells^2 + 1]
    std::vector<int32_t> cand;   // candidate point indices, ascending per cell
  };

 private:
  template <typename Code>
  void run(const float* u, int64_t n, Code* codes) const;

  int dim_ = 1;
  Points points_;
  bool indexed_ = false;
  Cells cells_;
};

// Nearest point of each of n vectors u [n, dim] (row-major) into codes [n]; builds a
// GridSearch per call (build one and reuse it for many calls).
void nearest_points(const NormalGrid& grid, const float* u, int64_t n, uint8_t* codes);

// Mean squared error per dimension of the grid on n fresh N(0, I) vectors from seed.
double sampled_mse(const NormalGrid& grid, int64_t n, uint64_t seed);

}  // namespace cdq
