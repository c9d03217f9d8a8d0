// The transform stage: the dense orthogonal reference (invariance of the layer objective,
// undo after apply) and a non-trivial orthogonal transform driven through the whole-model
// pipeline, which must give back the same dequantized model as the identity.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cdquant/calibration.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/quantize.hpp>
#include <cdquant/quantize_job.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/solver.hpp>
#include <cdquant/transform.hpp>
#include <cmath>
#include <limits>
#include <numeric>

#include "support/errors.hpp"
#include "support/paths.hpp"
#include "support/problems.hpp"
#include "support/tiny_model.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;

// A seeded permutation of n columns as the orthogonal matrix R (R[i, p[i]] = 1).
Matrix permutation_matrix(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  Rng rng(seed);
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(p[static_cast<size_t>(i)], p[rng.below(static_cast<uint64_t>(i + 1))]);
  Matrix r(n, n);
  for (int64_t i = 0; i < n; ++i) r(i, p[static_cast<size_t>(i)]) = 1.0f;
  return r;
}

// A random rotation: Gram-Schmidt (twice, for float accuracy) on Gaussian columns.
Matrix random_rotation(int64_t n, uint64_t seed) {
  Matrix a = test::random_weights(n, n, seed);
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < i; ++j) {
        double d = 0.0;
        for (int64_t k = 0; k < n; ++k) d += static_cast<double>(a(i, k)) * a(j, k);
        for (int64_t k = 0; k < n; ++k) a(i, k) -= static_cast<float>(d) * a(j, k);
      }
      double norm = 0.0;
      for (int64_t k = 0; k < n; ++k) norm += static_cast<double>(a(i, k)) * a(i, k);
      for (int64_t k = 0; k < n; ++k) a(i, k) = static_cast<float>(a(i, k) / std::sqrt(norm));
    }
  return a;
}

double max_abs(const Matrix& m) {
  double v = 0.0;
  for (float x : m.data) v = std::max(v, static_cast<double>(std::abs(x)));
  return v;
}

TEST(Transform, IdentityChangesNothing) {
  Matrix w = test::random_weights(4, 16, 1), h = test::correlated_hessian(16, 2);
  const Matrix w0 = w, h0 = h;
  const auto t = make_transform("identity")(0, 0, 16);
  EXPECT_EQ(t->export_needs(), TransformExport::Nothing);
  t->apply(w, h);
  t->undo(w);
  EXPECT_EQ(w.data, w0.data);
  EXPECT_EQ(h.data, h0.data);
}

TEST(Transform, RotationKeepsTheLayerObjectiveAndUndoes) {
  const int64_t n = 48;
  const Matrix w = test::random_weights(8, n, 3), h = test::correlated_hessian(n, 4);
  const DenseOrthogonalTransform t(random_rotation(n, 5), "rotation");
  Matrix wr = w, hr = h;
  t.apply(wr, hr);
  SolverOptions opt;
  opt.grid.bits = 3;
  const SolveResult r = solve_layer(wr, hr, parse_method("gptq"), opt);
  Matrix q = r.q;
  t.undo(q);
  // tr((Q'-W')H'(Q'-W')^T) = tr((Q'R-W)H(Q'R-W)^T): equal to float rounding of n-term products.
  const double tol = 16.0 * n * std::numeric_limits<float>::epsilon();
  EXPECT_NEAR(layer_objective(w, q, h), r.objective, tol * r.reference);
  EXPECT_NEAR(layer_reference(w, h), r.reference, tol * r.reference);
  Matrix back = wr;
  t.undo(back);
  for (size_t i = 0; i < w.data.size(); ++i)
    ASSERT_NEAR(back.data[i], w.data[i], tol * max_abs(w)) << i;
}

TEST(Transform, BadInputIsAClearError) {
  EXPECT_EQ(test::error_of([] { make_transform("hadamard-typo"); }),
            "unknown transform 'hadamard-typo' (known: identity)");
  Matrix not_orthogonal = permutation_matrix(8, 1);
  not_orthogonal(0, 0) += 0.5f;
  EXPECT_THAT(test::error_of([&] { DenseOrthogonalTransform(not_orthogonal, "bent"); }),
              HasSubstr("transform 'bent': R is not orthogonal"));
}

// The pipeline with a different permutation of the input columns for every linear: per-channel
// min-max RTN sees each row's values in another order but picks the same grid and codes, and
// permutations multiply exactly, so undoing them must give the identity's model bit for bit.
TEST(Transform, PermutationThroughThePipelineGivesTheSameModel) {
  const std::string path = test::stories260k_path();
  const auto tok = tokenizer_for_model(path, "");
  const auto windows =
      calibration_from_file(test::shared_dir() + "/data/tinyshakespeare.txt", *tok, 4, 64, 3, 1);
  const auto run = [&](const TransformFactory& transform, std::vector<LinearResult>& results) {
    auto reader = open_model(path);
    QuantizeOptions o;
    o.method = parse_method("rtn");
    o.solver.grid.bits = 3;
    o.transform = transform;
    InMemoryModelWriter writer(*reader);
    quantize_model(*reader, windows, o,
                   [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                     writer.write_block(layer, block, linears);
                     for (auto& l : linears) results.push_back(std::move(l));
                   });
    writer.finish();
    return std::move(writer.model());
  };
  std::vector<LinearResult> plain_results, permuted_results;
  const Model plain = run({}, plain_results);
  const Model permuted = run(
      [](int layer, int linear, int64_t d_in) {
        return std::make_unique<DenseOrthogonalTransform>(
            permutation_matrix(d_in, static_cast<uint64_t>(100 * layer + linear)), "perm");
      },
      permuted_results);
  ASSERT_EQ(permuted_results.size(), 35u);
  for (const LinearResult& r : permuted_results) {
    EXPECT_EQ(r.transform_export, TransformExport::Undo);
    EXPECT_EQ(r.transform, "perm");
  }
  for (const LinearResult& r : plain_results)
    EXPECT_EQ(r.transform_export, TransformExport::Nothing);
  for (size_t b = 0; b < plain.blocks.size(); ++b)
    for (Linear l : kAllLinears)
      ASSERT_EQ(permuted.blocks[b].linear(l).data, plain.blocks[b].linear(l).data)
          << "block " << b << " " << linear_name(l);
  // The codes differ (they are in the permuted order): the transform really ran.
  EXPECT_NE(permuted_results[0].codes, plain_results[0].codes);
}

}  // namespace
}  // namespace cdq
