// Log-softmax of one logits row (eval.cpp), in double.
#pragma once

#include <cstdint>
#include <vector>

namespace cdq {

// Per-position log-softmax of logits [T, vocab], in double.
std::vector<double> log_softmax_row(const float* logits, int64_t vocab);

}  // namespace cdq
