#include <gtest/gtest.h>

#include <cdquant/half.hpp>
#include <cdquant/rng.hpp>
#include <cmath>

#include "linalg/linalg.hpp"

namespace cdq {
namespace {

TEST(Half, Fp16RoundTripsEveryFiniteValue) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    if (((bits >> 10) & 0x1F) == 0x1F) continue;  // Inf / NaN
    EXPECT_EQ(float_to_fp16(fp16_to_float(bits)), bits) << h;
  }
}

TEST(Half, Fp16RoundsToNearestEven) {
  EXPECT_EQ(fp16_to_float(float_to_fp16(1.0f + 0x1.0p-11f)), 1.0f);  // tie -> even
  EXPECT_EQ(fp16_to_float(float_to_fp16(1.0f + 0x1.8p-11f)), 1.0f + 0x1.0p-10f);
  EXPECT_EQ(float_to_fp16(70000.0f), 0x7C00);
  EXPECT_EQ(fp16_to_float(0x0001), 0x1.0p-24f);
}

TEST(Half, Bf16KeepsTheTopBitsRounded) {
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 0x1.0p-8f)), 1.0f);  // tie -> even
  EXPECT_EQ(bf16_to_float(float_to_bf16(-3.5f)), -3.5f);
}

TEST(Rng, IsDeterministicPerSeed) {
  Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    const double x = a.normal();
    EXPECT_EQ(x, b.normal());
    EXPECT_NE(x, c.normal());
  }
}

TEST(Linalg, CholeskyReconstructsAndInverseIsInverse) {
  Rng rng(1);
  const int n = 7;
  Matrix x(20, n);
  for (float& v : x.data) v = static_cast<float>(rng.normal());
  Matrix h(n, n);
  syrk_accumulate(x.data.data(), x.rows, n, 1.0f, h);
  Matrix u = h;
  ASSERT_TRUE(cholesky_inplace(u, true));
  Matrix inv = h;
  ASSERT_TRUE(spd_inverse_inplace(inv));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double utu = 0, hinv = 0;
      for (int k = 0; k < n; ++k) {
        utu += u(k, i) * u(k, j);
        hinv += h(i, k) * inv(k, j);
      }
      EXPECT_NEAR(utu, h(i, j), 1e-4 * std::abs(h(i, i)));
      EXPECT_NEAR(hinv, i == j ? 1.0 : 0.0, 1e-4);
    }
}

TEST(Linalg, CholeskyReportsIndefinite) {
  Matrix a(2, 2);
  a(0, 0) = 1;
  a(1, 1) = -1;
  EXPECT_FALSE(cholesky_inplace(a, false));
}

}  // namespace
}  // namespace cdq
