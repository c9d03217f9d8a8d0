// Byte layouts of ggml's block formats (ggml-common.h) and the bit tricks shared by the
// encoder, the decoder and the packer. Blocks are read and written with memcpy, so byte
// buffers need no alignment.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "quant/ggml_quants.hpp"

namespace cdq::ggml {

constexpr int kQK = 32;    // weights per block of the legacy types
constexpr int kQKK = 256;  // weights per super-block of the K-quants

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];  // weight j: low nibble of qs[j]; weight j+16: high nibble
};
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // bit j of the little-endian u32: 5th bit of weight j
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];  // low nibble: scale, high nibble: min of sub-block j
  uint8_t qs[kQKK / 4];       // 2-bit codes, see q2_bit_position
  uint16_t d;
  uint16_t dmin;
};
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];  // high bit of weight e: bit e/32 of hmask[e%32]
  uint8_t qs[kQKK / 4];     // low 2 bits, as Q2_K
  uint8_t scales[12];       // sixteen 6-bit scales (biased by 32)
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];  // eight 6-bit scales and eight 6-bit mins
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};

// IQ4_NL / IQ4_XS: 4-bit indices into kIq4Levels (nibbles as Q4_0: weight j of a 32-weight
// sub-block in the low nibble of qs[j], weight j+16 in the high nibble).
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;            // top 2 bits of the 6-bit scale of sub-block j at bit 2j
  uint8_t scales_l[kQKK / 64];  // low 4 bits: sub-block j in the nibble j%2 of byte j/2
  uint8_t qs[kQKK / 2];         // sub-block j's 32 weights in bytes 16j .. 16j+15
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);

// ggml's kvalues_iq4nl: the 16 non-uniform levels of IQ4_NL and IQ4_XS (an int8 table; the
// decoder multiplies the block scale by the level converted to float).
constexpr int8_t kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

// ggml's best_index_int8: the index of the level nearest x, of two equally near the upper one
// (unlike nearest_level, which takes the lower); x beyond the ends clamps.
inline int best_index_iq4(float x) {
  if (x <= kIq4Levels[0]) return 0;
  if (x >= kIq4Levels[15]) return 15;
  int ml = 0, mu = 15;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < kIq4Levels[mav])
      mu = mav;
    else
      ml = mav;
  }
  return x - kIq4Levels[mu - 1] < kIq4Levels[mu] - x ? mu - 1 : mu;
}

// IQ4_XS: the 6-bit scale (biased by 32) of sub-block j.
inline int get_scale_iq4xs(int j, uint16_t scales_h, const uint8_t* scales_l) {
  return ((scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((scales_h >> (2 * j)) & 3) << 4);
}
inline void set_scale_iq4xs(int j, int biased, uint16_t& scales_h, uint8_t* scales_l) {  // zeroed
  scales_l[j / 2] = static_cast<uint8_t>(scales_l[j / 2] | ((biased & 0xF) << (4 * (j % 2))));
  scales_h = static_cast<uint16_t>(scales_h | ((biased >> 4) << (2 * j)));
}

template <typename Block>
Block load_block(const uint8_t* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}
template <typename Block>
void store_block(const Block& b, uint8_t* p) {
  std::memcpy(p, &b, sizeof(Block));
}

// ggml's nearest_int: adding 1.5 * 2^23 rounds to an integer (ties to even) in the mantissa.
// Kept bit for bit (rather than nearbyint) so that even out-of-range inputs map the same way.
inline int nearest_int(float f) {
  const float v = f + 12582912.0f;
  const int32_t bits = std::bit_cast<int32_t>(v);
  return (bits & 0x007fffff) - 0x00400000;
}

// Q4_K / Q5_K: eight 6-bit scales and eight 6-bit mins in 12 bytes. Sub-blocks 0..3 keep
// their scale/min in the low 6 bits of bytes j / j+4; sub-blocks 4..7 keep the low 4 bits
// in the nibbles of byte j+4 and the top 2 bits in the top bits of bytes j-4 / j.
inline void get_scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}
inline void set_scale_min_k4(int j, int sc, int m, uint8_t* q) {  // q zeroed beforehand
  if (j < 4) {
    q[j] = static_cast<uint8_t>(q[j] | sc);
    q[j + 4] = static_cast<uint8_t>(q[j + 4] | m);
  } else {
    q[j + 4] = static_cast<uint8_t>((sc & 0xF) | ((m & 0xF) << 4));
    q[j - 4] = static_cast<uint8_t>(q[j - 4] | ((sc >> 4) << 6));
    q[j] = static_cast<uint8_t>(q[j] | ((m >> 4) << 6));
  }
}

// Q3_K: sixteen 6-bit values (scale + 32). Low nibble of sub-block j in byte j (j < 8) or the
// high nibble of byte j-8; top 2 bits in byte 8 + j%4 at bit 2*(j/4).
inline int get_scale_q3k(int j, const uint8_t* q) {
  const int low = j < 8 ? (q[j] & 0xF) : (q[j - 8] >> 4);
  const int high = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}
inline void set_scale_q3k(int j, int biased, uint8_t* q) {  // biased in 0..63, q zeroed
  if (j < 8)
    q[j] = static_cast<uint8_t>(q[j] | (biased & 0xF));
  else
    q[j - 8] = static_cast<uint8_t>(q[j - 8] | ((biased & 0xF) << 4));
  q[8 + j % 4] = static_cast<uint8_t>(q[8 + j % 4] | ((biased >> 4) << (2 * (j / 4))));
}

// 2-bit planes of Q2_K/Q3_K: weight e of a super-block sits in qs[32*(e/128) + e%32] at bit
// 2*((e%128)/32).
inline int q2_byte(int e) {
  return 32 * (e / 128) + e % 32;
}
inline int q2_shift(int e) {
  return 2 * ((e % 128) / 32);
}

// Nibble planes of Q4_K/Q5_K: weight e sits in qs[32*(e/64) + e%32], high nibble when
// (e%64) >= 32. Q5_K's 5th bit: qh[e%32] bit e/32.
inline int q4k_byte(int e) {
  return 32 * (e / 64) + e % 32;
}
inline int q4k_shift(int e) {
  return (e % 64) >= 32 ? 4 : 0;
}

// Q6_K: weight e in chunk n = e/128, l = e%32, quarter k = (e%128)/32: low nibble in
// ql[64n + l + 32*(k&1)] (high nibble when k >= 2), top 2 bits in qh[32n + l] at bit 2k.
inline int q6_ql_byte(int e) {
  return 64 * (e / 128) + e % 32 + 32 * (((e % 128) / 32) & 1);
}
inline int q6_ql_shift(int e) {
  return ((e % 128) / 32) >= 2 ? 4 : 0;
}
inline int q6_qh_byte(int e) {
  return 32 * (e / 128) + e % 32;
}
inline int q6_qh_shift(int e) {
  return 2 * ((e % 128) / 32);
}

}  // namespace cdq::ggml
