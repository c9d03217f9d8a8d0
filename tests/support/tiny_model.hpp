// Small random Llama models for tests (any shape the config allows: GQA, untied classifier,
// q/k/v biases), deterministic from a seed, and the paths of the real checkpoints.
#pragma once

#include <cdquant/model.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace cdq::test {

// A config with the given sizes (head_dim = dim / n_heads), tied classifier, no biases.
ModelConfig tiny_config(int dim = 16, int hidden = 24, int n_layers = 2, int n_heads = 4,
                        int n_kv_heads = 2, int vocab = 40, int seq_len = 32);

// Shapes the real checkpoints here lack: GQA (8 heads over 2 KV heads), q/k/v biases with
// q_dim != dim, and an untied classifier (context 64).
std::vector<ModelConfig> odd_shape_configs();

// Weights ~ N(0, 1/d_in) (so activations stay O(1) through the blocks), norms ~ 1 + N(0, 0.1).
Model random_model(const ModelConfig& config, uint64_t seed);

// n token ids uniform in [0, vocab), deterministic from seed.
std::vector<int> random_tokens(int n, int vocab, uint64_t seed);

std::string stories260k_path();  // ../shared/models/stories260K.bin
std::string babyllama_path();    // ../shared/models/babyllama-tok105/model5000.bin

}  // namespace cdq::test
