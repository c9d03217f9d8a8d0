// Data-free calibration (LLM-QAT's recipe): the float model's own generations, sampled at
// temperature 1 from BOS, stand in for the text it was trained on. Decoding many sequences at
// once through a batched KV cache makes this cost seconds on the small models.
#pragma once

#include <cdquant/matrix.hpp>
#include <cdquant/model.hpp>
#include <cdquant/rng.hpp>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace cdq {

// Incremental forward pass of `batch` independent sequences, each with its own KV cache and
// position: one step appends one token to every sequence that takes part, with the linears as
// one matrix product over the batch ([n, dim] x W^T instead of n vector products) and the
// attention of each sequence over its own cache. Per sequence it computes what Decoder
// computes, to float rounding (the products differ in summation order, and the softmax's
// exponential is a vectorised one within ~2 ulps of std::exp). The attention of a step is
// shared among OpenMP threads when it is large enough, unless step() is called from inside a
// parallel region.
class BatchDecoder {
 public:
  // A tokens[i] of kSkip leaves sequence i out of the step (finished, or not started).
  static constexpr int kSkip = -1;

  // Keeps a reference: the model must outlive the decoder. max_positions bounds the length of
  // every sequence (0 = the model's max_seq_len); the cache is sized by it, so a caller that
  // needs short sequences (calibration windows) pays for those only. Throws Error for
  // batch < 1 or max_positions outside [0, max_seq_len].
  BatchDecoder(const Model& model, int batch, int64_t max_positions = 0);

  // tokens [batch]: appends tokens[i] to sequence i at position(i), for every i whose token is
  // not kSkip, and returns the next-token logits [batch, vocab]: row i for every sequence that
  // took part; the rows of skipped sequences are zero. Valid until the next call. Throws
  // Error for a wrong number of tokens, an id outside the vocabulary or a sequence already at
  // max_position(), and then leaves every sequence as it was.
  const Matrix& step(std::span<const int> tokens);

  // Row `seq` of the last step's logits [vocab].
  std::span<const float> logits(int seq) const;

  int batch() const { return batch_; }
  int64_t position(int seq) const;  // tokens sequence `seq` holds (its next position)
  int64_t max_position() const { return max_pos_; }
  void reset(int seq);  // sequence `seq` restarts: its next token goes to position 0
  void reset();         // every sequence restarts

 private:
  void attend(int64_t layer, const Matrix& q, Matrix& out) const;

  const Model& model_;
  int batch_;
  int64_t max_pos_;
  int64_t stride_;  // positions per cached row: max_pos_ rounded up to a whole score block
  std::vector<int64_t> pos_;     // [batch]
  std::vector<float> rope_cos_;  // [max_pos, head_dim / 2]
  std::vector<float> rope_sin_;  // [max_pos, head_dim / 2]
  // Per layer [batch, n_kv_heads, head_dim, stride_]: transposed, so the positions a query
  // attends are contiguous.
  std::vector<std::vector<float>> keys_, values_;
  std::vector<int> active_;         // sequences of the current step, in order
  std::vector<int> active_tokens_;  // their tokens
  Matrix logits_;                   // [batch, vocab]
};

// What self_calibration reports after every decoding step.
struct SelfCalibrationProgress {
  int64_t windows_done = 0;   // windows complete so far
  int64_t windows_total = 0;  // nsamples
  int64_t tokens = 0;         // tokens in all windows so far (complete or not)
  double seconds = 0.0;       // since the call began
};
using SelfCalibrationCallback = std::function<void(const SelfCalibrationProgress&)>;

// nsamples calibration windows of exactly seqlen tokens, each starting with BOS
// (model.config.bos_id) like the text windows of sample_calibration_windows with prepend_bos,
// sampled from the model itself at temperature 1 (no top-p, sample_softmax) from BOS.
//
// Packing: when a sample draws EOS or BOS before the window is full, the window goes on with
// BOS and a new sample from a fresh context (position 0), as documents are packed in training
// data, so every window is full and contains no EOS; a BOS inside a window marks where a
// sample begins.
//
// Determinism: window i draws from its own random stream (self_calibration_rng(seed, i)), so
// the same seed gives the same windows whatever `batch` is, except where
// a uniform draw lands within float rounding of a boundary of the cumulative distribution:
// different batches round the logits differently, so such a token can flip, and the window goes
// its own way from there (measured on stories260K: 3 of 128 windows of 512 tokens at batch 64
// differ from the one-sequence Decoder's, none at batch 16). The same call on the same build
// repeats exactly, whatever the thread count (the automatic batch does not depend on it, and
// neither do the products: src/linalg).
//
// batch: windows decoded together; 0 chooses self_calibration_batch(config, nsamples, seqlen).
// Groups of `batch` windows are shared among the OpenMP threads, each with its own decoder and
// one-threaded matrix products (no barrier inside a step: on a busy machine those cost more
// than the steps), so a batch above nsamples / threads leaves threads idle; fewer threads run
// when their batches' KV caches would pass 2 GiB together.
//
// progress, when set, is called after every decoding step of every group (seqlen - 1 steps a
// group), from the decoding threads but one call at a time, with counts that never decrease;
// keep it cheap (the caller decides how often to print).
//
// Throws Error for nsamples < 1, seqlen < 2 or above the model's max_seq_len, or batch < 0.
// To save the windows as text (--save-calib), decode each with Tokenizer::decode.
std::vector<std::vector<int>> self_calibration(const Model& model, int nsamples, int seqlen,
                                               uint64_t seed,
                                               const SelfCalibrationCallback& progress = {},
                                               int batch = 0);

// The batch self_calibration uses when it is given 0: at most 16 windows (and nsamples), fewer
// when their KV caches would pass 2 GiB (large models). It does not depend on the thread count,
// so neither do the windows.
int self_calibration_batch(const ModelConfig& config, int nsamples, int seqlen);

// The random stream window `index` of self_calibration draws its tokens from (one
// sample_softmax call per sampled token, in order), so a caller or a test can reproduce a
// window with a plain Decoder.
Rng self_calibration_rng(uint64_t seed, int64_t index);

// One token id drawn from softmax(logits [vocab]) (temperature 1) with one rng.uniform(): the
// distribution of sample_token at temperature 1 and top_p 1, without its sort by probability
// (which cost as much as decoding the token on the small models): ids are scanned in order.
int sample_softmax(std::span<const float> logits, Rng& rng);

}  // namespace cdq
