// The GGUF ModelReader (gguf_model_reader.cpp); open_model() picks it for .gguf files.
#pragma once

#include <cdquant/model.hpp>
#include <cdquant/tokenizer.hpp>
#include <memory>
#include <string>

namespace cdq {

// Reads a llama / qwen2 / mistral GGUF model; tensors of every supported type are dequantized
// to float. Throws Error for another architecture, missing keys or wrong shapes.
std::unique_ptr<ModelReader> open_gguf_model(const std::string& path);

// The tokenizer stored in a GGUF file's metadata.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path);

}  // namespace cdq
