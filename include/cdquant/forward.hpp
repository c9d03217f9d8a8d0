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

// Called once per BlockInput during block_forward, in graph order, with the activation
// matrix (rows = tokens of every sequence in the batch).
using BlockInputsCallback = std::function<void(BlockInput, const Matrix&)>;

// Token embedding lookup: [T, dim]. Throws Error for an id outside [0, vocab).
Matrix embed_tokens(const Matrix& tok_embeddings, std::span<const int> tokens);

// Runs one block in place on x [n_seq * seq_len, dim]: rows are n_seq independent sequences
// of seq_len tokens each (positions 0..seq_len-1). seq_len = 0 means one sequence of x.rows.
void block_forward(const BlockWeights& block, const ModelConfig& config, Matrix& x,
                   const BlockInputsCallback* capture = nullptr, int64_t seq_len = 0);

// The whole model on one sequence: logits [T, vocab]. T must not exceed max_seq_len.
Matrix forward_logits(const Model& model, std::span<const int> tokens);

// Engine-faithful products: on, every linear (and the classifier) rounds its input activations
// to ggml_vec_dot_type of the type its weights were stored in, as llama.cpp's CPU kernels do
// (Q8_0 / Q8_1 / Q8_K before quantized weights, F16 before F16 ones), so the forward pass
// computes what llama.cpp computes up to float summation order; off (the default for a
// loaded model), float activations throughout. Only models read from GGUF store types other
// than F32, so for other models this changes nothing.
void use_engine_activations(Model& model, bool on);

}  // namespace cdq
