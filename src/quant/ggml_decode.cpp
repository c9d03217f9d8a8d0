// Decoding of every supported ggml type: the float expressions of ggml's dequantize_row_*,
// evaluated in the same order (products of fp16 d and small integers are exact in float, the
// only rounding is the final subtraction of the min), so the floats match ggml bit for bit.
#include <cdquant/half.hpp>
#include <cstring>

#include "quant/ggml_blocks.hpp"
#include "quant/ggml_quants.hpp"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace cdq {
namespace {

using namespace ggml;

void decode_q4_0(const uint8_t* p, float* y) {
  const auto b = load_block<BlockQ4_0>(p);
  const float d = fp16_to_float(b.d);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = static_cast<float>((b.qs[j] & 0xF) - 8) * d;
    y[j + kQK / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
  }
}

void decode_q4_1(const uint8_t* p, float* y) {
  const auto b = load_block<BlockQ4_1>(p);
  const float d = fp16_to_float(b.d), m = fp16_to_float(b.m);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = static_cast<float>(b.qs[j] & 0xF) * d + m;
    y[j + kQK / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
  }
}

uint32_t load_qh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, 4);  // little-endian hosts only (as ggml)
  return v;
}

// 5-bit code of weight j of a Q5_0 / Q5_1 block.
int q5_code(const uint8_t* qs, uint32_t qh, int j) {
  const int low = j < kQK / 2 ? (qs[j] & 0xF) : (qs[j - kQK / 2] >> 4);
  return low | static_cast<int>(((qh >> j) & 1u) << 4);
}

void decode_q5_0(const uint8_t* p, float* y) {
  const auto b = load_block<BlockQ5_0>(p);
  const float d = fp16_to_float(b.d);
  const uint32_t qh = load_qh(b.qh);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q5_code(b.qs, qh, j) - 16) * d;
}

void decode_q5_1(const uint8_t* p, float* y) {
  const auto b = load_block<BlockQ5_1>(p);
  const float d = fp16_to_float(b.d), m = fp16_to_float(b.m);
  const uint32_t qh = load_qh(b.qh);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q5_code(b.qs, qh, j)) * d + m;
}

void decode_q8_0(const uint8_t* p, float* y) {
  const auto b = load_block<BlockQ8_0>(p);
  const float d = fp16_to_float(b.d);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

void decode_q2_k(const uint8_t* p, float* y) {
  const auto b = load_block<BlockQ2_K>(p);
  const float d = fp16_to_float(b.d), dmin = fp16_to_float(b.dmin);
  for (int e = 0; e < kQKK; ++e) {
    const int sc = b.scales[e / 16];
    const float dl = d * static_cast<float>(sc & 0xF);
    const float ml = dmin * static_cast<float>(sc >> 4);
    const int q = (b.qs[q2_byte(e)] >> q2_shift(e)) & 3;
    y[e] = dl * static_cast<float>(q) - ml;
  }
}

void decode_q3_k(const uint8_t* p, float* y) {
  const auto b = load_block<BlockQ3_K>(p);
  const float d = fp16_to_float(b.d);
  for (int e = 0; e < kQKK; ++e) {
    const float dl = d * static_cast<float>(get_scale_q3k(e / 16, b.scales));
    const int low = (b.qs[q2_byte(e)] >> q2_shift(e)) & 3;
    const bool high = (b.hmask[e % 32] >> (e / 32)) & 1;
    y[e] = dl * static_cast<float>(low - (high ? 0 : 4));
  }
}

template <typename Block, bool kFifthBit>
void decode_q45_k(const uint8_t* p, float* y) {
  const auto b = load_block<Block>(p);
  const float d = fp16_to_float(b.d), dmin = fp16_to_float(b.dmin);
  for (int j = 0; j < kQKK / 32; ++j) {
    int sc = 0, m = 0;
    get_scale_min_k4(j, b.scales, sc, m);
    const float d1 = d * static_cast<float>(sc);
    const float m1 = dmin * static_cast<float>(m);
    for (int e = 32 * j; e < 32 * j + 32; ++e) {
      int q = (b.qs[q4k_byte(e)] >> q4k_shift(e)) & 0xF;
      if constexpr (kFifthBit) {
        if ((b.qh[e % 32] >> (e / 32)) & 1) q += 16;
      }
      y[e] = d1 * static_cast<float>(q) - m1;
    }
  }
}

void decode_q6_k(const uint8_t* p, float* y) {
  const auto b = load_block<BlockQ6_K>(p);
  const float d = fp16_to_float(b.d);
  for (int e = 0; e < kQKK; ++e) {
    const int low = (b.ql[q6_ql_byte(e)] >> q6_ql_shift(e)) & 0xF;
    const int high = (b.qh[q6_qh_byte(e)] >> q6_qh_shift(e)) & 3;
    const int q = (low | (high << 4)) - 32;
    y[e] = d * static_cast<float>(b.scales[e / 16]) * static_cast<float>(q);
  }
}

// 32 weights of one IQ4 sub-block: scale times the level of each nibble.
void decode_iq4_nibbles(const uint8_t* qs, float d, float* y) {
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(kIq4Levels[qs[j] & 0xF]);
    y[j + kQK / 2] = d * static_cast<float>(kIq4Levels[qs[j] >> 4]);
  }
}

void decode_iq4_nl(const uint8_t* p, float* y) {
  const auto b = load_block<BlockIQ4_NL>(p);
  decode_iq4_nibbles(b.qs, fp16_to_float(b.d), y);
}

void decode_iq4_xs(const uint8_t* p, float* y) {
  const auto b = load_block<BlockIQ4_XS>(p);
  const float d = fp16_to_float(b.d);
  for (int j = 0; j < kQKK / 32; ++j) {
    const float dl = d * static_cast<float>(get_scale_iq4xs(j, b.scales_h, b.scales_l) - 32);
    decode_iq4_nibbles(b.qs + 16 * j, dl, y + 32 * j);
  }
}

using BlockDecoder = void (*)(const uint8_t*, float*);

BlockDecoder block_decoder(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0:
      return decode_q4_0;
    case GgmlType::Q4_1:
      return decode_q4_1;
    case GgmlType::Q5_0:
      return decode_q5_0;
    case GgmlType::Q5_1:
      return decode_q5_1;
    case GgmlType::Q8_0:
      return decode_q8_0;
    case GgmlType::Q2_K:
      return decode_q2_k;
    case GgmlType::Q3_K:
      return decode_q3_k;
    case GgmlType::Q4_K:
      return decode_q45_k<BlockQ4_K, false>;
    case GgmlType::Q5_K:
      return decode_q45_k<BlockQ5_K, true>;
    case GgmlType::Q6_K:
      return decode_q6_k;
    case GgmlType::IQ4_NL:
      return decode_iq4_nl;
    case GgmlType::IQ4_XS:
      return decode_iq4_xs;
    default:
      return nullptr;
  }
}

void decode_row(GgmlType t, const uint8_t* p, int64_t n, float* y) {
  switch (t) {
    case GgmlType::F32:
      std::memcpy(y, p, static_cast<size_t>(n) * 4);
      return;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        y[i] = t == GgmlType::F16 ? fp16_to_float(h) : bf16_to_float(h);
      }
      return;
    default:
      break;
  }
  const GgmlTypeTraits& tr = ggml_traits(t);
  const BlockDecoder decode = block_decoder(t);
  CDQ_ASSERT(decode != nullptr);
  for (int64_t b = 0; b < n / tr.block_size; ++b)
    decode(p + b * tr.type_size, y + b * tr.block_size);
}

}  // namespace

Matrix dequantize_tensor(GgmlType type, std::span<const uint8_t> bytes, int64_t rows,
                         int64_t cols) {
  const uint64_t row_bytes = ggml_row_bytes(type, cols);
  CDQ_CHECK(rows >= 0 && bytes.size() == row_bytes * static_cast<uint64_t>(rows),
            "{} tensor [{}, {}] needs {} bytes, got {}", ggml_type_name(type), rows, cols,
            row_bytes * static_cast<uint64_t>(rows), bytes.size());
  Matrix out(rows, cols);
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    decode_row(type, bytes.data() + static_cast<size_t>(r) * row_bytes, cols, out.row(r));
  return out;
}

}  // namespace cdq
