// GGUF llama-family conventions shared by the model writer (src/model/gguf_export.cpp) and the
// reader (gguf_model.cpp): architecture names, metadata keys and tensor names.
#pragma once

#include <cdquant/gguf.hpp>
#include <cdquant/model.hpp>
#include <cdquant/tokenizer.hpp>
#include <string>

namespace cdq {

// "llama" (llama, mistral) or "qwen2" (q/k/v biases, rotate-half q/k rows).
std::string gguf_arch_of(const ModelConfig& config);
// Whether the architecture stores q/k rows in the rotate-half (NEOX) order.
bool gguf_rotate_half(const std::string& arch);

// Sets general.*, {arch}.* hyper-parameters and tokenizer.ggml.* (alignment first).
void set_gguf_model_metadata(GgufWriter& w, const ModelConfig& config, const TokenizerVocab& vocab,
                             const std::string& name, uint32_t file_type, bool quantized);

// tokenizer.ggml.* of a file; throws Error naming the missing key.
TokenizerVocab read_gguf_vocab(const GgufReader& r);

}  // namespace cdq
