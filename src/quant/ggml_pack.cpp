// Writes ggml blocks from block parameters and grid codes (the inverse of ggml_decode.cpp's
// bit layout), and the reference bytes of a matrix in any supported type.
#include <cdquant/half.hpp>
#include <cstring>

#include "quant/ggml_blocks.hpp"
#include "quant/ggml_quants.hpp"

namespace cdq {
namespace {

using namespace ggml;

// Views of one row's block parameters.
struct RowIn {
  const uint16_t* d;
  const uint16_t* dmin;
  const int16_t* sc;
  const uint8_t* mn;
  const uint8_t* codes;
};

void pack_nibbles(const uint8_t* c, uint8_t* qs) {  // weights j and j+16 share byte j
  for (int j = 0; j < kQK / 2; ++j)
    qs[j] = static_cast<uint8_t>((c[j] & 0xF) | (c[j + kQK / 2] << 4));
}
void pack_fifth_bits(const uint8_t* c, uint8_t* qh) {
  uint32_t bits = 0;
  for (int j = 0; j < kQK; ++j) bits |= static_cast<uint32_t>((c[j] >> 4) & 1) << j;
  std::memcpy(qh, &bits, 4);
}

void pack_block(GgmlType t, const RowIn& in, int64_t b, uint8_t* out) {
  const uint8_t* c = in.codes + b * ggml_traits(t).block_size;
  switch (t) {
    case GgmlType::Q4_0: {
      BlockQ4_0 blk{in.d[b], {}};
      pack_nibbles(c, blk.qs);
      return store_block(blk, out);
    }
    case GgmlType::Q4_1: {
      BlockQ4_1 blk{in.d[b], in.dmin[b], {}};
      pack_nibbles(c, blk.qs);
      return store_block(blk, out);
    }
    case GgmlType::Q5_0: {
      BlockQ5_0 blk{in.d[b], {}, {}};
      pack_nibbles(c, blk.qs);
      pack_fifth_bits(c, blk.qh);
      return store_block(blk, out);
    }
    case GgmlType::Q5_1: {
      BlockQ5_1 blk{in.d[b], in.dmin[b], {}, {}};
      pack_nibbles(c, blk.qs);
      pack_fifth_bits(c, blk.qh);
      return store_block(blk, out);
    }
    case GgmlType::Q8_0: {
      BlockQ8_0 blk{in.d[b], {}};
      for (int j = 0; j < kQK; ++j) blk.qs[j] = static_cast<int8_t>(c[j] - 128);
      return store_block(blk, out);
    }
    case GgmlType::Q2_K: {
      BlockQ2_K blk{};
      const int64_t g0 = b * 16;
      for (int j = 0; j < 16; ++j)
        blk.scales[j] = static_cast<uint8_t>(in.sc[g0 + j] | (in.mn[g0 + j] << 4));
      for (int e = 0; e < kQKK; ++e)
        blk.qs[q2_byte(e)] |= static_cast<uint8_t>(c[e] << q2_shift(e));
      blk.d = in.d[b];
      blk.dmin = in.dmin[b];
      return store_block(blk, out);
    }
    case GgmlType::Q3_K: {
      BlockQ3_K blk{};
      for (int j = 0; j < 16; ++j) set_scale_q3k(j, in.sc[b * 16 + j] + 32, blk.scales);
      for (int e = 0; e < kQKK; ++e) {
        blk.qs[q2_byte(e)] |= static_cast<uint8_t>((c[e] & 3) << q2_shift(e));
        blk.hmask[e % 32] |= static_cast<uint8_t>(((c[e] >> 2) & 1) << (e / 32));
      }
      blk.d = in.d[b];
      return store_block(blk, out);
    }
    case GgmlType::Q4_K: {
      BlockQ4_K blk{in.d[b], in.dmin[b], {}, {}};
      for (int j = 0; j < 8; ++j)
        set_scale_min_k4(j, in.sc[b * 8 + j], in.mn[b * 8 + j], blk.scales);
      for (int e = 0; e < kQKK; ++e)
        blk.qs[q4k_byte(e)] |= static_cast<uint8_t>(c[e] << q4k_shift(e));
      return store_block(blk, out);
    }
    case GgmlType::Q5_K: {
      BlockQ5_K blk{in.d[b], in.dmin[b], {}, {}, {}};
      for (int j = 0; j < 8; ++j)
        set_scale_min_k4(j, in.sc[b * 8 + j], in.mn[b * 8 + j], blk.scales);
      for (int e = 0; e < kQKK; ++e) {
        blk.qs[q4k_byte(e)] |= static_cast<uint8_t>((c[e] & 0xF) << q4k_shift(e));
        blk.qh[e % 32] |= static_cast<uint8_t>((c[e] >> 4) << (e / 32));
      }
      return store_block(blk, out);
    }
    case GgmlType::Q6_K: {
      BlockQ6_K blk{};
      for (int j = 0; j < 16; ++j) blk.scales[j] = static_cast<int8_t>(in.sc[b * 16 + j]);
      for (int e = 0; e < kQKK; ++e) {
        blk.ql[q6_ql_byte(e)] |= static_cast<uint8_t>((c[e] & 0xF) << q6_ql_shift(e));
        blk.qh[q6_qh_byte(e)] |= static_cast<uint8_t>((c[e] >> 4) << q6_qh_shift(e));
      }
      blk.d = in.d[b];
      return store_block(blk, out);
    }
    case GgmlType::IQ4_NL: {
      BlockIQ4_NL blk{in.d[b], {}};
      pack_nibbles(c, blk.qs);
      return store_block(blk, out);
    }
    case GgmlType::IQ4_XS: {
      BlockIQ4_XS blk{in.d[b], 0, {}, {}};
      for (int j = 0; j < 8; ++j) {
        set_scale_iq4xs(j, in.sc[b * 8 + j] + 32, blk.scales_h, blk.scales_l);
        pack_nibbles(c + 32 * j, blk.qs + 16 * j);
      }
      return store_block(blk, out);
    }
    default:
      CDQ_ASSERT(false);
  }
}

// The sub-block parameters must fit their bit fields, or the bytes would decode differently.
void check_sub_params(const QuantizedBlocks& q) {
  const GgmlTypeTraits& tr = ggml_traits(q.type);
  if (tr.block_size == tr.group_size) return;  // no sub-blocks
  const SubScaleRange range = ggml_sub_scale_range(q.type);
  const int lo = range.lo, hi = range.hi, mhi = range.min_hi;
  const auto n = static_cast<size_t>(q.rows * q.groups_per_row());
  CDQ_CHECK(q.sub_scale.size() == n && (mhi == 0 || q.sub_min.size() == n),
            "{} blocks need {} sub-block scales{}", ggml_type_name(q.type), n,
            mhi ? " and mins" : "");
  for (size_t i = 0; i < n; ++i) {
    CDQ_CHECK(q.sub_scale[i] >= lo && q.sub_scale[i] <= hi, "{} sub-block scale {} outside {}..{}",
              ggml_type_name(q.type), q.sub_scale[i], lo, hi);
    CDQ_CHECK(mhi == 0 || q.sub_min[i] <= mhi, "{} sub-block min {} outside 0..{}",
              ggml_type_name(q.type), q.sub_min[i], mhi);
  }
}

std::vector<uint8_t> encode_floats(GgmlType type, const Matrix& w) {
  const size_t n = static_cast<size_t>(w.size());
  std::vector<uint8_t> out(n * (type == GgmlType::F32 ? 4 : 2));
  if (type == GgmlType::F32) {
    std::memcpy(out.data(), w.data.data(), n * 4);
    return out;
  }
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = type == GgmlType::F16 ? float_to_fp16(w.data[i]) : float_to_bf16(w.data[i]);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

}  // namespace

std::vector<uint8_t> pack_codes(const QuantizedBlocks& q, const std::vector<uint8_t>& codes) {
  const GgmlTypeTraits& tr = ggml_traits(q.type);
  CDQ_CHECK(tr.quantized(), "{} is not a quantized type", tr.name);
  CDQ_CHECK(q.cols % tr.block_size == 0 && q.rows >= 0, "{} blocks of a [{}, {}] matrix", tr.name,
            q.rows, q.cols);
  CDQ_CHECK(codes.size() == static_cast<size_t>(q.rows * q.cols),
            "pack_codes: {} codes for a [{}, {}] matrix", codes.size(), q.rows, q.cols);
  const int64_t bpr = q.blocks_per_row(), gpr = q.groups_per_row();
  CDQ_CHECK(q.d.size() == static_cast<size_t>(q.rows * bpr), "{} blocks need {} scales, got {}",
            tr.name, q.rows * bpr, q.d.size());
  const bool has_min = q.type == GgmlType::Q4_1 || q.type == GgmlType::Q5_1 ||
                       q.type == GgmlType::Q2_K || q.type == GgmlType::Q4_K ||
                       q.type == GgmlType::Q5_K;
  CDQ_CHECK(!has_min || q.dmin.size() == q.d.size(), "{} blocks need {} mins, got {}", tr.name,
            q.d.size(), q.dmin.size());
  check_sub_params(q);
  for (size_t i = 0; i < codes.size(); ++i)
    CDQ_CHECK(codes[i] <= tr.maxq, "{} code {} at index {} exceeds {}", tr.name, codes[i], i,
              tr.maxq);

  const uint64_t row_bytes = ggml_row_bytes(q.type, q.cols);
  std::vector<uint8_t> out(row_bytes * static_cast<uint64_t>(q.rows));
#pragma omp parallel for schedule(static) if (codes.size() > (1u << 16))
  for (int64_t r = 0; r < q.rows; ++r) {
    RowIn in{q.d.data() + r * bpr, has_min ? q.dmin.data() + r * bpr : nullptr,
             q.sub_scale.empty() ? nullptr : q.sub_scale.data() + r * gpr,
             q.sub_min.empty() ? nullptr : q.sub_min.data() + r * gpr, codes.data() + r * q.cols};
    uint8_t* dst = out.data() + static_cast<size_t>(r) * row_bytes;
    for (int64_t b = 0; b < bpr; ++b) pack_block(q.type, in, b, dst + b * tr.type_size);
  }
  return out;
}

std::vector<uint8_t> quantize_reference(GgmlType type, const Matrix& w, const float* importance) {
  if (!ggml_traits(type).quantized()) return encode_floats(type, w);
  const QuantizedBlocks q = choose_block_scales(w, type, importance);
  return pack_codes(q, q.codes);
}

SubScaleRange ggml_sub_scale_range(GgmlType t) {
  switch (t) {
    case GgmlType::Q2_K:
      return {0, 15, 15};
    case GgmlType::Q3_K:
    case GgmlType::IQ4_XS:
      return {-32, 31, 0};
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
      return {0, 63, 63};
    case GgmlType::Q6_K:
      return {-128, 127, 0};
    default:
      return {};
  }
}

}  // namespace cdq
