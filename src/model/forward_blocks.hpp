// Building blocks of the forward pass (forward.cpp), shared with the KV-cache decoder and
// evaluation, and checked piece by piece by the tests.
#pragma once

#include <cdquant/forward.hpp>
#include <cdquant/matrix.hpp>
#include <cdquant/model.hpp>
#include <cstdint>
#include <span>
#include <vector>

namespace cdq {

const char* block_input_name(BlockInput in);  // "attn_norm", "attn_out", "ffn_norm", "ffn_act"

// Final norm and classifier: x [T, dim] -> logits [T, vocab].
Matrix head_forward(const std::vector<float>& final_norm, const Matrix& classifier,
                    const ModelConfig& config, const Matrix& x,
                    ActivationType act = ActivationType::F32);

// Several independent windows of seq_len tokens each, stacked: logits [n * seq_len, vocab].
// One batch makes the matrix products large enough to use every core.
Matrix forward_logits_batch(const Model& model, std::span<const int> tokens, int64_t seq_len);

// Causal grouped-query attention over windows of T tokens stacked in q [n * T, q_dim] and
// k, v [n * T, kv_dim] (RoPE applied) -> out [n * T, q_dim]; head h reads kv head
// h / (n_heads / n_kv_heads). Scores and weighted values are matrix products (BLAS) per head
// and tile of queries, with a softmax stable under each row's maximum.
void causal_attention(const Matrix& q, const Matrix& k, const Matrix& v, int64_t T,
                      const ModelConfig& config, Matrix& out);
// What the forward pass rounds linear l's input to (BlockWeights::act).
inline ActivationType act_of(const BlockWeights& b, Linear l) {
  return b.act[static_cast<size_t>(l)];
}

// y [T, out] = x [T, in] W^T (+ bias), W [out, in]; y is resized if needed. With act other
// than F32, the product uses x's rows rounded to act (round_activations) instead of x.
void linear_forward(const Matrix& x, const Matrix& w, const std::vector<float>& bias, Matrix& y,
                    ActivationType act = ActivationType::F32);
// The SwiGLU half of a block, in place on x [T, dim] (rows are independent tokens):
// x += (silu(f Wgate^T) * (f Wup^T)) Wdown^T with f = rmsnorm(x) * ffn_norm.
void feed_forward(const BlockWeights& block, const ModelConfig& config, Matrix& x,
                  const BlockInputsCallback* capture = nullptr);
// y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight, row by row. x, y: [T, n].
void rmsnorm_rows(const Matrix& x, std::span<const float> weight, float eps, Matrix& y);
// Rotates interleaved pairs (2i, 2i+1) of every head of x [n_seq * seq_len, n_heads * head_dim]
// by pos * theta^(-2i / head_dim), pos = first_pos + row % seq_len.
void apply_rope(Matrix& x, int head_dim, float theta, int64_t seq_len, int64_t first_pos = 0);

}  // namespace cdq
