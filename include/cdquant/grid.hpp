// Quantization grids. Every solver picks integer codes on an affine grid that is fixed per
// (row, group of input columns):  value = scale[r, g] * q + bias[r, g],  q in {0 .. maxq},
// g = g_idx[c]. Uniform integer grids (value = scale * (q - zero)) also keep their integer
// zero points for export (bias = -scale * zero). GGUF block formats fill scale/bias from their
// (quantized) block scales, so RTN, GPTQ and CD run on them unchanged.
// Codebook grids (non-empty Grid::levels) replace the integer q by a level of a table shared
// by the whole matrix: value = scale[r, g] * levels[q] + bias[r, g], q in {0 .. levels - 1}
// (HIGGS's Lloyd-Max levels in its rotated basis, llama.cpp's IQ4_NL table).
#pragma once

#include <cdquant/matrix.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cdq {

enum class ScaleSearch {
  MinMax,  // range of the group (forced to include 0), as the GPTQ reference
  Mse,     // shrink the range by c in (1 - max_shrink, 1], keep the lowest |w - Q(w)|^norm
  Owc,     // the same search scored by the H-weighted error (CDQuant's optimal weight clipping)
  // HQQ's grid (quant/hqq.hpp): min-max scales, zero points fitted to the lp error (p = 0.7)
  // by half-quadratic splitting, then made integer (floor or ceil, whichever errs less), so
  // GPTQ checkpoints and the CD scale refit take it as any other integer grid. Data-free;
  // asymmetric grids only (HQQ's whole fit is the zero point).
  Hqq,
};

ScaleSearch parse_scale_search(std::string_view name);
const char* scale_search_name(ScaleSearch s);
// Every scale search's name, in enum order (what --scales takes).
std::vector<std::string> scale_search_names();

// Uniform integer grid specification.
struct GridSpec {
  int bits = 4;            // 2, 3, 4 or 8 (any 1..8 works)
  int group_size = 0;      // <= 0: one group per row (per-channel); else columns per group
  bool symmetric = false;  // zero fixed at 2^(bits-1)
  ScaleSearch search = ScaleSearch::MinMax;
  float max_shrink = 0.5f;  // MSE/OWC: candidates c = 1 - i/search_points, c > 1 - max_shrink
  int search_points = 100;
  float mse_norm = 2.0f;  // exponent of the plain-MSE score (the GPTQ reference uses 2.4)
  // OWC cost control: groups of at most owc_exact_cols columns score every candidate with the
  // exact quadratic e^T H_gg e (one BLAS product per candidate over all rows). Wider groups
  // (per-channel on wide layers, where that would cost O(d_in^2) per row per candidate) screen
  // all candidates with the block-diagonal part of H (blocks of owc_exact_cols) and score
  // exactly only min-max plus the owc_refine best screened candidates. owc_refine < 0: always
  // exact.
  int owc_exact_cols = 256;
  int owc_refine = 4;
  // Round every fitted scale to the nearest fp16 value (before its zero point is chosen), so
  // formats that store scales as fp16 (GPTQ checkpoints) reproduce the solver's grid exactly.
  bool fp16_scales = false;

  int maxq() const { return (1 << bits) - 1; }
};

struct Grid {
  int64_t d_out = 0;
  int64_t d_in = 0;
  int n_groups = 0;
  int maxq = 0;                // codebook grids: levels.size() - 1
  std::vector<int32_t> g_idx;  // [d_in] group of each input column
  std::vector<float> scale;    // [d_out, n_groups]
  std::vector<float> bias;     // [d_out, n_groups]
  std::vector<int32_t> zero;   // [d_out, n_groups] integer zero points; empty for non-int grids
  // Codebook: 2..256 strictly ascending levels shared by every (row, group), code q meaning
  // scale * levels[q] + bias. Empty: the affine grid scale * q + bias (or scale * (q - zero)).
  std::vector<float> levels;

  int group_of(int64_t c) const { return g_idx[static_cast<size_t>(c)]; }
  size_t at(int64_t r, int g) const { return static_cast<size_t>(r * n_groups + g); }
  float value(int64_t r, int64_t c, int q) const {
    return levels.empty() ? affine_value(r, c, q) : codebook_value(r, c, q);
  }
  // value() on a grid known to be affine (levels empty) or a codebook. Loops over many codes
  // branch once on is_codebook() and call these, so that the affine loops compile exactly as
  // they did before codebooks existed (same float operations and contractions, same speed).
  float affine_value(int64_t r, int64_t c, int q) const {
    const size_t k = at(r, group_of(c));
    if (!zero.empty()) return scale[k] * static_cast<float>(q - zero[k]);  // as the reference
    return scale[k] * static_cast<float>(q) + bias[k];
  }
  float codebook_value(int64_t r, int64_t c, int q) const {
    const size_t k = at(r, group_of(c));
    return scale[k] * levels[static_cast<size_t>(q)] + bias[k];
  }
  // Nearest grid code to w in column c of row r: affine grids round (w - bias) / scale to
  // nearest, ties to even (as torch.round); codebook grids take the level nearest to
  // (w - bias) / scale, ties to the lower level (nearest_level). A zero scale gives code 0
  // (the zero point's code on integer grids).
  int nearest(int64_t r, int64_t c, float w) const;
  bool is_integer_grid() const { return levels.empty() && !zero.empty(); }
  bool is_codebook() const { return !levels.empty(); }
};

// Index of the level nearest to x among n strictly ascending levels; of two equally near, the
// lower. Binary search: the tables are small (<= 256) and this sits in the solvers' inner loops.
inline int nearest_level(const float* levels, int n, float x) {
  int lo = 0, hi = n;  // first level >= x lies in [lo, hi]
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (levels[mid] < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return 0;
  if (lo == n) return n - 1;
  return x - levels[lo - 1] <= levels[lo] - x ? lo - 1 : lo;
}

// Makes `grid` (any layout, scales and biases) a codebook grid on `levels`: checks 2..256
// strictly ascending finite levels, sets maxq = levels.size() - 1 and drops the zero points.
void set_codebook(Grid& grid, std::vector<float> levels);

// Column layout only: contiguous groups of group_size (ragged last group), scales unset.
Grid make_grid_layout(int64_t d_out, int64_t d_in, int group_size, int maxq);

// Fits the grid for every (row, group) of W with spec.search. H [d_in, d_in] is needed for
// ScaleSearch::Owc (may be null otherwise).
Grid fit_grid(const Matrix& w, const GridSpec& spec, const Matrix* h);

// Dequantizes codes [d_out, d_in] on the grid.
Matrix dequantize(const Grid& grid, const std::vector<uint8_t>& codes);

// Round-to-nearest codes of W on the grid.
std::vector<uint8_t> round_to_grid(const Grid& grid, const Matrix& w);

}  // namespace cdq
