// ggml's tensor types (the block formats GGUF files carry) as grids for the solvers.
//
// Every quantized ggml type decodes weight c of row r as  scale * q + bias  with q an integer
// code and (scale, bias) fixed per (row, sub-block): Q4_0 d*(q-8), Q4_1 d*q+m, Q4_K
// d*sc*q - dmin*m, ... So once the block parameters (fp16 d / dmin and the quantized sub-block
// scales) are chosen, the type is a cdq::Grid with one group per sub-block, any solver (RTN,
// GPTQ, CD) picks codes on it, and pack_codes writes the type's bytes. Decoding those bytes
// gives exactly grid.value(r, c, code): the grid holds the same float products ggml computes.
//
// Code spaces (grid.maxq): Q4_0/Q4_1/Q4_K 0..15, Q5_0/Q5_1/Q5_K 0..31, Q8_0 0..255 (int8 q =
// code - 128), Q2_K 0..3, Q3_K 0..7 (value dl*(code-4)), Q6_K 0..63 (value d*sc*(code-32)).
// IQ4_NL / IQ4_XS are codebook grids (Grid::levels = ggml's kvalues_iq4nl, -127 .. 113):
// value d * levels[code] (IQ4_NL, one fp16 d per 32 weights) or d * (ls - 32) * levels[code]
// (IQ4_XS, one fp16 d per 256 weights over eight 6-bit sub-scales, sub_scale = ls - 32 in
// -32..31); the CD family moves codes along the levels and refits d and the sub-scales.
#pragma once

#include <cdquant/ggml_type.hpp>
#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace cdq {

// Block parameters of a [rows, cols] matrix in a quantized type, before codes are chosen.
// Per-block arrays are [rows, cols / block_size], per-sub-block arrays [rows, cols / group_size].
struct QuantizedBlocks {
  GgmlType type = GgmlType::Q8_0;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint16_t> d;     // fp16 bits of the block scale d
  std::vector<uint16_t> dmin;  // fp16 bits: m of Q4_1/Q5_1, dmin of Q2_K/Q4_K/Q5_K; else empty
  // K-quants: the integer sub-block scale as the decoder uses it (Q2_K 0..15, Q3_K -32..31,
  // Q4_K/Q5_K 0..63, Q6_K -128..127); empty for the 32-weight types.
  std::vector<int16_t> sub_scale;
  std::vector<uint8_t> sub_min;  // Q2_K 0..15, Q4_K/Q5_K 0..63; else empty
  // Codes [rows, cols] the type's own rule chose along with the scales (ggml's reference
  // quantizer, or its importance-weighted variant); pack_codes(*this, codes) gives its bytes.
  std::vector<uint8_t> codes;
  // choose_block_scales_hqq: blocks that kept HQQ's fit (the others kept ggml's plain rule's).
  int64_t hqq_blocks = 0;

  int64_t blocks_per_row() const;
  int64_t groups_per_row() const;
  // The grid of values this type can decode with these block parameters (one group per
  // sub-block): grid.value(r, c, q) equals the decoded float bit for bit.
  Grid to_grid() const;
  int64_t groups_per_block() const;
  // Every group's integer multiplier of its block's d, [rows, groups_per_row()]: sub_scale
  // for K-quants, 1 for the 32-weight types (their group is the block).
  std::vector<int16_t> group_sub_scales() const;
  // Stores the block scales of a grid of the same layout that differs from to_grid() only by
  // its scales, each d' * group_sub[k] (a solver's refit of d and, for K-quants, of the integer
  // sub-scales; zero points and mins unchanged): sets d and sub_scale. Throws Error when the
  // grid is not of that form, a d' is not an fp16 value or a sub-scale leaves its bit field.
  void take_scales(const Grid& grid, const std::vector<int16_t>& group_sub);
};

// The integer sub-block scales (and mins) a type's bit fields hold: Q2_K 0..15 (mins 0..15),
// Q3_K -32..31, Q4_K/Q5_K 0..63 (mins 0..63), Q6_K -128..127; the 32-weight types' single
// group has the fixed sub-scale 1.
struct SubScaleRange {
  int lo = 1;
  int hi = 1;
  int min_hi = 0;  // 0: the type has no sub-block mins
};
SubScaleRange ggml_sub_scale_range(GgmlType t);

// ggml's imatrix from a layer Hessian: per-column importance diag(H) (proportional to
// llama.cpp's sum of x^2), floored at 1e-6 of its mean so that dead columns (H_cc = 0) do not
// zero a whole sub-block's weights. [d_in]
std::vector<float> ggml_importance(const Matrix& h);

// Chooses the block parameters of W [d_out, d_in] (d_in a multiple of the block size) by the
// type's own rule. importance [d_in] null: ggml's reference quantizer (quantize_row_*_ref).
// Non-null: the importance-weighted search ggml runs when given an imatrix (weighted least
// squares per sub-block, then for K-quants a weighted fit of the sub-block scales); pass the
// diagonal of H. Q8_0 has no weighted variant (importance is ignored). Quantized types only.
QuantizedBlocks choose_block_scales(const Matrix& w, GgmlType type, const float* importance);

// Whether the type stores mins (x ~ d q - m: Q4_1, Q5_1, Q2_K, Q4_K, Q5_K), the affine blocks
// HQQ's zero-point fit applies to.
bool ggml_has_min(GgmlType t);

// The block parameters of W by HQQ's lp fit (p = 0.7 by default) instead of ggml's rule, for
// the types with mins (ggml_hqq.cpp): d and m of Q4_1 / Q5_1, and for the K-quants the
// sub-block scales and mins within their bit fields with the fp16 d / dmin; a block where
// ggml's plain rule has the lower lp error keeps that rule's parameters (hqq_blocks counts
// the others). Codes: the nearest on the resulting grid. Throws Error for the other types
// (symmetric: no zero point to fit).
QuantizedBlocks choose_block_scales_hqq(const Matrix& w, GgmlType type, double p = 0.7);

// Writes the type's bytes for the block parameters and codes [rows, cols] (each <= maxq).
std::vector<uint8_t> pack_codes(const QuantizedBlocks& blocks, const std::vector<uint8_t>& codes);

// Decodes rows*cols weights stored row after row in the type (any supported type).
Matrix dequantize_tensor(GgmlType type, std::span<const uint8_t> bytes, int64_t rows, int64_t cols);

// The bytes of ggml's quantize_row_*_ref (its from_float_ref): quantize_reference(type, w)
// for every type but IQ4_NL, whose quantize_row_iq4_nl_ref skips the scale search that
// quantize_iq4_nl (llama-quantize's path, and choose_block_scales) runs.
std::vector<uint8_t> quantize_row_reference(GgmlType type, const Matrix& w);

// The bytes ggml writes for W in the type: quantize_row_*_ref for quantized types (or the
// imatrix variant when importance is given), plain conversion for F32/F16/BF16.
std::vector<uint8_t> quantize_reference(GgmlType type, const Matrix& w,
                                        const float* importance = nullptr);

// Rounds a row of activations in place to the values ggml's CPU backend multiplies instead
// (ActivationType, from ggml_vec_dot_type): per 32 (Q8_0, Q8_1) or 256 (Q8_K) values, int8 codes
// q = round(x * 127 / amax) (ties to even, as the x86 kernels round) decoded as fp16(amax / 127)
// * q; Q8_K: q = min(127, round(x * -127 / max)) with max the signed value of largest
// magnitude, decoded as the float (1 / (-127 / max)) * q; F16 / BF16: the nearest such value;
// F32: unchanged. The row length must be a multiple of the block. Q8_1's fp16 block sum enters
// ggml's Q4_1 / Q5_1 products as m * s instead of m * sum(d q) (a relative 2^-11 of the
// min term); that difference is not modelled.
void round_activations(ActivationType type, std::span<float> row);

}  // namespace cdq
