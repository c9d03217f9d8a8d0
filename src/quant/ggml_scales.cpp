// Block parameters of ggml's quantized types, chosen by the type's own rule: ggml's reference
// quantizers (quantize_row_*_ref) and, given importance weights, the imatrix variants
// (quantize_row_*_impl), step for step. Each row chooser fills one row of QuantizedBlocks:
// fp16 d/dmin per block, the integer sub-block scales/mins, and the codes the rule picked.
#include <algorithm>
#include <cdquant/half.hpp>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <optional>

#include "quant/ggml_blocks.hpp"
#include "quant/ggml_quants.hpp"
#include "quant/ggml_search.hpp"
#include "quant/scale_search.hpp"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace cdq {
namespace {

using namespace ggml;

// One row of QuantizedBlocks: per block d/dmin, per sub-block sc/mn, per weight codes.
struct RowOut {
  uint16_t* d;
  uint16_t* dmin;  // null when the type has no min
  int16_t* sc;     // null for the 32-weight types
  uint8_t* mn;     // null unless Q2_K/Q4_K/Q5_K
  uint8_t* codes;
};

// C's float -> int8_t conversion of a value known to lie in int8's range: truncation.
int trunc_i8(float v) {
  return static_cast<int8_t>(static_cast<int>(v));
}

float sum_squares(const float* x, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

// ggml's imatrix weights: importance * sqrt(sigma2 + x^2).
void imatrix_weights(const float* qw, const float* x, int n, float sigma2, float* w) {
  for (int l = 0; l < n; ++l) w[l] = qw[l] * std::sqrt(sigma2 + x[l] * x[l]);
}

// ---- 32-weight types -------------------------------------------------------------------

// Q4_0 (nmax 8) and Q5_0 (nmax 16): d = signed max / -nmax, code = x/d + nmax rounded half up.
void choose_symmetric(const float* x, int64_t n, const float* imp, int nmax, RowOut out) {
  const float sigma2 = imp ? sum_squares(x, n) / static_cast<float>(n) : 0.0f;
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    uint8_t* codes = out.codes + b * kQK;
    if (imp) {
      float w[kQK];
      int8_t L[kQK];
      imatrix_weights(imp + b * kQK, xb, kQK, sigma2, w);
      out.d[b] = float_to_fp16(make_qx_quants(kQK, nmax, xb, L, 1, w));
      for (int j = 0; j < kQK; ++j) codes[j] = static_cast<uint8_t>(L[j]);
      continue;
    }
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(xb[j])) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    const float d = max / static_cast<float>(-nmax);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out.d[b] = float_to_fp16(d);
    const float offset = static_cast<float>(nmax) + 0.5f;
    for (int j = 0; j < kQK; ++j)
      codes[j] = static_cast<uint8_t>(std::min(2 * nmax - 1, trunc_i8(xb[j] * id + offset)));
  }
}

// Q4_1 (nmax 15) and Q5_1 (nmax 31): d = (max - min) / nmax, m = min, code rounded half up.
void choose_affine(const float* x, int64_t n, const float* imp, int nmax, RowOut out) {
  const float sigma2 = imp ? sum_squares(x, n) / static_cast<float>(n) : 0.0f;
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    uint8_t* codes = out.codes + b * kQK;
    if (imp) {
      float w[kQK], min = 0.0f;
      uint8_t Laux[kQK];
      imatrix_weights(imp + b * kQK, xb, kQK, sigma2, w);
      const float d = make_qkx_quants(kQK, nmax, xb, w, codes, &min, Laux, -0.9f, 0.05f, 36, false);
      out.d[b] = float_to_fp16(d);
      out.dmin[b] = float_to_fp16(-min);
      continue;
    }
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (xb[j] < min) min = xb[j];
      if (xb[j] > max) max = xb[j];
    }
    const float d = (max - min) / static_cast<float>(nmax);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out.d[b] = float_to_fp16(d);
    out.dmin[b] = float_to_fp16(min);
    for (int j = 0; j < kQK; ++j) {
      const float v = (xb[j] - min) * id + 0.5f;
      // Q4_1 clamps to 15 after an int8 cast; Q5_1 casts to uint8 with no clamp.
      codes[j] = nmax == 15 ? static_cast<uint8_t>(std::min(15, trunc_i8(v)))
                            : static_cast<uint8_t>(static_cast<int>(v));
    }
  }
}

// Q8_0: d = amax / 127, q = round half away from zero; code = q + 128.
void choose_q8_0(const float* x, int64_t n, RowOut out) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out.d[b] = float_to_fp16(d);
    for (int j = 0; j < kQK; ++j)
      out.codes[b * kQK + j] = static_cast<uint8_t>(static_cast<int>(std::round(xb[j] * id)) + 128);
  }
}

// ---- K-quants --------------------------------------------------------------------------

// Final pass of every K-quant: codes from the fp16 block parameters, skipped (keeping the
// search's codes) where a sub-block's scale decodes to zero.
void requantize_affine(const float* x, int group, int nmax, float d, float dmin, int sc, int m,
                       uint8_t* codes) {
  const float dl = d * static_cast<float>(sc);
  if (dl == 0.0f) return;
  const float dm = dmin * static_cast<float>(m);
  for (int i = 0; i < group; ++i)
    codes[i] = static_cast<uint8_t>(std::clamp(nearest_int((x[i] + dm) / dl), 0, nmax));
}
void requantize_symmetric(const float* x, int group, int nmax, float d, int sc, uint8_t* codes) {
  const float dl = d * static_cast<float>(sc);
  if (dl == 0.0f) return;
  for (int i = 0; i < group; ++i)
    codes[i] = static_cast<uint8_t>(std::clamp(nearest_int(x[i] / dl), -nmax, nmax - 1) + nmax);
}

void choose_q2_k_block(const float* x, const float* qw, RowOut o, int64_t b) {
  constexpr int kSub = kQKK / 16;
  float scales[kSub], mins[kSub], w[16];
  uint8_t L[kQKK], Laux[16], bytes[kSub];
  if (!qw) {
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < kSub; ++j) {
      for (int l = 0; l < 16; ++l) w[l] = std::fabs(x[16 * j + l]);
      scales[j] =
          make_qkx_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    // Scale nibble, then the min nibble OR-ed on top (as ggml, including its uint8 wrap).
    for (int j = 0; j < kSub; ++j)
      bytes[j] = max_scale > 0 ? static_cast<uint8_t>(nearest_int(15.0f / max_scale * scales[j]))
                               : uint8_t{0};
    o.d[b] = float_to_fp16(max_scale > 0 ? max_scale / 15.0f : 0.0f);
    if (max_min > 0)
      for (int j = 0; j < kSub; ++j)
        bytes[j] = static_cast<uint8_t>(bytes[j] | (nearest_int(15.0f / max_min * mins[j]) << 4));
    o.dmin[b] = float_to_fp16(max_min > 0 ? max_min / 15.0f : 0.0f);
  } else {
    const float sigma2 = sum_squares(x, kQKK) / static_cast<float>(kQKK);
    float sw[kSub];
    uint8_t Ls[kSub], Lm[kSub];
    for (int j = 0; j < kSub; ++j) {
      imatrix_weights(qw + 16 * j, x + 16 * j, 16, sigma2, w);
      sw[j] = 0.0f;
      for (int l = 0; l < 16; ++l) sw[j] += w[l];
      scales[j] = make_qkx_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f,
                                  36, false);
    }
    o.d[b] = float_to_fp16(make_qp_quants(kSub, 15, scales, Ls, sw));
    o.dmin[b] = float_to_fp16(make_qp_quants(kSub, 15, mins, Lm, sw));
    for (int j = 0; j < kSub; ++j) bytes[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
  }
  const float d = fp16_to_float(o.d[b]), dmin = fp16_to_float(o.dmin[b]);
  for (int j = 0; j < kSub; ++j) {
    o.sc[b * kSub + j] = bytes[j] & 0xF;
    o.mn[b * kSub + j] = bytes[j] >> 4;
    requantize_affine(x + 16 * j, 16, 3, d, dmin, bytes[j] & 0xF, bytes[j] >> 4, L + 16 * j);
  }
  std::memcpy(o.codes + b * kQKK, L, kQKK);
}

void choose_q3_k_block(const float* x, const float* qw, RowOut o, int64_t b) {
  constexpr int kSub = kQKK / 16;
  float scales[kSub];
  int8_t L[kQKK];
  uint8_t packed[12] = {};
  if (!qw) {
    float max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < kSub; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_scale != 0.0f) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < kSub; ++j) {
        const int l = static_cast<int8_t>(nearest_int(iscale * scales[j]));  // int8 as ggml
        set_scale_q3k(j, std::clamp(l, -32, 31) + 32, packed);
      }
      o.d[b] = float_to_fp16(1 / iscale);
    } else {
      o.d[b] = float_to_fp16(0.0f);
    }
  } else {
    const float sigma2 = 2 * sum_squares(x, kQKK) / static_cast<float>(kQKK);
    float w[16], sw[kSub];
    int8_t Ls[kSub];
    for (int j = 0; j < kSub; ++j) {
      imatrix_weights(qw + 16 * j, x + 16 * j, 16, sigma2, w);
      sw[j] = 0.0f;
      for (int l = 0; l < 16; ++l) sw[j] += w[l];
      scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, w);
    }
    const float d_block = make_qx_quants(kSub, 32, scales, Ls, 1, sw);
    for (int j = 0; j < kSub; ++j) set_scale_q3k(j, Ls[j], packed);
    o.d[b] = float_to_fp16(d_block);
  }
  const float d = fp16_to_float(o.d[b]);
  uint8_t* codes = o.codes + b * kQKK;
  for (int e = 0; e < kQKK; ++e) codes[e] = static_cast<uint8_t>(L[e]);
  for (int j = 0; j < kSub; ++j) {
    const int sc = get_scale_q3k(j, packed);
    o.sc[b * kSub + j] = static_cast<int16_t>(sc);
    requantize_symmetric(x + 16 * j, 16, 4, d, sc, codes + 16 * j);
  }
}

// Q4_K (nmax 15) and Q5_K (nmax 31): eight 32-weight sub-blocks with 6-bit scales and mins.
void choose_q45_k_block(const float* x, const float* qw, int nmax, RowOut o, int64_t b) {
  constexpr int kSub = kQKK / 32;
  float scales[kSub], mins[kSub], w[32];
  uint8_t L[kQKK], Laux[32], packed[12] = {};
  int ls[kSub], lm[kSub];
  if (!qw) {
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < kSub; ++j) {
      const float av_x = std::sqrt(sum_squares(x + 32 * j, 32) / 32.0f);
      for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(x[32 * j + l]);
      const float rmin = nmax == 15 ? -1.0f : -0.5f;
      const int nstep = nmax == 15 ? 20 : 15;
      scales[j] = make_qkx_quants(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f,
                                  nstep, false);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < kSub; ++j) {  // uint8 wrap then min(63), as ggml
      ls[j] =
          std::min(63, static_cast<int>(static_cast<uint8_t>(nearest_int(inv_scale * scales[j]))));
      lm[j] = std::min(63, static_cast<int>(static_cast<uint8_t>(nearest_int(inv_min * mins[j]))));
    }
    o.d[b] = float_to_fp16(max_scale / 63.0f);
    o.dmin[b] = float_to_fp16(max_min / 63.0f);
  } else {
    const float sigma2 = 2 * sum_squares(x, kQKK) / static_cast<float>(kQKK);
    float sw[kSub];
    uint8_t Ls[kSub], Lm[kSub];
    for (int j = 0; j < kSub; ++j) {
      imatrix_weights(qw + 32 * j, x + 32 * j, 32, sigma2, w);
      sw[j] = 0.0f;
      for (int l = 0; l < 32; ++l) sw[j] += w[l];
      scales[j] = make_qkx_quants(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f,
                                  36, false);
    }
    const float d_block = make_qp_quants(kSub, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(kSub, 63, mins, Lm, sw);
    for (int j = 0; j < kSub; ++j) {  // make_qp_quants keeps them <= 63
      ls[j] = Ls[j];
      lm[j] = Lm[j];
    }
    o.d[b] = float_to_fp16(d_block);
    o.dmin[b] = float_to_fp16(m_block);
  }
  for (int j = 0; j < kSub; ++j) set_scale_min_k4(j, ls[j], lm[j], packed);
  const float d = fp16_to_float(o.d[b]), dmin = fp16_to_float(o.dmin[b]);
  for (int j = 0; j < kSub; ++j) {
    int sc = 0, m = 0;
    get_scale_min_k4(j, packed, sc, m);
    o.sc[b * kSub + j] = static_cast<int16_t>(sc);
    o.mn[b * kSub + j] = static_cast<uint8_t>(m);
    requantize_affine(x + 32 * j, 32, nmax, d, dmin, sc, m, L + 32 * j);
  }
  std::memcpy(o.codes + b * kQKK, L, kQKK);
}

void choose_q6_k_block(const float* x, const float* qw, RowOut o, int64_t b) {
  constexpr int kSub = kQKK / 16;
  float scales[kSub];
  int8_t L[kQKK];
  float max_scale = 0.0f, max_abs_scale = 0.0f;
  for (int j = 0; j < kSub; ++j) {
    scales[j] = make_qx_quants(16, 32, x + 16 * j, L + 16 * j, 1, qw ? qw + 16 * j : nullptr);
    if (std::fabs(scales[j]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  uint8_t* codes = o.codes + b * kQKK;
  if (max_abs_scale < 1e-15f) {  // all-zero block: every byte zero
    o.d[b] = 0;
    std::fill(o.sc + b * kSub, o.sc + (b + 1) * kSub, int16_t{0});
    std::fill(codes, codes + kQKK, uint8_t{0});
    return;
  }
  const float iscale = -128.0f / max_scale;
  o.d[b] = float_to_fp16(1 / iscale);
  const float d = fp16_to_float(o.d[b]);
  for (int e = 0; e < kQKK; ++e) codes[e] = static_cast<uint8_t>(L[e]);
  for (int j = 0; j < kSub; ++j) {
    const int sc = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    o.sc[b * kSub + j] = static_cast<int16_t>(sc);
    requantize_symmetric(x + 16 * j, 16, 32, d, sc, codes + 16 * j);
  }
}

// ---- IQ4_NL / IQ4_XS --------------------------------------------------------------------

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS

// ggml's quantize_row_iq4_nl_impl on one block of `super` weights (32: IQ4_NL, 256: IQ4_XS) in
// sub-blocks of 32: per sub-block the signed max's scale, its weighted least-squares refit and
// (ntry > 0) 2 ntry + 1 more candidate scales; IQ4_XS then quantizes the sub-block scales to
// 6 bits of d = -max_scale / 32 and re-picks the codes with them (d unrounded, as ggml). ntry
// 7: quantize_iq4_nl / quantize_iq4_xs, what llama-quantize writes with or without an imatrix;
// ntry -1: quantize_row_iq4_nl_ref (no search, codes of the first scale). A sub-block with
// max |x| < 1e-15 gets scale 0; ggml leaves its codes as they were in its scratch array
// (uninitialised) under ntry -1, which decode to 0 all the same: here they stay 0.
void choose_iq4_block(const float* x, int super, const float* qw, int ntry, uint16_t* dh,
                      int16_t* sc, uint8_t* L) {
  const auto level = [](int l) { return static_cast<float>(kIq4Levels[l]); };
  const float v0 = level(0);
  float sigma2 = sum_squares(x, super);
  sigma2 *= 2.f / static_cast<float>(super);
  *dh = float_to_fp16(0.0f);
  float scales[kQKK / 32], weight[32];
  float max_scale = 0.0f, amax_scale = 0.0f;
  const int nsub = super / 32;
  for (int ib = 0; ib < nsub; ++ib) {
    const float* xb = x + ib * 32;
    uint8_t* Lb = L + ib * 32;
    if (qw) {
      imatrix_weights(qw + ib * 32, xb, 32, sigma2, weight);
    } else {
      for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
    }
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < kGroupMaxEps) {
      scales[ib] = 0.0f;
      continue;
    }
    float d = ntry > 0 ? -max / v0 : max / v0;
    float id = 1 / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const int l = best_index_iq4(id * xb[j]);
      Lb[j] = static_cast<uint8_t>(l);
      const float q = level(l), w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = static_cast<float>(itry + kIq4Levels[0]) / max;
      sumqx = sumq2 = 0.0f;
      for (int j = 0; j < 32; ++j) {
        const float q = level(best_index_iq4(id * xb[j])), w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    if (std::fabs(d) > amax_scale) {
      amax_scale = std::fabs(d);
      max_scale = d;
    }
  }
  if (nsub > 1) {
    const float d = -max_scale / 32;
    *dh = float_to_fp16(d);
    const float id = d != 0.0f ? 1 / d : 0.0f;
    for (int ib = 0; ib < nsub; ++ib) {
      const int l = std::clamp(nearest_int(id * scales[ib]), -32, 31);
      const float dl = d * static_cast<float>(l);
      const float idl = dl != 0.0f ? 1 / dl : 0.0f;
      for (int j = 0; j < 32; ++j)
        L[32 * ib + j] = static_cast<uint8_t>(best_index_iq4(idl * x[32 * ib + j]));
      sc[ib] = static_cast<int16_t>(l);
    }
    return;
  }
  *dh = float_to_fp16(scales[0]);
  if (ntry > 0) {
    const float id = scales[0] != 0.0f ? 1 / scales[0] : 0.0f;
    for (int j = 0; j < super; ++j) L[j] = static_cast<uint8_t>(best_index_iq4(id * x[j]));
  }
}

void choose_row(GgmlType type, const float* x, int64_t n, const float* imp, RowOut out,
                bool row_ref) {
  if (type == GgmlType::IQ4_NL || type == GgmlType::IQ4_XS) {
    const int super = ggml_traits(type).block_size;
    for (int64_t b = 0; b < n / super; ++b)
      choose_iq4_block(x + b * super, super, imp ? imp + b * super : nullptr,
                       type == GgmlType::IQ4_NL && row_ref && !imp ? -1 : 7, out.d + b,
                       out.sc ? out.sc + b * (super / 32) : nullptr, out.codes + b * super);
    return;
  }
  switch (type) {
    case GgmlType::Q4_0:
      return choose_symmetric(x, n, imp, 8, out);
    case GgmlType::Q5_0:
      return choose_symmetric(x, n, imp, 16, out);
    case GgmlType::Q4_1:
      return choose_affine(x, n, imp, 15, out);
    case GgmlType::Q5_1:
      return choose_affine(x, n, imp, 31, out);
    case GgmlType::Q8_0:
      return choose_q8_0(x, n, out);
    default:
      break;
  }
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float* xb = x + b * kQKK;
    const float* qw = imp ? imp + b * kQKK : nullptr;
    switch (type) {
      case GgmlType::Q2_K:
        choose_q2_k_block(xb, qw, out, b);
        break;
      case GgmlType::Q3_K:
        choose_q3_k_block(xb, qw, out, b);
        break;
      case GgmlType::Q4_K:
        choose_q45_k_block(xb, qw, 15, out, b);
        break;
      case GgmlType::Q5_K:
        choose_q45_k_block(xb, qw, 31, out, b);
        break;
      case GgmlType::Q6_K:
        choose_q6_k_block(xb, qw, out, b);
        break;
      default:
        CDQ_ASSERT(false);
    }
  }
}

bool has_min(GgmlType t) {
  return t == GgmlType::Q4_1 || t == GgmlType::Q5_1 || t == GgmlType::Q2_K || t == GgmlType::Q4_K ||
         t == GgmlType::Q5_K;
}
bool is_k_quant(GgmlType t) {
  return ggml_traits(t).block_size == kQKK;
}

}  // namespace

int64_t QuantizedBlocks::blocks_per_row() const {
  return cols / ggml_traits(type).block_size;
}
int64_t QuantizedBlocks::groups_per_row() const {
  return cols / ggml_traits(type).group_size;
}

namespace {

QuantizedBlocks choose_blocks(const Matrix& w, GgmlType type, const float* importance,
                              bool row_ref) {
  const GgmlTypeTraits& tr = ggml_traits(type);
  CDQ_CHECK(tr.quantized(), "{} is not a quantized type: it has no block scales", tr.name);
  CDQ_CHECK(w.rows > 0 && w.cols > 0 && w.cols % tr.block_size == 0,
            "{} needs rows whose length is a multiple of {}; got a [{}, {}] matrix", tr.name,
            tr.block_size, w.rows, w.cols);
  CDQ_CHECK(all_finite(w.span()), "cannot quantize to {}: the matrix has non-finite values",
            tr.name);
  if (importance) {
    CDQ_CHECK(all_finite({importance, static_cast<size_t>(w.cols)}),
              "importance weights must be finite");
  }
  QuantizedBlocks q;
  q.type = type;
  q.rows = w.rows;
  q.cols = w.cols;
  const auto n_blocks = static_cast<size_t>(w.rows * q.blocks_per_row());
  const auto n_groups = static_cast<size_t>(w.rows * q.groups_per_row());
  q.d.assign(n_blocks, 0);
  if (has_min(type)) q.dmin.assign(n_blocks, 0);
  if (is_k_quant(type)) q.sub_scale.assign(n_groups, 0);
  if (has_min(type) && is_k_quant(type)) q.sub_min.assign(n_groups, 0);
  q.codes.assign(static_cast<size_t>(w.size()), 0);
  const int64_t bpr = q.blocks_per_row(), gpr = q.groups_per_row();
#pragma omp parallel for schedule(static) if (w.size() > (1 << 16))
  for (int64_t r = 0; r < w.rows; ++r) {
    RowOut out{q.d.data() + r * bpr, q.dmin.empty() ? nullptr : q.dmin.data() + r * bpr,
               q.sub_scale.empty() ? nullptr : q.sub_scale.data() + r * gpr,
               q.sub_min.empty() ? nullptr : q.sub_min.data() + r * gpr,
               q.codes.data() + r * w.cols};
    choose_row(type, w.row(r), w.cols, importance, out, row_ref);
  }
  return q;
}

}  // namespace

QuantizedBlocks choose_block_scales(const Matrix& w, GgmlType type, const float* importance) {
  return choose_blocks(w, type, importance, false);
}

std::vector<uint8_t> quantize_row_reference(GgmlType type, const Matrix& w) {
  if (!ggml_traits(type).quantized()) return quantize_reference(type, w);
  const QuantizedBlocks q = choose_blocks(w, type, nullptr, true);
  return pack_codes(q, q.codes);
}

// Symmetric types decode as scale * (code - zero) (ggml multiplies by the signed integer, so
// the grid keeps the integer zero point and evaluates the same product, even the sign of a
// zero); the others as scale * code - min.
namespace {
int symmetric_zero(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0:
      return 8;
    case GgmlType::Q5_0:
      return 16;
    case GgmlType::Q8_0:
      return 128;
    case GgmlType::Q3_K:
      return 4;
    case GgmlType::Q6_K:
      return 32;
    default:
      return 0;
  }
}
}  // namespace

Grid QuantizedBlocks::to_grid() const {
  const GgmlTypeTraits& tr = ggml_traits(type);
  Grid g = make_grid_layout(rows, cols, tr.group_size, tr.maxq);
  const int zero = symmetric_zero(type);
  if (zero > 0) g.zero.assign(g.scale.size(), zero);
  const int64_t gpr = groups_per_row(), bpr = blocks_per_row();
  const int64_t groups_per_block = tr.block_size / tr.group_size;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < gpr; ++j) {
      const size_t blk = static_cast<size_t>(r * bpr + j / groups_per_block);
      const size_t k = static_cast<size_t>(r * gpr + j);
      const float d = fp16_to_float(this->d[blk]);
      float scale = d, bias = 0.0f;
      switch (type) {
        case GgmlType::Q4_1:
        case GgmlType::Q5_1:
          bias = fp16_to_float(dmin[blk]);
          break;
        case GgmlType::Q2_K:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
          scale = d * static_cast<float>(sub_scale[k]);
          bias = -(fp16_to_float(dmin[blk]) * static_cast<float>(sub_min[k]));
          break;
        case GgmlType::Q3_K:
        case GgmlType::Q6_K:
        case GgmlType::IQ4_XS:
          scale = d * static_cast<float>(sub_scale[k]);
          break;
        default:
          break;  // Q4_0, Q5_0, Q8_0: scale d
      }
      if (zero > 0) bias = -static_cast<float>(zero) * scale;  // the same value, for bias users
      g.scale[k] = scale;
      g.bias[k] = bias;
    }
  }
  if (tr.codebook) {
    // value = scale * level + (-0): adding -0 leaves every product as it is, so even the sign
    // of a zero (a zero scale) is the decoder's.
    std::vector<float> levels(std::begin(ggml::kIq4Levels), std::end(ggml::kIq4Levels));
    set_codebook(g, std::move(levels));
    std::fill(g.bias.begin(), g.bias.end(), -0.0f);
  }
  return g;
}

int64_t QuantizedBlocks::groups_per_block() const {
  const GgmlTypeTraits& tr = ggml_traits(type);
  return tr.block_size / tr.group_size;
}

std::vector<int16_t> QuantizedBlocks::group_sub_scales() const {
  if (!sub_scale.empty()) return sub_scale;
  return std::vector<int16_t>(static_cast<size_t>(rows * groups_per_row()), 1);
}

void QuantizedBlocks::take_scales(const Grid& grid, const std::vector<int16_t>& group_sub) {
  const GgmlTypeTraits& tr = ggml_traits(type);
  CDQ_CHECK(tr.quantized(), "{} has no block scales", tr.name);
  const Grid before = to_grid();
  CDQ_CHECK(grid.d_out == rows && grid.d_in == cols && grid.n_groups == before.n_groups &&
                grid.zero == before.zero && group_sub.size() == before.scale.size(),
            "{} block scales: the grid is not laid out as this [{}, {}] tensor's blocks", tr.name,
            rows, cols);
  const SubScaleRange range = ggml_sub_scale_range(type);
  const int64_t per_block = groups_per_block();
  std::vector<uint16_t> new_d(d.size());
  for (size_t blk = 0; blk < d.size(); ++blk) {
    const size_t k0 = blk * static_cast<size_t>(per_block);
    const std::optional<float> m =
        shared_multiplier(grid.scale.data() + k0, group_sub.data() + k0, per_block);
    new_d[blk] = m ? float_to_fp16(*m) : d[blk];
    const float dv = fp16_to_float(new_d[blk]);
    for (size_t k = k0; k < k0 + static_cast<size_t>(per_block); ++k) {
      const int sub = group_sub[k];
      const float scale = dv * static_cast<float>(sub);
      const float bias = grid.is_integer_grid() ? grid.bias[k] : before.bias[k];
      CDQ_CHECK(
          sub >= range.lo && sub <= range.hi && grid.scale[k] == scale && grid.bias[k] == bias,
          "{} block {}: group scale {} / bias {} cannot be stored (fp16 d {} times "
          "sub-scale {} in {}..{}, bias {})",
          tr.name, blk, grid.scale[k], grid.bias[k], dv, sub, range.lo, range.hi, bias);
    }
  }
  d = std::move(new_d);
  if (!sub_scale.empty()) sub_scale = group_sub;
}

std::vector<float> ggml_importance(const Matrix& h) {
  std::vector<float> imp(static_cast<size_t>(h.rows));
  double mean = 0.0;
  for (int64_t c = 0; c < h.rows; ++c) mean += h(c, c);
  mean /= static_cast<double>(std::max<int64_t>(1, h.rows));
  const auto floor = static_cast<float>(1e-6 * mean) + 1e-30f;
  for (int64_t c = 0; c < h.rows; ++c) imp[static_cast<size_t>(c)] = std::max(h(c, c), floor);
  return imp;
}

}  // namespace cdq
