// HQQ's lp fit (quant/hqq.hpp) of the block parameters of ggml's types with mins, whose blocks
// decode affinely, x ~ scale * q + bias (ggml_quants.hpp):
//  - Q4_1 / Q5_1: per 32-weight block d = 1/s and m = -z/s from HQQ on groups of 32 (min-max
//    scale, zero point fitted to sum |W - Wr|^0.7), both rounded to fp16.
//  - Q2_K / Q4_K / Q5_K: per sub-block (16 or 32 weights) HQQ gives a float scale and min;
//    the scales are quantized as ggml does (fp16 d = the super-block's largest scale / Q,
//    sub-scale nearest(scale / d) in 1..Q, Q = 15 for Q2_K, 63 otherwise), then HQQ fits each
//    sub-block's zero point again at that quantized scale, and the mins are quantized the same
//    way (fp16 dmin, sub-mins 0..Q). ggml's mins are non-negative (bias = -dmin * m <= 0), so a
//    sub-block whose fitted min is negative (all its weights above 0) gets min 0, as ggml's own
//    search clamps it.
// Then each block keeps HQQ's parameters or ggml's plain rule's, whichever has the lower lp
// error (keep_better_blocks), so the result's lp error never exceeds the plain rule's. Codes
// are the nearest on the final grid (RTN, as HQQ's Wq). The early stop is HQQ's: one
// criterion (mean |W - Wr|) for the whole matrix.
#include <algorithm>
#include <cdquant/half.hpp>
#include <cmath>

#include "quant/ggml_blocks.hpp"
#include "quant/ggml_quants.hpp"
#include "quant/hqq.hpp"

namespace cdq {

namespace {

int code_bits(int maxq) {
  int b = 0;
  while ((1 << b) - 1 < maxq) ++b;
  return b;
}

HqqSpec spec_for(const GgmlTypeTraits& tr, double p) {
  HqqSpec s;  // HQQ's defaults otherwise (beta 10, kappa 1.01, 20 iterations, early stop)
  s.bits = code_bits(tr.maxq);
  s.group_size = tr.group_size;
  s.p = p;
  return s;
}

// Q4_1 / Q5_1: the block is the group.
void fit_legacy(const Matrix& w, const GgmlTypeTraits& tr, double p, QuantizedBlocks& q) {
  const Grid g = hqq_quantize(w, spec_for(tr, p)).grid;
  for (size_t k = 0; k < g.scale.size(); ++k) {
    q.d[k] = float_to_fp16(g.scale[k]);
    q.dmin[k] = float_to_fp16(g.bias[k]);
  }
}

// Quantizes per-group values v >= 0 [rows, gpr] to fp16 block multipliers (the block's largest
// value / top) and integer multiples in [lo, top]: ggml's rule for K-quant sub-scales and mins.
void quantize_multipliers(const std::vector<float>& v, int64_t rows, int64_t gpr, int64_t gpb,
                          int lo, int top, std::vector<uint16_t>& block, std::vector<int>& sub) {
  const int64_t bpr = gpr / gpb;
  sub.assign(v.size(), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < bpr; ++b) {
      const size_t first = static_cast<size_t>(r * gpr + b * gpb);
      float mx = 0.0f;
      for (int64_t j = 0; j < gpb; ++j) mx = std::max(mx, v[first + j]);
      const uint16_t d = float_to_fp16(mx / static_cast<float>(top));
      block[static_cast<size_t>(r * bpr + b)] = d;
      const float df = fp16_to_float(d);
      for (int64_t j = 0; j < gpb; ++j)
        sub[first + j] = df > 0.0f ? std::clamp(ggml::nearest_int(v[first + j] / df), lo, top) : 0;
    }
}

void fit_k_quant(const Matrix& w, const GgmlTypeTraits& tr, double p, QuantizedBlocks& q) {
  const HqqSpec spec = spec_for(tr, p);
  const int top = ggml_sub_scale_range(q.type).hi;  // 15 (Q2_K) or 63
  const int64_t gpr = q.groups_per_row(), gpb = q.groups_per_block();
  const size_t n = static_cast<size_t>(w.rows * gpr);

  // 1. HQQ's float scale per sub-block; 2. quantized to d and sub-scales.
  const Grid first = hqq_quantize(w, spec).grid;
  std::vector<int> sc;
  quantize_multipliers(first.scale, w.rows, gpr, gpb, 1, top, q.d, sc);

  // 3. HQQ's zero points again, at the quantized scales (from the first fit's min). A block
  // whose scales are all zero (constant sub-blocks) keeps the first fit's mins.
  std::vector<float> inv(n), zero(n);
  for (size_t k = 0; k < n; ++k) {  // group k = r * gpr + j lies in block k / gpb
    const float scale =
        fp16_to_float(q.d[k / static_cast<size_t>(gpb)]) * static_cast<float>(sc[k]);
    inv[k] = scale > 0.0f ? 1.0f / scale : 1.0f;
    zero[k] = -first.bias[k] * inv[k];
  }
  const Grid second = hqq_quantize_from(w, spec, inv, std::move(zero)).grid;
  std::vector<float> mins(n);
  for (size_t k = 0; k < n; ++k) {
    const bool scaled = sc[k] > 0;
    mins[k] = std::max(0.0f, -(scaled ? second.bias[k] : first.bias[k]));
  }
  // 4. The mins quantized to dmin and sub-mins.
  std::vector<int> mn;
  quantize_multipliers(mins, w.rows, gpr, gpb, 0, top, q.dmin, mn);
  for (size_t k = 0; k < n; ++k) {
    q.sub_scale[k] = static_cast<int16_t>(sc[k]);
    q.sub_min[k] = static_cast<uint8_t>(mn[k]);
  }
}

// sum |w - value|^p of block b of row r (its columns [c0, c0 + n)) on grid g with codes.
double block_lp(const Matrix& w, const Grid& g, const std::vector<uint8_t>& codes, int64_t r,
                int64_t c0, int64_t n, double p) {
  double e = 0.0;
  for (int64_t c = c0; c < c0 + n; ++c) {
    const float q = g.affine_value(r, c, codes[static_cast<size_t>(r * w.cols + c)]);
    e += std::pow(std::abs(static_cast<double>(w(r, c)) - q), p);
  }
  return e;
}

// Keeps, block by block, whichever of HQQ's parameters (q) and ggml's rule's (ref) has the
// lower lp error at the nearest codes (HQQ's keep-the-best, with ggml's block as one more
// candidate start): measured on stories260K's weights, HQQ's own fit loses to ggml's search
// (which also moves the scale) on 2-4% more lp error overall for the K-quants, whose quantized
// sub-scales undo part of the fit. Returns the blocks that kept HQQ's.
int64_t keep_better_blocks(const Matrix& w, const QuantizedBlocks& ref, double p,
                           QuantizedBlocks& q) {
  const Grid gq = q.to_grid(), gr = ref.to_grid();
  const std::vector<uint8_t> cq = round_to_grid(gq, w), cr = round_to_grid(gr, w);
  const int64_t bpr = q.blocks_per_row(), gpb = q.groups_per_block();
  const int64_t bs = ggml_traits(q.type).block_size;
  int64_t kept = 0;
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t b = 0; b < bpr; ++b) {
      if (block_lp(w, gq, cq, r, b * bs, bs, p) <= block_lp(w, gr, cr, r, b * bs, bs, p)) {
        ++kept;
        continue;
      }
      const size_t k = static_cast<size_t>(r * bpr + b);
      q.d[k] = ref.d[k];
      q.dmin[k] = ref.dmin[k];
      for (int64_t j = 0; j < (q.sub_scale.empty() ? 0 : gpb); ++j) {
        q.sub_scale[k * gpb + j] = ref.sub_scale[k * gpb + j];
        q.sub_min[k * gpb + j] = ref.sub_min[k * gpb + j];
      }
    }
  return kept;
}

}  // namespace

bool ggml_has_min(GgmlType t) {
  return t == GgmlType::Q4_1 || t == GgmlType::Q5_1 || t == GgmlType::Q2_K || t == GgmlType::Q4_K ||
         t == GgmlType::Q5_K;
}

QuantizedBlocks choose_block_scales_hqq(const Matrix& w, GgmlType type, double p) {
  const GgmlTypeTraits& tr = ggml_traits(type);
  CDQ_CHECK(ggml_has_min(type),
            "HQQ fits zero points, which {} does not store (it is symmetric): only Q4_1, Q5_1, "
            "Q2_K, Q4_K and Q5_K take HQQ's block parameters",
            tr.name);
  CDQ_CHECK(w.rows > 0 && w.cols > 0 && w.cols % tr.block_size == 0,
            "{} needs rows whose length is a multiple of {}; got a [{}, {}] matrix", tr.name,
            tr.block_size, w.rows, w.cols);
  CDQ_CHECK(all_finite(w.span()), "cannot quantize to {}: the matrix has non-finite values",
            tr.name);
  QuantizedBlocks q;
  q.type = type;
  q.rows = w.rows;
  q.cols = w.cols;
  const auto n_blocks = static_cast<size_t>(w.rows * q.blocks_per_row());
  const auto n_groups = static_cast<size_t>(w.rows * q.groups_per_row());
  q.d.assign(n_blocks, 0);
  q.dmin.assign(n_blocks, 0);
  if (tr.block_size == ggml::kQKK) {
    q.sub_scale.assign(n_groups, 0);
    q.sub_min.assign(n_groups, 0);
    fit_k_quant(w, tr, p, q);
  } else {
    fit_legacy(w, tr, p, q);
  }
  q.hqq_blocks = keep_better_blocks(w, choose_block_scales(w, type, nullptr), p, q);
  q.codes = round_to_grid(q.to_grid(), w);
  return q;
}

}  // namespace cdq
