// Batched float32 forward pass of the Llama graph over a window of tokens, and the pieces the
// calibration pipeline needs (one block at a time, with the inputs of every linear exposed).
//
// Graph per block (x is the residual stream [T, dim]):
//   a = rmsnorm(x) * attn_norm            -> input of q, k, v
//   q, k, v = a Wq^T (+bq), a Wk^T (+bk), a Wv^T (+bv); RoPE on q and k (interleaved pairs)
//   o = causal grouped-query attention     -> input of o
//   x += o Wo^T
//   f = rmsnorm(x) * ffn_norm              -> input of gate, up
//   g = silu(f Wgate^T) * (f Wup^T)        -> input of down
//   x += g Wdown^T
// then logits = (rmsnorm(x) * final_norm) C^T with C the classifier.
#pragma once

#include <cdquant/matrix.hpp>
#include <cdquant/model.hpp>
#include <functional>
#include <span>

namespace cdq {

// The four distinct activations that feed the seven linears of a block.
enum class BlockInput {
  AttnNorm,  // [T, dim]    feeds q, k, v
  AttnOut,   // [T, q_dim]  feeds o
  FfnNorm,   // [T, dim]    feeds gate, up
  FfnAct,    // [T, hidden] feeds down (silu(gate) * up)
};
BlockInput input_of(Linear l);
const char* block_input_name(BlockInput in);  // "attn_norm", "attn_out", "ffn_norm", "ffn_act"

// Called once per BlockInput during block_forward, in graph order, with the activation
// matrix (rows = tokens of every sequence in the batch).
using BlockInputsCallback = std::function<void(BlockInput, const Matrix&)>;

// Token embedding lookup: [T, dim]. Throws Error for an id outside [0, vocab).
Matrix embed_tokens(const Matrix& tok_embeddings, std::span<const int> tokens);

// Runs one block in place on x [n_seq * seq_len, dim]: rows are n_seq independent sequences
// of seq_len tokens each (positions 0..seq_len-1). seq_len = 0 means one sequence of x.rows.
void block_forward(const BlockWeights& block, const ModelConfig& config, Matrix& x,
                   const BlockInputsCallback* capture = nullptr, int64_t seq_len = 0);

// Final norm and classifier: x [T, dim] -> logits [T, vocab].
Matrix head_forward(const std::vector<float>& final_norm, const Matrix& classifier,
                    const ModelConfig& config, const Matrix& x);

// The whole model on one sequence: logits [T, vocab]. T must not exceed max_seq_len.
Matrix forward_logits(const Model& model, std::span<const int> tokens);
// Several independent windows of seq_len tokens each, stacked: logits [n * seq_len, vocab].
// One batch makes the matrix products large enough to use every core.
Matrix forward_logits_batch(const Model& model, std::span<const int> tokens, int64_t seq_len);

// Building blocks, exposed for tests and other passes (the KV-cache decoder among them).
// y [T, out] = x [T, in] W^T (+ bias), W [out, in]; y is resized if needed.
void linear_forward(const Matrix& x, const Matrix& w, const std::vector<float>& bias, Matrix& y);
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
