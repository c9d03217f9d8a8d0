#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/gptq_format.hpp>
#include <cdquant/half.hpp>
#include <cdquant/rng.hpp>

namespace cdq {
namespace {

using ::testing::HasSubstr;

TEST(GptqPack, FourBitCodesFillNibblesLowFirst) {
  const std::vector<uint32_t> codes = {0, 1, 2, 3, 4, 5, 6, 7, 15, 14, 13, 12, 11, 10, 9, 8};
  const auto words = pack_bit_stream(codes.data(), 16, 4);
  ASSERT_EQ(words.size(), 2u);
  EXPECT_EQ(words[0], 0x76543210u);
  EXPECT_EQ(words[1], 0x89ABCDEFu);
}

TEST(GptqPack, TwoAndEightBitWords) {
  const std::vector<uint32_t> two = {1, 2, 3, 0, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 2};
  EXPECT_EQ(pack_bit_stream(two.data(), 16, 2)[0], 0x8000FF39u);
  const std::vector<uint32_t> eight = {0x11, 0x22, 0x33, 0xFF};
  EXPECT_EQ(pack_bit_stream(eight.data(), 4, 8)[0], 0xFF332211u);
}

TEST(GptqPack, ThreeBitCodesStraddleWordBoundaries) {
  // 32 codes in 3 words; code 10 occupies bits 30..32 and code 21 bits 63..65.
  std::vector<uint32_t> codes(32, 0);
  codes[10] = 7;  // 0b111: bits 30, 31 of word 0 and bit 0 of word 1
  auto w = pack_bit_stream(codes.data(), 32, 3);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0], 0xC0000000u);
  EXPECT_EQ(w[1], 0x00000001u);
  EXPECT_EQ(w[2], 0u);
  codes[10] = 0;
  codes[21] = 6;  // 0b110: bit 31 of word 1 gets 0, word 2 bits 0..1 get 0b11
  w = pack_bit_stream(codes.data(), 32, 3);
  EXPECT_EQ(w[1], 0u);
  EXPECT_EQ(w[2], 0x3u);
  codes[21] = 5;  // 0b101: bit 31 of word 1, bit 1 of word 2
  codes[31] = 4;  // bits 93..95: bit 31 of word 2
  w = pack_bit_stream(codes.data(), 32, 3);
  EXPECT_EQ(w[1], 0x80000000u);
  EXPECT_EQ(w[2], 0x80000002u);
}

TEST(GptqPack, BitStreamRoundTripsForEveryWidth) {
  Rng rng(5);
  for (int bits = 1; bits <= 8; ++bits) {
    std::vector<uint32_t> codes(96);
    for (auto& c : codes) c = static_cast<uint32_t>(rng.below(1u << bits));
    const auto words = pack_bit_stream(codes.data(), 96, bits);
    EXPECT_EQ(unpack_bit_stream(words.data(), 96, bits), codes) << bits;
  }
}

Grid random_int_grid(int64_t n, int64_t k, int group, int bits, bool sym, Rng& rng) {
  Grid g = make_grid_layout(n, k, group, (1 << bits) - 1);
  g.zero.resize(g.scale.size());
  for (size_t i = 0; i < g.scale.size(); ++i) {
    g.scale[i] = fp16_to_float(float_to_fp16(static_cast<float>(0.01 + rng.uniform())));
    g.zero[i] = sym ? (1 << (bits - 1)) : static_cast<int32_t>(rng.below(1u << bits));
    g.bias[i] = -g.scale[i] * static_cast<float>(g.zero[i]);
  }
  return g;
}

TEST(GptqPack, WriteReadDequantizeEqualsTheSolversWeights) {
  Rng rng(7);
  for (int bits : {2, 3, 4, 8}) {
    for (int group : {0, 32, 64}) {
      for (auto fmt : {GptqCheckpointFormat::V1, GptqCheckpointFormat::V2}) {
        const int64_t n = 64, k = 128;
        const bool sym = fmt == GptqCheckpointFormat::V1;
        Grid grid = random_int_grid(n, k, group, bits, sym, rng);
        // act-order style g_idx: groups need not be contiguous
        if (group > 0)
          for (int64_t c = 0; c < k; ++c) grid.g_idx[c] = static_cast<int32_t>((c * 7 % k) / group);
        std::vector<uint8_t> codes(static_cast<size_t>(n * k));
        for (auto& c : codes) c = static_cast<uint8_t>(rng.below(1u << bits));
        const GptqLinear t = pack_gptq_linear(grid, codes, bits, fmt);
        EXPECT_EQ(t.qweight.size(), static_cast<size_t>(k * bits / 32 * n));
        EXPECT_EQ(t.qzeros.size(), static_cast<size_t>(grid.n_groups * n * bits / 32));
        const UnpackedGptq u = unpack_gptq_linear(t, fmt);
        EXPECT_EQ(u.codes, codes);
        EXPECT_EQ(u.grid.zero, grid.zero);
        EXPECT_EQ(u.grid.g_idx, grid.g_idx);
        const Matrix expected = dequantize(grid, codes);
        const Matrix got = dequantize_gptq_linear(t, fmt);
        EXPECT_EQ(got.data, expected.data) << bits << " " << group;
      }
    }
  }
}

TEST(GptqPack, V1RefusesZeroPointZero) {
  Rng rng(3);
  Grid grid = random_int_grid(32, 32, 0, 4, false, rng);
  grid.zero[0] = 0;
  std::vector<uint8_t> codes(32 * 32, 1);
  try {
    pack_gptq_linear(grid, codes, 4, GptqCheckpointFormat::V1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("gptq_v2"));
  }
  EXPECT_NO_THROW(pack_gptq_linear(grid, codes, 4, GptqCheckpointFormat::V2));
}

TEST(GptqPack, UnpackableShapesAreRejected) {
  EXPECT_FALSE(gptq_packable(64, 172, 4));  // stories260K's down projection
  EXPECT_FALSE(gptq_packable(64, 48, 3));
  EXPECT_TRUE(gptq_packable(64, 96, 3));  // 64 * 3 and 96 * 3 are multiples of 32
}

}  // namespace
}  // namespace cdq
