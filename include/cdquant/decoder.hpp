// Incremental forward pass of one sequence with a key/value cache: each step feeds one token
// and returns the logits of the next, at the cost of that token alone. It computes exactly
// what forward_logits computes for the last position of the sequence so far.
#pragma once

#include <cdquant/matrix.hpp>
#include <cdquant/model.hpp>
#include <span>
#include <vector>

namespace cdq {

class Decoder {
 public:
  explicit Decoder(const Model& model);  // keeps a reference: the model must outlive it

  // Appends `token` at position position() and returns the next token's logits [vocab].
  // Throws Error for an id outside the vocabulary or past the model's max_seq_len.
  std::span<const float> step(int token);
  int64_t position() const { return pos_; }
  int64_t max_position() const { return model_.config.max_seq_len; }
  void reset() { pos_ = 0; }
  // Positions the KV cache has room for now: it grows with use, up to max_position().
  int64_t cache_capacity() const { return keys_.empty() ? 0 : keys_.front().rows; }

 private:
  void attend(const Matrix& q, int64_t layer, Matrix& out) const;
  void reserve_position(int64_t pos);  // grows the cache to hold row pos

  const Model& model_;
  std::vector<Matrix> keys_, values_;  // per layer [rows, kv_dim], rows <= max_seq_len grown
                                       // on demand; rows 0..pos_-1 valid
  Matrix logits_;                      // [1, vocab]
  int64_t pos_ = 0;
};

}  // namespace cdq
