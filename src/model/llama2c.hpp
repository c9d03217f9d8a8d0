// llama2.c legacy checkpoints (.bin): 7 x int32 header, then float32 arrays stacked per
// tensor kind across layers (see docs FORMATS.md). Reading is memory-mapped and streaming.
#pragma once

#include <cdquant/model.hpp>
#include <cstdint>
#include <memory>
#include <string>

namespace cdq {

// The header fields as stored (vocab_size negative when the classifier is unshared).
struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};
constexpr uint64_t kLlama2cHeaderBytes = 7 * sizeof(int32_t);

// Limits against absurd header values (a corrupt or foreign file): far above any real model
// but low enough that every size below fits comfortably in 64 bits.
constexpr int32_t kLlama2cMaxDim = 1 << 16;
constexpr int32_t kLlama2cMaxHidden = 1 << 18;
constexpr int32_t kLlama2cMaxLayers = 1 << 10;
constexpr int32_t kLlama2cMaxVocab = 1 << 22;
constexpr int32_t kLlama2cMaxSeq = 1 << 22;

// Validates the header values and turns them into a config. Throws Error naming `what`.
ModelConfig llama2c_config(const Llama2cHeader& h, const std::string& what);

// Exact file size in bytes implied by a config (header, weights, legacy RoPE tables).
uint64_t llama2c_file_bytes(const ModelConfig& c);

// Opens a llama2.c checkpoint: checks the header and the exact file size, then serves blocks
// straight from the mapping.
std::unique_ptr<ModelReader> open_llama2c(const std::string& path);

}  // namespace cdq
