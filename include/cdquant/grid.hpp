// Quantization grids. Every solver picks integer codes on an affine grid that is fixed per
// (row, group of input columns):  value = scale[r, g] * q + bias[r, g],  q in {0 .. maxq},
// g = g_idx[c]. Uniform integer grids (value = scale * (q - zero)) also keep their integer
// zero points for export (bias = -scale * zero). GGUF block formats fill scale/bias from their
// (quantized) block scales, so RTN, GPTQ and CD run on them unchanged.
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
  int maxq = 0;
  std::vector<int32_t> g_idx;  // [d_in] group of each input column
  std::vector<float> scale;    // [d_out, n_groups]
  std::vector<float> bias;     // [d_out, n_groups]
  std::vector<int32_t> zero;   // [d_out, n_groups] integer zero points; empty for non-int grids

  int group_of(int64_t c) const { return g_idx[static_cast<size_t>(c)]; }
  size_t at(int64_t r, int g) const { return static_cast<size_t>(r * n_groups + g); }
  float value(int64_t r, int64_t c, int q) const {
    const size_t k = at(r, group_of(c));
    if (!zero.empty()) return scale[k] * static_cast<float>(q - zero[k]);  // as the reference
    return scale[k] * static_cast<float>(q) + bias[k];
  }
  // Nearest grid code to w in column c of row r (ties to even, as torch.round).
  int nearest(int64_t r, int64_t c, float w) const;
  bool is_integer_grid() const { return !zero.empty(); }
};

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
