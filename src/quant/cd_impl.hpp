// Per-row drivers of the coordinate-descent variants (internal to src/quant/cd*.cpp).
#pragma once

#include <vector>

#include "quant/cd.hpp"
#include "quant/cd_kernels.hpp"

namespace cdq::cdk {

// Scale refit data (cd_rescale.cpp). grid is written, but each row only touches its own
// entries. hw: rows of W H [d_out, ld], needed for single-group (per-channel) grids only.
struct Rescale {
  Grid* grid = nullptr;  // null: codes only
  const float* hw = nullptr;
  const int32_t* cols = nullptr;   // columns of every group, group after group
  const int64_t* start = nullptr;  // [n_groups + 1] offsets into cols
  bool fp16 = false;               // stored scales are rounded to fp16
  int rounds = 0;                  // rescale + descent rounds (CdOptions::rescale_rounds)
  bool shift_zero = false;         // per-channel asymmetric rows also try zero +- 1
  int16_t* sub_scale = nullptr;    // CdOptions::sub_scale: shared fp16 multipliers d
  int block_groups = 1;
  int sub_lo = 1, sub_hi = 1;  // integer sub-scales move within this range (lo == hi: fixed)
};

// Read-only data shared by all rows.
struct Shared {
  const Matrix* h = nullptr;  // damped H [n, n]
  const float* hd = nullptr;  // H_jj, padded to ld with zeros
  int64_t n = 0;
  int64_t ld = 0;
  float maxq = 0.0f;
  Codebook codebook;  // levels of a codebook grid; null levels: affine
  const CdObserver* observer = nullptr;
  // BCD: blocks {i} + partners[i*(k-1) ..]; per block the inverse of H_B and a lower bound of
  // the smallest eigenvalue of H_B: [n, k*k + 1] (block_inverses).
  int k = 1;
  const int32_t* partners = nullptr;
  const float* block_inv = nullptr;
  // The descent every row runs (and resumes after a scale refit).
  CdKind kind = CdKind::Greedy;
  int64_t max_steps = 0;  // Greedy/Block steps per row
  int sweeps = 0;         // Cyclic passes
  Rescale rescale;
};

// Working state of one row.
struct Row {
  int64_t row = 0;
  RowState st{};
  double obj = 0.0;  // damped row objective, tracked through the accepted decreases
  float tol = 0.0f;  // a move must lower obj by more than this
  int64_t moves = 0;
  int64_t steps = 0;          // moves made by descend() (the warm cyclic sweeps are not counted)
  std::vector<double> trace;  // obj at the start and after every sweep-equivalent
};

// Reports a single-coordinate move to the observer (before c is updated).
void observe_single(const Shared& sh, const Row& r, int64_t i, float t, float dec);

// Cyclic sweeps over a batch of rows: coordinate i of every row, then i+1, ... so that row i of
// H stays in cache across the batch. Each row stops after a sweep that changed nothing.
void cyclic_sweeps(const Shared& sh, Row* rows, int count, int sweeps);

// Greedy CD on one row, at most max_steps moves.
void greedy_row(const Shared& sh, Row& r, int64_t max_steps);

// Block CD on one row, at most max_steps block moves.
void block_row(const Shared& sh, Row& r, int64_t max_steps);

// Columns of each group of the grid (group_of order), for the scale refit.
struct RescaleColumns {
  std::vector<int32_t> cols;
  std::vector<int64_t> start;
};
RescaleColumns group_columns(const Grid& grid);

// Greedy or block descent of one row with the steps left of sh.max_steps; cyclic rows get
// sh.sweeps passes (the first descent of a batch of cyclic rows runs batched in the caller).
void descend(const Shared& sh, Row& r);

// Scale refit of rows (at most kMaxRescaleRows; cd_rescale.cpp): rounds (sh.rescale.rounds at
// most) of "refit every group scale (or block multiplier d and sub-scales) to its optimum for
// the current codes, then descend", per row until nothing moves. Grids with several groups per
// row run the rows side by side, sharing each row of H read for the gradient updates; each row
// gets exactly the result of running alone. Per-channel rows run one by one and, when
// sh.rescale.shift_zero, also try their zero point -1 and +1.
constexpr int kMaxRescaleRows = 16;
void refit_rows(const Shared& sh, Row* rows, int count);

// BCD per-block data for every seed's block: H_B^{-1} (k*k) then a lower bound of the smallest
// eigenvalue of H_B (exact for k = 2, 1 / trace(H_B^{-1}) otherwise): [n, k*k + 1].
std::vector<float> block_inverses(const Matrix& h, const std::vector<int32_t>& partners, int k);

}  // namespace cdq::cdk
