// HIGGS (data-free): per row, blocks of h consecutive inputs (d_in padded with zeros to a
// multiple of h); a block w is stored as its scale s = |w|_2 / sqrt(h) (fp16) and the codes of
// u = Had_h w / |w|_2 on an MSE-optimal N(0, 1) grid (p = 1 levels or p = 2 points). No random
// signs (HIGGS ships none). Since Had_h Had_h = h I and u ~= g (the grid values),
//     w = |w|_2 Had_h u / h = s Had_h u / sqrt(h)  ~=  w_hat = s Had_h g / sqrt(h),
// and |w - w_hat|^2 / |w|^2 = |u - g|^2 / h: the relative error is the grid's MSE per dimension.
// At inference the layer needs the online transform x <- Had_h x / sqrt(h) of its inputs.
//
// The data-aware variant works in the rotated basis R = blockdiag(Had_h / sqrt(h)) (orthogonal,
// symmetric): W' = W R^T, H' = R H R^T keep the layer objective, and there each block is
// exactly s * u, so the HIGGS p = 1 grid is a codebook times a per-block scale (a codebook
// Grid, grid.hpp) on which GPTQ or CD can run coordinate-wise.
// Internal header: include as "quant/higgs.hpp".
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <cstdint>
#include <vector>

#include "quant/normal_grid.hpp"

namespace cdq {

struct HiggsSpec {
  int bits = 3;   // bits per weight of the grid: 2, 3 or 4
  int dim = 1;    // p: 1 (Lloyd-Max levels) or 2 (2^(2 bits) points on pairs of entries)
  int64_t h = 0;  // block size, a power of two (64..1024 in practice); 0: higgs_default_block
};

// Default block size for d_in inputs: the largest power of two <= 512 that "fits" d_in, where
// fitting means h <= d_in rounded up to a power of two, i.e. min(512, next_pow2(d_in)), but at
// least 64 (rows narrower than 64 are padded to one block of 64).
int64_t higgs_default_block(int64_t d_in);

// Nominal bits per weight: b for the codes plus one fp16 scale per block of h.
double higgs_bits_per_weight(int bits, int64_t h);

struct HiggsCodes {
  int64_t d_out = 0;
  int64_t d_in = 0;
  int64_t h = 0;
  int64_t n_blocks = 0;  // per row: ceil(d_in / h)
  int bits = 0;
  int dim = 0;
  std::vector<uint8_t> codes;  // [d_out, n_blocks * h / dim] grid point index per dim entries
  std::vector<float> scales;   // [d_out, n_blocks] s = |w|_2 / sqrt(h), fp16-representable

  int64_t d_pad() const { return n_blocks * h; }
  int64_t codes_per_row() const { return d_pad() / dim; }
};

// Quantizes W [d_out, d_in]. OpenMP over rows; deterministic.
HiggsCodes higgs_quantize(const Matrix& w, const HiggsSpec& spec);

// w_hat [d_out, d_in] in the model's basis (the padding dropped).
Matrix higgs_dequantize(const HiggsCodes& q);

// Bits actually stored per weight of the d_out x d_in layer: codes and fp16 scales, padding
// included.
double higgs_stored_bits_per_weight(const HiggsCodes& q);

// --- data-aware pieces ---

// W' = W_pad R^T [d_out, d_pad]: W padded with zero columns to a multiple of h, then rotated.
Matrix higgs_rotate_weights(const Matrix& w, int64_t h);

// H' = R H_pad R^T [d_pad, d_pad]: H [d_in, d_in] padded with zero rows and columns, rotated.
// The padded directions carry no loss; H' is singular where padding was added (damp it).
Matrix higgs_rotate_hessian(const Matrix& hess, int64_t h);

// Back to the model's basis: (Q' R) [d_out, d_in], the padding columns dropped.
Matrix higgs_unrotate_weights(const Matrix& q_rotated, int64_t d_in, int64_t h);

// The HIGGS p = 1 codebook on rotated weights W' [d_out, d_pad]: a codebook Grid with groups
// of h columns, scale |w'_block|_2 / sqrt(h) (fp16), bias 0 and the 2^bits Lloyd-Max levels.
// round_to_grid / dequantize / the solvers (GridConstraint::kept) take it as any grid.
Grid higgs_codebook_grid(const Matrix& w_rotated, int bits, int64_t h);

}  // namespace cdq
