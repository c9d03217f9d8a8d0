// HF model directories for tests: any Model written the way HF stores it (config.json +
// safetensors, q/k rows in rotate-half order) in a chosen float dtype, and exact comparisons.
#pragma once

#include <cdquant/model.hpp>
#include <cdquant/safetensors.hpp>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cdq::test {

// Writes m to dir (created) with every tensor stored as dtype (F32, F16 or BF16); sharded into
// files of at most shard_bytes when shard_bytes > 0. Also writes a tokenizer_config.json so
// that copying of side files can be checked.
void write_hf_model(const Model& m, const std::string& dir, DType dtype = DType::F32,
                    uint64_t shard_bytes = 0);

// Values as they come back from a tensor stored as dtype (float -> dtype -> float).
std::vector<float> rounded_to(std::span<const float> v, DType dtype);
Matrix rounded_to(const Matrix& m, DType dtype);

// Bitwise equality of float arrays.
bool same_bits(std::span<const float> a, std::span<const float> b);

// Random calibration windows of token ids in [0, vocab), BOS first.
std::vector<std::vector<int>> random_windows(int vocab, int n, int seqlen, uint64_t seed);

}  // namespace cdq::test
