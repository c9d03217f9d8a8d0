// The batched forward pass against a plain token-by-token reference with a KV cache
// (tests/support/reference_forward.cpp, double precision), on the real checkpoints and on
// random models covering GQA, untied classifiers and q/k/v biases.
//
// Tolerance: the batched pass runs in float32 (eps 6e-8). Each logit is the end of a chain of
// dot products of length <= 352 through 5 residual blocks; float32 rounding in a dot product
// is about sqrt(K) * eps ~ 1e-6 relative to the sum of |terms|, and the normalisations keep
// that from growing much from block to block. So we demand agreement to 1e-4 relative to the
// row's logit scale max(1, max_j |logit_j|) (softmax depends on logit differences, so the
// scale of the row is what matters): about 100x headroom over the expected error, while any
// real mistake (a wrong RoPE pair, a mask off by one, a wrong kv head) moves logits by O(1).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/forward.hpp>
#include <cdquant/model.hpp>
#include <cdquant/rng.hpp>
#include <cmath>

#include "linalg/linalg.hpp"
#include "model/forward_blocks.hpp"
#include "support/errors.hpp"
#include "support/reference_forward.hpp"
#include "support/tiny_model.hpp"

namespace cdq {
namespace {

using test::random_tokens;
using ::testing::HasSubstr;

constexpr double kRelTol = 1e-4;

// Largest error relative to each row's logit scale.
double max_scaled_error(const Matrix& got, const std::vector<std::vector<double>>& ref) {
  EXPECT_EQ(got.rows, static_cast<int64_t>(ref.size()));
  double worst = 0.0;
  for (int64_t t = 0; t < got.rows; ++t) {
    const auto& r = ref[static_cast<size_t>(t)];
    EXPECT_EQ(got.cols, static_cast<int64_t>(r.size()));
    double scale = 1.0;
    for (double v : r) scale = std::max(scale, std::abs(v));
    for (int64_t j = 0; j < got.cols; ++j)
      worst = std::max(worst, std::abs(got(t, j) - r[static_cast<size_t>(j)]) / scale);
  }
  return worst;
}

void expect_matches_reference(const Model& m, const std::vector<int>& tokens) {
  const Matrix logits = forward_logits(m, tokens);
  const auto ref = test::reference_logits(m, tokens);
  const double err = max_scaled_error(logits, ref);
  EXPECT_LT(err, kRelTol);
  ::testing::Test::RecordProperty("max_scaled_error", std::to_string(err));
  std::printf("max scaled logit error %.3g\n", err);
}

using test::error_of;

TEST(Forward, StoriesMatchesReference) {
  const Model m = load_model(test::stories260k_path());
  // 300 tokens: crosses the 128-query attention chunks twice.
  expect_matches_reference(m, random_tokens(300, m.config.vocab_size, 1));
}

TEST(Forward, BabyLlamaMatchesReference) {
  const Model m = load_model(test::babyllama_path());
  expect_matches_reference(m, random_tokens(256, m.config.vocab_size, 2));
}

TEST(Forward, RandomModelsMatchReference) {
  ModelConfig gqa = test::tiny_config(32, 48, 2, 8, 2, 60, 64);
  ModelConfig mha = test::tiny_config(24, 40, 3, 3, 3, 30, 64);     // head_dim 8, no grouping
  ModelConfig untied = test::tiny_config(16, 24, 2, 2, 1, 40, 64);  // multi-query
  untied.tied_embeddings = false;
  untied.rope_theta = 1e6f;
  untied.norm_eps = 1e-6f;
  ModelConfig biased = test::tiny_config(32, 40, 2, 4, 2, 50, 64);
  biased.qkv_bias = true;
  biased.head_dim = 16;  // q_dim 64 != dim 32 (allowed outside llama2.c)
  uint64_t seed = 10;
  for (const ModelConfig& c : {gqa, mha, untied, biased}) {
    SCOPED_TRACE(::testing::Message() << "dim " << c.dim << " heads " << c.n_heads << "/"
                                      << c.n_kv_heads << " bias " << c.qkv_bias);
    expect_matches_reference(test::random_model(c, seed),
                             random_tokens(c.max_seq_len, c.vocab_size, seed + 1));
    ++seed;
  }
}

TEST(Forward, PrefixOfWindowGivesSameLogits) {
  // Causality: the logits of the first k tokens do not depend on later tokens.
  const Model m = load_model(test::stories260k_path());
  const auto tokens = random_tokens(200, m.config.vocab_size, 3);
  const Matrix full = forward_logits(m, tokens);
  const Matrix part = forward_logits(m, std::span(tokens).first(130));
  for (int64_t t = 0; t < part.rows; ++t)
    for (int64_t j = 0; j < part.cols; ++j) ASSERT_NEAR(part(t, j), full(t, j), 1e-4);
}

TEST(Forward, BatchedSequencesAreIndependent) {
  const Model m = test::random_model(test::tiny_config(32, 48, 1, 8, 4, 60, 64), 4);
  const auto a = random_tokens(40, 60, 5), b = random_tokens(40, 60, 6);
  std::vector<int> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  Matrix x = embed_tokens(m.tok_embeddings, ab);
  block_forward(m.blocks[0], m.config, x, nullptr, 40);
  Matrix xa = embed_tokens(m.tok_embeddings, a), xb = embed_tokens(m.tok_embeddings, b);
  block_forward(m.blocks[0], m.config, xa);
  block_forward(m.blocks[0], m.config, xb);
  for (int64_t t = 0; t < 40; ++t)
    for (int64_t j = 0; j < x.cols; ++j) {
      ASSERT_NEAR(x(t, j), xa(t, j), 1e-5);
      ASSERT_NEAR(x(40 + t, j), xb(t, j), 1e-5);
    }
}

TEST(Forward, CapturedInputsReproduceTheBlock) {
  // The residual update of a block is exactly attn_out Wo^T + ffn_act Wdown^T, and the FFN
  // input is the normalised mid-block residual: both follow from the captured activations
  // only if the hooks hand out what each linear really consumed.
  const Model m = load_model(test::stories260k_path());
  const ModelConfig& c = m.config;
  const auto tokens = random_tokens(50, c.vocab_size, 7);
  Matrix x = embed_tokens(m.tok_embeddings, tokens);
  block_forward(m.blocks[0], c, x);  // a realistic input to block 1
  const Matrix x_in = x;

  std::vector<BlockInput> order;
  std::vector<Matrix> seen;
  const BlockInputsCallback cb = [&](BlockInput in, const Matrix& a) {
    order.push_back(in);
    seen.push_back(a);
  };
  const BlockWeights& b = m.blocks[1];
  block_forward(b, c, x, &cb);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0], BlockInput::AttnNorm);
  EXPECT_EQ(order[1], BlockInput::AttnOut);
  EXPECT_EQ(order[2], BlockInput::FfnNorm);
  EXPECT_EQ(order[3], BlockInput::FfnAct);
  EXPECT_EQ(seen[1].cols, c.q_dim());
  EXPECT_EQ(seen[3].cols, c.hidden_dim);
  for (Linear l : kAllLinears)
    EXPECT_EQ(seen[static_cast<size_t>(input_of(l))].cols, b.linear(l).cols);

  Matrix attn_in;
  rmsnorm_rows(x_in, b.attn_norm, c.norm_eps, attn_in);
  Matrix mid = x_in;  // x_in + attn_out Wo^T
  gemm(false, true, 1.0f, view(seen[1]), view(const_cast<Matrix&>(b.wo)), 1.0f, view(mid));
  Matrix ffn_in;
  rmsnorm_rows(mid, b.ffn_norm, c.norm_eps, ffn_in);
  Matrix out = mid;
  gemm(false, true, 1.0f, view(seen[3]), view(const_cast<Matrix&>(b.w_down)), 1.0f, view(out));
  for (int64_t i = 0; i < x.size(); ++i) {
    ASSERT_NEAR(seen[0].data[i], attn_in.data[i], 1e-6);
    ASSERT_NEAR(seen[2].data[i], ffn_in.data[i], 1e-5);
    ASSERT_NEAR(out.data[i], x.data[i], 1e-5);
  }
}

TEST(Forward, RejectsBadWindows) {
  const Model m = test::random_model(test::tiny_config(), 1);
  const std::vector<int> bad = {1, 2, 40};
  EXPECT_THAT(error_of([&] { forward_logits(m, bad); }),
              HasSubstr("token id 40 at position 2 is outside the vocabulary"));
  const auto longer = random_tokens(33, 40, 1);
  EXPECT_THAT(error_of([&] { forward_logits(m, longer); }), HasSubstr("exceeds the model's"));
}

}  // namespace
}  // namespace cdq
