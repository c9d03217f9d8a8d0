// Quantization grids. Every solver picks integer codes on an affine grid that is fixed per
// (row, group of input columns):  value = scale[r, g] * q + bias[r, g],  q in {0 .. maxq},
// g = g_idx[c]. Uniform integer grids (value = scale * (q - zero)) also keep their integer
// zero points for export (bias = -scale * zero). GGUF block formats fill scale/bias from their
// (quantized) block scales, so RTN, GPTQ and CD run on them unchanged.
#pragma once

#include <cdquant/matrix.hpp>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace cdq {

enum class ScaleSearch {
  MinMax,  // range of the group (forced to include 0), as the GPTQ reference
  Mse,     // shrink the range by c in (1 - max_shrink, 1], keep the lowest |w - Q(w)|^norm
  Owc,     // the same search scored by the H-weighted error (CDQuant's optimal weight clipping)
};

ScaleSearch parse_scale_search(std::string_view name);
const char* scale_search_name(ScaleSearch s);

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

// The multiplier m of `count` groups whose scales are m * sub[k] (formats that store one scale
// for several groups, as ggml's K-quants): the scale of the first group with a nonzero sub over
// that sub (exact when m is an fp16 and |sub| < 2^8); nullopt when every sub is 0.
std::optional<float> shared_multiplier(const float* scale, const int16_t* sub, int64_t count);

// Column layout only: contiguous groups of group_size (ragged last group), scales unset.
Grid make_grid_layout(int64_t d_out, int64_t d_in, int group_size, int maxq);

// GPTQ reference min-max parameters of one group of n weights.
void minmax_params(const float* w, int64_t n, int bits, bool symmetric, float& scale,
                   int32_t& zero);

// Number of scale candidates spec.search tries (the reference loop: shrink factors
// p_i = 1 - i / search_points for i < max_shrink * search_points; i = 0 is min-max).
int scale_candidates(const GridSpec& spec);

// Rows x cols values of a row-major matrix (row r at data + r * ld): one group's columns.
struct ConstBlock {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;
  const float* row(int64_t r) const { return data + r * ld; }
};

// Fits (scale, zero) of one group of columns for every row with spec.search: row r's result
// goes to scale[r * stride], zero[r * stride]. h_block is the group's [cols, cols] diagonal
// block of H (needed for ScaleSearch::Owc, ignored otherwise). GPTQ calls this on the current
// (error-updated) columns of a dynamic group.
void fit_group_columns(const ConstBlock& w, const GridSpec& spec, const ConstBlock* h_block,
                       float* scale, int32_t* zero, int64_t stride);

// One row's group of n values; h_block: [n, n] row-major (Owc only, else may be null).
void fit_group_params(const float* values, int64_t n, const GridSpec& spec, const float* h_block,
                      float& scale, int32_t& zero);

// H-weighted error e^T H_gg e of one row's group when its values are rounded to (scale, zero):
// the OWC criterion (double accumulation). h_block: [n, n] row-major with leading dim ldh.
double owc_score(const float* values, int64_t n, int maxq, float scale, int32_t zero,
                 const float* h_block, int64_t ldh);

// sum |Q(w) - w|^norm of one row's group: the MSE criterion (double accumulation).
double mse_score(const float* values, int64_t n, int maxq, float scale, int32_t zero, float norm);

// Fits the grid for every (row, group) of W with spec.search. H [d_in, d_in] is needed for
// ScaleSearch::Owc (may be null otherwise).
Grid fit_grid(const Matrix& w, const GridSpec& spec, const Matrix* h);

// Dequantizes codes [d_out, d_in] on the grid.
Matrix dequantize(const Grid& grid, const std::vector<uint8_t>& codes);

// Round-to-nearest codes of W on the grid.
std::vector<uint8_t> round_to_grid(const Grid& grid, const Matrix& w);

}  // namespace cdq
