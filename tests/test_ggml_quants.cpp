// ggml block formats: hand-worked bytes of the simple types, the bit positions of the
// K-quants' packed fields, golden hashes of bytes produced by ggml itself, and the grid
// contract (decode(pack(grid, codes)) == grid values, bit for bit) for every type.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/half.hpp>
#include <cdquant/rng.hpp>
#include <cmath>
#include <cstring>

#include "quant/ggml_quants.hpp"
#include "support/errors.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;

std::vector<GgmlType> quantized_types() {
  std::vector<GgmlType> out;
  for (const auto& t : ggml_all_types())
    if (t.quantized()) out.push_back(t.type);
  return out;
}

Matrix one_row(const std::vector<float>& v) {
  Matrix m(1, static_cast<int64_t>(v.size()));
  m.data = v;
  return m;
}

uint16_t u16_at(const std::vector<uint8_t>& b, size_t off) {
  uint16_t v;
  std::memcpy(&v, b.data() + off, 2);
  return v;
}

using test::error_of;

uint64_t fnv1a(const void* p, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ULL;
  return h;
}

// Weights with what the scale searches branch on: sub-block magnitudes over eight decades
// (fp16 subnormal block scales included), outliers, all-positive, all-negative and all-zero
// sub-blocks, and exact ties. Integer draws and exact float products only (no libm), so the
// same matrix comes out everywhere.
Matrix golden_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  static const float kScales[] = {1e-7f, 3e-4f, 0.01f, 0.25f, 1.0f, 40.0f};
  Rng rng(seed);
  Matrix w(rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < cols / 16; ++g) {
      const auto kind = rng.below(8);
      const float s = kScales[rng.below(6)];
      for (int64_t i = 0; i < 16; ++i) {
        const auto k = static_cast<float>(static_cast<int64_t>(rng.below(2001)) - 1000);
        float v = k * s * 0.001f;
        if (kind == 4) v = std::fabs(v) + s * 0.5f;
        if (kind == 5) v = -std::fabs(v) - s * 0.25f;
        if (kind == 6) v = 0.0f;
        if (kind == 7) v = static_cast<float>(static_cast<int64_t>(rng.below(17)) - 8) * s;
        if (rng.below(50) == 0) v *= 20.0f;
        w(r, g * 16 + i) = v;
      }
    }
  }
  return w;
}

std::vector<float> golden_importance(int64_t cols, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> imp(static_cast<size_t>(cols));
  for (float& v : imp) v = static_cast<float>(1 + rng.below(100)) * 0.37f;
  return imp;
}

// ---- traits ----------------------------------------------------------------------------

TEST(GgmlTraits, SizesIdsAndNames) {
  EXPECT_EQ(ggml_traits(GgmlType::Q4_0).type_size, 18);
  EXPECT_EQ(ggml_traits(GgmlType::Q8_0).type_size, 34);
  EXPECT_EQ(ggml_traits(GgmlType::Q2_K).type_size, 84);
  EXPECT_EQ(ggml_traits(GgmlType::Q3_K).type_size, 110);
  EXPECT_EQ(ggml_traits(GgmlType::Q4_K).type_size, 144);
  EXPECT_EQ(ggml_traits(GgmlType::Q5_K).type_size, 176);
  EXPECT_EQ(ggml_traits(GgmlType::Q6_K).type_size, 210);
  EXPECT_EQ(static_cast<uint32_t>(GgmlType::BF16), 30u);
  for (const auto& t : ggml_all_types()) {
    EXPECT_EQ(parse_ggml_type(t.name), t.type);
    EXPECT_EQ(find_ggml_traits(static_cast<uint32_t>(t.type)), &t);
  }
  EXPECT_EQ(parse_ggml_type("q4_k"), GgmlType::Q4_K);
  EXPECT_EQ(find_ggml_traits(4), nullptr);  // the retired Q4_2
  EXPECT_THAT(error_of([] { parse_ggml_type("Q7_K"); }), HasSubstr("unknown ggml type 'Q7_K'"));
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_K, 512), 288u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::F16, 3), 6u);
  EXPECT_THAT(error_of([] { ggml_row_bytes(GgmlType::Q6_K, 128); }),
              HasSubstr("whole blocks of 256 weights"));
}

// ---- hand-worked bytes -----------------------------------------------------------------

TEST(GgmlReference, Q8_0RoundsHalfAwayFromZero) {
  // amax 127 -> d = 1 exactly (fp16 0x3C00), id = 1: q = roundf(x), ties away from zero.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f, x[1] = 2.5f, x[2] = -0.5f, x[3] = 1.5f, x[4] = -2.5f, x[5] = -126.6f;
  const auto b = quantize_reference(GgmlType::Q8_0, one_row(x));
  ASSERT_EQ(b.size(), 34u);
  EXPECT_EQ(u16_at(b, 0), 0x3C00);
  const std::vector<int8_t> want = {127, 3, -1, 2, -3, -127};
  for (size_t j = 0; j < want.size(); ++j) EXPECT_EQ(static_cast<int8_t>(b[2 + j]), want[j]) << j;
  for (size_t j = want.size(); j < 32; ++j) EXPECT_EQ(b[2 + j], 0) << j;
}

TEST(GgmlReference, Q8_0ScaleIsAmaxOver127RoundedToFp16) {
  // x = j - 16: amax 16, d = 16/127 = 0.12598.. -> fp16 0x3008 (0.1259765625); the codes use
  // the unrounded 1/d = 7.9375: q = roundf(7.9375 k) = 8k - k/16 rounded.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  const auto b = quantize_reference(GgmlType::Q8_0, one_row(x));
  EXPECT_EQ(u16_at(b, 0), 0x3008);
  for (int j = 0; j < 32; ++j) {
    const int k = j - 16;
    const int q = static_cast<int>(std::round(7.9375 * k));
    EXPECT_EQ(static_cast<int8_t>(b[2 + j]), q) << j;
  }
  EXPECT_EQ(static_cast<int8_t>(b[2 + 8]), -64);  // -63.5 rounds away from zero
}

TEST(GgmlReference, Q4_0UsesTheSignedMaxAndTruncatesXPlus8_5) {
  // max = -8 (largest magnitude, negative): d = -8 / -8 = 1, code = trunc(x + 8.5), <= 15.
  std::vector<float> x(32, 0.0f);
  x[0] = -8.0f, x[1] = 7.0f, x[2] = 7.9f, x[3] = 0.5f, x[4] = -0.5f, x[5] = 1.49f;
  x[16] = -7.51f, x[17] = 3.0f;
  const auto b = quantize_reference(GgmlType::Q4_0, one_row(x));
  ASSERT_EQ(b.size(), 18u);
  EXPECT_EQ(u16_at(b, 0), 0x3C00);
  // codes: x0..x5 -> 0, 15, 15 (16 clamped), 9, 8, 9; x16 -> 0 (0.99), x17 -> 11; others 8
  EXPECT_EQ(b[2 + 0], 0x00);  // low 0, high 0
  EXPECT_EQ(b[2 + 1], 0xBF);  // low 15, high 11
  EXPECT_EQ(b[2 + 2], 0x8F);
  EXPECT_EQ(b[2 + 3], 0x89);
  EXPECT_EQ(b[2 + 4], 0x88);
  EXPECT_EQ(b[2 + 5], 0x89);
  for (int j = 6; j < 16; ++j) EXPECT_EQ(b[2 + j], 0x88) << j;

  // A positive max flips the sign of d: max 8 -> d = -1 (0xBC00), code = trunc(8.5 - x).
  std::vector<float> y(32, 0.0f);
  y[0] = 8.0f, y[1] = -3.0f;
  const auto c = quantize_reference(GgmlType::Q4_0, one_row(y));
  EXPECT_EQ(u16_at(c, 0), 0xBC00);
  EXPECT_EQ(c[2 + 0], 0x80);  // code 0 decodes (0 - 8) * -1 = 8
  EXPECT_EQ(c[2 + 1], 0x8B);  // code 11 decodes (11 - 8) * -1 = -3
  const Matrix back = dequantize_tensor(GgmlType::Q4_0, c, 1, 32);
  EXPECT_EQ(back(0, 0), 8.0f);
  EXPECT_EQ(back(0, 1), -3.0f);
}

TEST(GgmlReference, Q4_1MinAndRange) {
  // x in [-1, 14]: m = -1 (0xBC00), d = 15/15 = 1, code = trunc(x + 1 + 0.5).
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j % 16) - 1.0f;
  x[20] = 2.4f;  // -> trunc(3.4 + 0.5) = 3
  const auto b = quantize_reference(GgmlType::Q4_1, one_row(x));
  ASSERT_EQ(b.size(), 20u);
  EXPECT_EQ(u16_at(b, 0), 0x3C00);
  EXPECT_EQ(u16_at(b, 2), 0xBC00);
  for (int j = 0; j < 16; ++j) {
    const int hi = j == 4 ? 3 : j;
    EXPECT_EQ(b[4 + j], j | (hi << 4)) << j;
  }
}

TEST(GgmlReference, Q5_0FifthBitsGoToQh) {
  // x = j - 16: max = -16 -> d = 1, code = trunc(x + 16.5) = j; codes 16..31 set qh bits 16..31.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  const auto b = quantize_reference(GgmlType::Q5_0, one_row(x));
  ASSERT_EQ(b.size(), 22u);
  EXPECT_EQ(u16_at(b, 0), 0x3C00);
  EXPECT_EQ(b[2], 0x00);
  EXPECT_EQ(b[3], 0x00);
  EXPECT_EQ(b[4], 0xFF);
  EXPECT_EQ(b[5], 0xFF);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[6 + j], j | (j << 4)) << j;
}

TEST(GgmlReference, Q5_1HalfSteps) {
  // x = j/2: min 0, d = 15.5/31 = 0.5 (0x3800), code j; weight 3 moved to 1.26 -> trunc(3.02) = 3.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = 0.5f * static_cast<float>(j);
  x[3] = 1.26f;
  const auto b = quantize_reference(GgmlType::Q5_1, one_row(x));
  ASSERT_EQ(b.size(), 24u);
  EXPECT_EQ(u16_at(b, 0), 0x3800);
  EXPECT_EQ(u16_at(b, 2), 0x0000);
  EXPECT_EQ(b[4], 0x00);
  EXPECT_EQ(b[5], 0x00);
  EXPECT_EQ(b[6], 0xFF);
  EXPECT_EQ(b[7], 0xFF);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[8 + j], j | (j << 4)) << j;
}

// ---- K-quant field positions (derived from ggml-common.h / dequantize_row_*) -------------

QuantizedBlocks zero_blocks(GgmlType t) {
  QuantizedBlocks q;
  q.type = t;
  q.rows = 1;
  q.cols = 256;
  q.d.assign(1, 0x3C00);
  const bool has_min = t == GgmlType::Q2_K || t == GgmlType::Q4_K || t == GgmlType::Q5_K;
  if (has_min) q.dmin.assign(1, 0x4000);
  q.sub_scale.assign(static_cast<size_t>(q.groups_per_row()), 0);
  if (has_min) q.sub_min.assign(q.sub_scale.size(), 0);
  return q;
}

TEST(GgmlPack, Q4_KAndQ5_KSixBitScalePacking) {
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q5_K}) {
    QuantizedBlocks q = zero_blocks(t);
    q.sub_scale[5] = 42;  // 0b101010
    q.sub_min[5] = 21;    // 0b010101
    q.sub_scale[2] = 63;
    q.sub_min[2] = 7;
    std::vector<uint8_t> codes(256, 0);
    codes[100] = t == GgmlType::Q5_K ? 17 : 1;
    const auto b = pack_codes(q, codes);
    // layout: d @0, dmin @2, scales[12] @4, (Q5_K: qh[32] @16), qs @16 / @48
    EXPECT_EQ(u16_at(b, 0), 0x3C00);
    EXPECT_EQ(u16_at(b, 2), 0x4000);
    const uint8_t* sc = b.data() + 4;
    EXPECT_EQ(sc[9], 0x5A);  // low nibbles of scale 5 and min 5 in byte 5+4
    EXPECT_EQ(sc[1], 0x80);  // top bits of scale 5 in byte 5-4
    EXPECT_EQ(sc[5], 0x40);  // top bits of min 5 in byte 5
    EXPECT_EQ(sc[2], 63);
    EXPECT_EQ(sc[6], 7);
    // weight 100: sub-block 3, nibble plane byte 32 + 4, high nibble
    const size_t qs = t == GgmlType::Q5_K ? 48 : 16;
    EXPECT_EQ(b[qs + 36], 0x10);
    if (t == GgmlType::Q5_K) {
      EXPECT_EQ(b[16 + 4], 0x08);
    }  // 5th bit: qh[100 % 32] bit 100 / 32
    const Matrix m = dequantize_tensor(t, b, 1, 256);
    // decoded: d * sc * q - dmin * m, sub-block 3 has sc = m = 0
    EXPECT_EQ(m(0, 64), -14.0f);  // sub-block 2, code 0: d*63*0 - dmin*7
  }
}

TEST(GgmlPack, Q3_KScalesHmaskAndPlanes) {
  QuantizedBlocks q = zero_blocks(GgmlType::Q3_K);
  for (auto& s : q.sub_scale) s = -32;  // biased 0: all scale bytes zero
  q.sub_scale[13] = -3;                 // biased 29 = 0b011101
  std::vector<uint8_t> codes(256, 0);
  codes[77] = 6;  // low bits 2, high bit 1
  const auto b = pack_codes(q, codes);
  // layout: hmask[32] @0, qs[64] @32, scales[12] @96, d @108
  EXPECT_EQ(b[96 + 5], 0xD0);   // low nibble of scale 13 in the high nibble of byte 13 - 8
  EXPECT_EQ(b[96 + 9], 0x40);   // top bits of scale 13: byte 8 + 13 % 4, bit 2 * (13 / 4)
  EXPECT_EQ(b[0 + 13], 0x04);   // hmask[77 % 32] bit 77 / 32
  EXPECT_EQ(b[32 + 13], 0x20);  // qs[77 % 32] at bit 2 * ((77 % 128) / 32)
  EXPECT_EQ(u16_at(b, 108), 0x3C00);
  const Matrix m = dequantize_tensor(GgmlType::Q3_K, b, 1, 256);
  EXPECT_EQ(m(0, 77), -32.0f * (6 - 4));  // sub-block 4 still at scale -32
  EXPECT_EQ(m(0, 208), -3.0f * (0 - 4));  // sub-block 13
}

TEST(GgmlPack, Q2_KAndQ6_KPositions) {
  {
    QuantizedBlocks q = zero_blocks(GgmlType::Q2_K);
    q.sub_scale[4] = 9;
    q.sub_min[4] = 5;
    std::vector<uint8_t> codes(256, 0);
    codes[77] = 2;
    const auto b = pack_codes(q, codes);
    // layout: scales[16] @0, qs[64] @16, d @80, dmin @82
    EXPECT_EQ(b[4], 0x59);
    EXPECT_EQ(b[16 + 13], 0x20);
    EXPECT_EQ(u16_at(b, 80), 0x3C00);
    EXPECT_EQ(u16_at(b, 82), 0x4000);
    const Matrix m = dequantize_tensor(GgmlType::Q2_K, b, 1, 256);
    EXPECT_EQ(m(0, 77), 9.0f * 2.0f - 2.0f * 5.0f);
  }
  {
    QuantizedBlocks q = zero_blocks(GgmlType::Q6_K);
    q.sub_scale[12] = -128;
    std::vector<uint8_t> codes(256, 32);
    codes[200] = 45;  // 0b101101
    const auto b = pack_codes(q, codes);
    // layout: ql[128] @0, qh[64] @128, scales[16] @192, d @208
    EXPECT_EQ(b[72], 0xD0);        // e=200: chunk 1, quarter 2 -> ql[64 + 8] high nibble
    EXPECT_EQ(b[128 + 40], 0xAA);  // qh[32 + 8]: top bits 2 of code 45 and of the code-32 fill
    EXPECT_EQ(static_cast<int8_t>(b[192 + 12]), -128);
    EXPECT_EQ(u16_at(b, 208), 0x3C00);
    const Matrix m = dequantize_tensor(GgmlType::Q6_K, b, 1, 256);
    EXPECT_EQ(m(0, 200), -128.0f * 13.0f);
    EXPECT_EQ(m(0, 0), 0.0f);
  }
}

// ---- bytes of ggml itself --------------------------------------------------------------

// FNV-1a hashes of the bytes libggml-base (llama.cpp's ggml, portable C build) wrote for
// golden_matrix(4, 512, 7) with quantize_row_*_ref, and with ggml_quantize_chunk given
// golden_importance(512, 9) as the imatrix.
struct Golden {
  GgmlType type;
  uint64_t ref;
  uint64_t imatrix;
};
const Golden kGolden[] = {
    {GgmlType::Q4_0, 0x908de7341e9e4a63ULL, 0xe84c7ded49d9c450ULL},
    {GgmlType::Q4_1, 0x2d247be23cdac968ULL, 0x0b03aa94312e4568ULL},
    {GgmlType::Q5_0, 0xb21c29ac59d7f34eULL, 0x87520f494eaace60ULL},
    {GgmlType::Q5_1, 0xd51628758635c666ULL, 0xf9f85231bdc88b2dULL},
    {GgmlType::Q8_0, 0x8bafc3c061a5e4d4ULL, 0x8bafc3c061a5e4d4ULL},
    {GgmlType::Q2_K, 0x03e0c91609c0f2e2ULL, 0x7b9a75ad3968192dULL},
    {GgmlType::Q3_K, 0x87a2cdac8782a537ULL, 0x6fd9b16c0bff537aULL},
    {GgmlType::Q4_K, 0xf52d250120cbbc53ULL, 0x83fdc363417b730dULL},
    {GgmlType::Q5_K, 0x926ed59c84ab0aeeULL, 0xe3a9c32838fff096ULL},
    {GgmlType::Q6_K, 0xc1f7c00c4f94aeceULL, 0x00c57a7565cb0687ULL},
};

TEST(GgmlReference, BytesMatchGgml) {
  const Matrix w = golden_matrix(4, 512, 7);
  const std::vector<float> imp = golden_importance(512, 9);
  for (const Golden& g : kGolden) {
    const auto ref = quantize_reference(g.type, w);
    const auto im = quantize_reference(g.type, w, imp.data());
    EXPECT_EQ(fnv1a(ref.data(), ref.size()), g.ref) << ggml_type_name(g.type);
    EXPECT_EQ(fnv1a(im.data(), im.size()), g.imatrix) << ggml_type_name(g.type);
  }
}

// FNV-1a of the floats ggml's dequantize_row_* gives for random bytes (4 rows of 512 weights,
// bytes Rng(11).below(256)); NaNs hashed as 0x7FC00000 (payloads differ between converters).
const std::pair<GgmlType, uint64_t> kGoldenDecode[] = {
    {GgmlType::Q4_0, 0x448fe62c016db01aULL}, {GgmlType::Q4_1, 0x1f3c326e05928ba0ULL},
    {GgmlType::Q5_0, 0xec4be868c53386a9ULL}, {GgmlType::Q5_1, 0x15912b34015b565fULL},
    {GgmlType::Q8_0, 0x57af3a9cd2548590ULL}, {GgmlType::Q2_K, 0xdedadb0533a80f8dULL},
    {GgmlType::Q3_K, 0xe65423793e069161ULL}, {GgmlType::Q4_K, 0x332e065982b43734ULL},
    {GgmlType::Q5_K, 0x3adf7aaa4ca812e2ULL}, {GgmlType::Q6_K, 0xd031b98d914a59a5ULL},
};

uint64_t hash_floats(const Matrix& m) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (float v : m.data) {
    const uint32_t bits = std::isnan(v) ? 0x7FC00000u : std::bit_cast<uint32_t>(v);
    h = fnv1a(&bits, 4, h);
  }
  return h;
}

TEST(GgmlDecode, MatchesGgmlOnRandomBytes) {
  for (const auto& [type, want] : kGoldenDecode) {
    Rng rng(11);
    std::vector<uint8_t> bytes(ggml_row_bytes(type, 512) * 4);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng.below(256));
    EXPECT_EQ(hash_floats(dequantize_tensor(type, bytes, 4, 512)), want) << ggml_type_name(type);
  }
}

// ---- the grid contract -----------------------------------------------------------------

// Random but valid block parameters (finite fp16 scales of both signs) for every type.
QuantizedBlocks random_blocks(GgmlType t, int64_t rows, int64_t cols, Rng& rng) {
  QuantizedBlocks q = choose_block_scales(Matrix(rows, cols, 0.0f), t, nullptr);
  auto random_half = [&] {
    const float v = static_cast<float>(static_cast<int64_t>(rng.below(20001)) - 10000) * 1e-4f;
    return float_to_fp16(v * static_cast<float>(1 << rng.below(6)));
  };
  for (auto& d : q.d) d = random_half();
  for (auto& m : q.dmin) m = random_half();
  int lo = 0, hi = 0, mhi = 0;
  switch (t) {
    case GgmlType::Q2_K:
      hi = 15, mhi = 15;
      break;
    case GgmlType::Q3_K:
      lo = -32, hi = 31;
      break;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
      hi = 63, mhi = 63;
      break;
    case GgmlType::Q6_K:
      lo = -128, hi = 127;
      break;
    default:
      break;
  }
  for (auto& s : q.sub_scale)
    s = static_cast<int16_t>(lo + static_cast<int>(rng.below(hi - lo + 1)));
  for (auto& m : q.sub_min) m = static_cast<uint8_t>(rng.below(mhi + 1));
  const int maxq = ggml_traits(t).maxq;
  for (auto& c : q.codes) c = static_cast<uint8_t>(rng.below(maxq + 1));
  return q;
}

TEST(GgmlGrid, DecodeOfPackedCodesEqualsGridValuesBitForBit) {
  Rng rng(3);
  for (GgmlType t : quantized_types()) {
    const int64_t rows = 3, cols = 512;
    const QuantizedBlocks q = random_blocks(t, rows, cols, rng);
    const Grid g = q.to_grid();
    EXPECT_EQ(g.maxq, ggml_traits(t).maxq);
    EXPECT_EQ(g.n_groups, cols / ggml_traits(t).group_size);
    const Matrix m = dequantize_tensor(t, pack_codes(q, q.codes), rows, cols);
    int64_t mismatches = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float v = g.value(r, c, q.codes[static_cast<size_t>(r * cols + c)]);
        mismatches += std::bit_cast<uint32_t>(v) != std::bit_cast<uint32_t>(m(r, c));
      }
    EXPECT_EQ(mismatches, 0) << ggml_type_name(t);
  }
}

TEST(GgmlGrid, ReferenceCodesPackToReferenceBytesAndDecodeToTheGrid) {
  const Matrix w = golden_matrix(3, 512, 21);
  for (GgmlType t : quantized_types()) {
    const QuantizedBlocks q = choose_block_scales(w, t, nullptr);
    EXPECT_EQ(pack_codes(q, q.codes), quantize_reference(t, w)) << ggml_type_name(t);
    const Matrix dec = dequantize(q.to_grid(), q.codes);
    const Matrix ref = dequantize_tensor(t, quantize_reference(t, w), w.rows, w.cols);
    EXPECT_EQ(dec.data, ref.data) << ggml_type_name(t);
  }
}

// The K-quants' last step is round-to-nearest on the fp16 block parameters, i.e. RTN on this
// very grid: the codes agree wherever the sub-block scale is nonzero (a zero scale decodes
// every code to the same value and ggml keeps its search's codes there). The 32-weight types
// round with the unrounded d (and min: Q4_1/Q5_1 ignore the fp16 rounding of m, which can move
// a block far from zero by several steps), half up or half away from zero, so there RTN on the
// fp16 grid is at least as close per weight and differs for a few weights. IQ4_NL / IQ4_XS
// pick their codes with the unrounded scales too (and break ties upwards).
TEST(GgmlGrid, RoundToGridVersusTheTypesOwnRule) {
  Rng rng(5);
  Matrix w(8, 512);
  for (float& v : w.data) v = static_cast<float>(rng.student_t(5.0));
  for (GgmlType t : quantized_types()) {
    const QuantizedBlocks q = choose_block_scales(w, t, nullptr);
    const Grid g = q.to_grid();
    const auto rtn = round_to_grid(g, w);
    const bool k_quant = ggml_traits(t).block_size == 256 && !ggml_traits(t).codebook;
    const bool symmetric = g.is_integer_grid();
    int64_t differ = 0, compared = 0;
    for (int64_t r = 0; r < w.rows; ++r) {
      for (int64_t c = 0; c < w.cols; ++c) {
        const size_t i = static_cast<size_t>(r * w.cols + c);
        if (g.scale[g.at(r, g.group_of(c))] == 0.0f) continue;
        ++compared;
        if (k_quant) {
          EXPECT_EQ(rtn[i], q.codes[i]) << ggml_type_name(t) << " r" << r << " c" << c;
          continue;
        }
        differ += rtn[i] != q.codes[i];
        // only d's fp16 rounding (2^-11 relative) separates the symmetric rules: one step
        if (symmetric) {
          EXPECT_LE(std::abs(int{rtn[i]} - int{q.codes[i]}), 1) << ggml_type_name(t);
        }
        const float e_rtn = std::fabs(w(r, c) - g.value(r, c, rtn[i]));
        const float e_ref = std::fabs(w(r, c) - g.value(r, c, q.codes[i]));
        EXPECT_LE(e_rtn, e_ref * (1.0f + 1e-6f)) << ggml_type_name(t);
      }
    }
    EXPECT_GT(compared, w.size() * 9 / 10) << ggml_type_name(t);
    EXPECT_LT(differ, compared / 20) << ggml_type_name(t);
  }
}

TEST(GgmlGrid, ImportanceWeightsLowerTheWeightedError) {
  // With importance on a few columns, the imatrix rule trades error there for error elsewhere:
  // the importance-weighted squared error drops (summed over types and rows).
  Rng rng(17);
  Matrix w(16, 512);
  for (float& v : w.data) v = static_cast<float>(rng.student_t(4.0));
  std::vector<float> imp(512, 1.0f);
  for (int c = 0; c < 512; c += 7) imp[static_cast<size_t>(c)] = 50.0f;
  for (GgmlType t : quantized_types()) {
    if (t == GgmlType::Q8_0) continue;  // no weighted variant
    auto werr = [&](const std::vector<uint8_t>& bytes) {
      const Matrix q = dequantize_tensor(t, bytes, w.rows, w.cols);
      double e = 0;
      for (int64_t r = 0; r < w.rows; ++r)
        for (int64_t c = 0; c < w.cols; ++c) {
          const double d = w(r, c) - q(r, c);
          e += imp[static_cast<size_t>(c)] * d * d;
        }
      return e;
    };
    EXPECT_LT(werr(quantize_reference(t, w, imp.data())), werr(quantize_reference(t, w)))
        << ggml_type_name(t);
  }
}

TEST(GgmlReference, ErrorShrinksWithBits) {
  Rng rng(2);
  Matrix w(8, 512);
  for (float& v : w.data) v = static_cast<float>(rng.normal());
  auto mse = [&](GgmlType t) {
    const Matrix q = dequantize_tensor(t, quantize_reference(t, w), w.rows, w.cols);
    double e = 0;
    for (size_t i = 0; i < w.data.size(); ++i)
      e += (w.data[i] - q.data[i]) * (w.data[i] - q.data[i]);
    return e / static_cast<double>(w.data.size());
  };
  EXPECT_LT(mse(GgmlType::Q3_K), mse(GgmlType::Q2_K));
  EXPECT_LT(mse(GgmlType::Q4_K), mse(GgmlType::Q3_K));
  EXPECT_LT(mse(GgmlType::Q5_K), mse(GgmlType::Q4_K));
  EXPECT_LT(mse(GgmlType::Q6_K), mse(GgmlType::Q5_K));
  EXPECT_LT(mse(GgmlType::Q8_0), mse(GgmlType::Q6_K));
  EXPECT_LT(mse(GgmlType::Q5_0), mse(GgmlType::Q4_0));
  EXPECT_LT(mse(GgmlType::Q5_1), mse(GgmlType::Q4_1));
  // 4 bits over a 32-weight range of about 4.5 sigma: step ~0.3, error ~step^2/12 = 0.0075.
  EXPECT_LT(mse(GgmlType::Q4_K), 0.02);
}

TEST(GgmlReference, FloatTypesConvert) {
  const Matrix w =
      one_row({1.0f, -2.5f, 65504.0f, 1e-8f, 3.140625f, -0.0f, 100000.0f, 1.00390625f});
  const auto f16 = quantize_reference(GgmlType::F16, w);
  EXPECT_EQ(u16_at(f16, 0), 0x3C00);
  EXPECT_EQ(u16_at(f16, 2), 0xC100);
  EXPECT_EQ(u16_at(f16, 4), 0x7BFF);
  EXPECT_EQ(u16_at(f16, 12), 0x7C00);  // overflow -> inf
  const auto bf = quantize_reference(GgmlType::BF16, w);
  EXPECT_EQ(u16_at(bf, 0), 0x3F80);
  EXPECT_EQ(u16_at(bf, 14), 0x3F80);  // 1 + 2^-8 ties to even
  const Matrix back = dequantize_tensor(GgmlType::F32, quantize_reference(GgmlType::F32, w), 1, 8);
  EXPECT_EQ(back.data, w.data);
}

TEST(GgmlQuants, TakeScalesStoresOnlyWhatTheTypeCanHold) {
  Matrix w(2, 256);
  for (size_t i = 0; i < w.data.size(); ++i) w.data[i] = std::sin(0.37f * static_cast<float>(i));
  QuantizedBlocks qb = choose_block_scales(w, GgmlType::Q4_0, nullptr);
  Grid grid = qb.to_grid();
  grid.scale[3] = fp16_to_float(float_to_fp16(grid.scale[3] * 1.25f));
  grid.bias[3] = -8.0f * grid.scale[3];
  qb.take_scales(grid, qb.group_sub_scales());
  EXPECT_EQ(fp16_to_float(qb.d[3]), grid.scale[3]);
  grid.scale[1] *= 1.0001f;  // between two fp16 values
  EXPECT_THAT(error_of([&] { qb.take_scales(grid, qb.group_sub_scales()); }),
              HasSubstr("cannot be stored"));
  grid = qb.to_grid();
  grid.zero[0] = 7;
  EXPECT_THAT(error_of([&] { qb.take_scales(grid, qb.group_sub_scales()); }),
              HasSubstr("not laid out"));
  EXPECT_THAT(
      error_of([&] { qb.take_scales(make_grid_layout(2, 32, 32, 15), qb.group_sub_scales()); }),
      HasSubstr("not laid out"));

  // Q4_K: one d per 8 groups; a new d must scale all 8 sub-scales, and the mins stay.
  QuantizedBlocks k = choose_block_scales(w, GgmlType::Q4_K, nullptr);
  Grid kg = k.to_grid();
  const float d_new = fp16_to_float(float_to_fp16(fp16_to_float(k.d[1]) * 0.75f));
  for (size_t g = 8; g < 16; ++g) kg.scale[g] = d_new * static_cast<float>(k.sub_scale[g]);
  k.take_scales(kg, k.sub_scale);
  EXPECT_EQ(fp16_to_float(k.d[1]), d_new);
  EXPECT_EQ(dequantize_tensor(GgmlType::Q4_K, pack_codes(k, k.codes), 2, 256).data,
            dequantize(kg, k.codes).data);
  kg.scale[9] *= 2.0f;  // one group alone cannot move
  EXPECT_THAT(error_of([&] { k.take_scales(kg, k.sub_scale); }), HasSubstr("cannot be stored"));
  kg = k.to_grid();
  kg.bias[2] += 0.5f;  // nor can a min
  EXPECT_THAT(error_of([&] { k.take_scales(kg, k.sub_scale); }), HasSubstr("cannot be stored"));
}

TEST(GgmlQuants, BadInputsRejected) {
  EXPECT_THAT(error_of([] { choose_block_scales(Matrix(2, 100), GgmlType::Q4_0, nullptr); }),
              HasSubstr("multiple of 32"));
  EXPECT_THAT(error_of([] { choose_block_scales(Matrix(2, 256), GgmlType::F16, nullptr); }),
              HasSubstr("not a quantized type"));
  Matrix nan(1, 32, 0.0f);
  nan(0, 3) = std::nanf("");
  EXPECT_THAT(error_of([&] { quantize_reference(GgmlType::Q8_0, nan); }), HasSubstr("non-finite"));
  QuantizedBlocks q = choose_block_scales(Matrix(1, 256, 1.0f), GgmlType::Q4_K, nullptr);
  std::vector<uint8_t> codes(256, 16);
  EXPECT_THAT(error_of([&] { pack_codes(q, codes); }), HasSubstr("exceeds 15"));
  q.sub_scale[0] = 64;
  EXPECT_THAT(error_of([&] { pack_codes(q, q.codes); }), HasSubstr("outside 0..63"));
  EXPECT_THAT(error_of([] { dequantize_tensor(GgmlType::Q8_0, std::vector<uint8_t>(33), 1, 32); }),
              HasSubstr("needs 34 bytes"));
}

}  // namespace
}  // namespace cdq
