// Data-aware HIGGS (higgs-gptq, higgs-cd): GPTQ and CD on the Hadamard-rotated problem with
// HIGGS's grid. CD on the rotated problem never ends above GPTQ on it, and both use H to beat
// data-free HIGGS on the same grid.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/method.hpp>
#include <cdquant/solver.hpp>

#include "support/problems.hpp"

namespace cdq {
namespace {

SolverOptions options(int bits) {
  SolverOptions o;
  o.grid.bits = bits;
  return o;
}

TEST(HiggsAware, CdNeverEndsAboveGptqAndBothBeatDataFreeHiggs) {
  for (const int64_t d_in : {128, 96}) {  // 96: padded to one block of 128
    const Matrix w = test::random_weights(24, d_in, 3);
    const Matrix h = test::correlated_hessian(d_in, 4);
    for (int bits : {2, 3, 4}) {
      SCOPED_TRACE(testing::Message() << "d_in " << d_in << ", " << bits << " bits");
      const SolveResult free = solve_layer(w, h, parse_method("higgs"), options(bits));
      const SolveResult gptq = solve_layer(w, h, parse_method("higgs-gptq"), options(bits));
      const SolveResult cd = solve_layer(w, h, parse_method("higgs-cd"), options(bits));
      ASSERT_EQ(cd.q.rows, w.rows);
      ASSERT_EQ(cd.q.cols, w.cols);
      EXPECT_LT(gptq.objective, free.objective);
      // The damped objective CD descends differs from this undamped one by the damping only.
      EXPECT_LE(cd.objective, gptq.objective * (1 + 1e-6));
      EXPECT_GT(cd.moves_per_row, 0.0);
    }
  }
}

TEST(HiggsAware, RowsSayWhatTheyNeed) {
  for (const char* name : {"higgs-gptq", "higgs-cd"}) {
    const Method m = parse_method(name);
    EXPECT_TRUE(needs_hessian(m, options(3))) << name;
    EXPECT_NE(m.info().float_only_reason, nullptr) << name;
    EXPECT_FALSE(supports(m, GridKind::GgmlBlock)) << name;
    EXPECT_DOUBLE_EQ(bits_per_weight(m, options(3), 172), 3.0 + 16.0 / 256);  // h = 256
  }
  const Matrix w = test::random_weights(4, 64, 1);
  const Matrix h = test::correlated_hessian(64, 2);
  try {
    solve_layer(w, h, parse_method("higgs-cd"), options(8));
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), testing::HasSubstr("--bits 2, 3 or 4"));
  }
}

}  // namespace
}  // namespace cdq
