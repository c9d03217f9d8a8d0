// GGUF llama-family conventions shared by the model writer (src/export/gguf_export.cpp) and the
// reader (gguf_model_reader.cpp): architecture names, metadata keys, tensor names, and tensors
// decoded to float.
#pragma once

#include <cdquant/gguf.hpp>
#include <cdquant/model.hpp>
#include <cdquant/tokenizer.hpp>
#include <string>
#include <string_view>

namespace cdq {

// "{arch}.{suffix}": a per-architecture metadata key.
std::string gguf_key(const std::string& arch, const char* suffix);
// GGUF tensor names.
std::string gguf_linear_name(int layer, Linear l);  // "blk.3.attn_q.weight"

// "llama" (llama, mistral) or "qwen2" (q/k/v biases, rotate-half q/k rows).
std::string gguf_arch_of(const ModelConfig& config);
// Whether the architecture stores q/k rows in the rotate-half (NEOX) order.
bool gguf_rotate_half(const std::string& arch);

// Sets general.*, {arch}.* hyper-parameters and tokenizer.ggml.* (alignment first).
void set_gguf_model_metadata(GgufWriter& w, const ModelConfig& config, const TokenizerVocab& vocab,
                             const std::string& name, uint32_t file_type);

// tokenizer.ggml.* of a file; throws Error naming the missing key.
TokenizerVocab read_gguf_vocab(const GgufReader& r);

// A tensor decoded to float32 [rows, cols] (cols = dims[0]) from any supported ggml type; its
// pages are dropped afterwards (streaming).
Matrix gguf_read_matrix(const GgufReader& r, std::string_view name);

}  // namespace cdq
