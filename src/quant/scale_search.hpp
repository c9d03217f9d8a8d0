// The scale search behind fit_grid (scale_search.cpp): one group's min-max / MSE / OWC / HQQ fit
// and its scores, and the shared-multiplier rule of formats that store one scale for several
// groups. Internal to quant (GPTQ fits dynamic groups with it; tests check each piece).
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <cstdint>
#include <optional>

namespace cdq {

// The multiplier m of `count` groups whose scales are m * sub[k] (formats that store one scale
// for several groups, as ggml's K-quants): the scale of the first group with a nonzero sub over
// that sub (exact when m is an fp16 and |sub| < 2^8); nullopt when every sub is 0.
std::optional<float> shared_multiplier(const float* scale, const int16_t* sub, int64_t count);

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

// HQQ's grid of W [d_out, d_in] for spec's bits and group size (quant/hqq.hpp; spec.search and
// the MSE/OWC fields are not read): integer zero points (floor or ceil of HQQ's) or, with
// integer_zero false, HQQ's own fractional ones (bias = -scale z, `zero` empty). With
// spec.fp16_scales every scale is then rounded to fp16 (its zero point kept). Throws for
// symmetric specs: HQQ fits nothing but the zero points.
Grid fit_hqq_grid(const Matrix& w, const GridSpec& spec, bool integer_zero);

// One row's group of n values; h_block: [n, n] row-major (Owc only, else may be null).
void fit_group_params(const float* values, int64_t n, const GridSpec& spec, const float* h_block,
                      float& scale, int32_t& zero);

// H-weighted error e^T H_gg e of one row's group when its values are rounded to (scale, zero):
// the OWC criterion (double accumulation). h_block: [n, n] row-major with leading dim ldh.
double owc_score(const float* values, int64_t n, int maxq, float scale, int32_t zero,
                 const float* h_block, int64_t ldh);

// sum |Q(w) - w|^norm of one row's group: the MSE criterion (double accumulation).
double mse_score(const float* values, int64_t n, int maxq, float scale, int32_t zero, float norm);

}  // namespace cdq
