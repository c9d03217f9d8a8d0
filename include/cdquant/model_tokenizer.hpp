// The tokenizer of a model: given explicitly, stored inside a GGUF file, or stored beside the
// checkpoint (find_tokenizer_for).
#pragma once

#include <cdquant/model.hpp>
#include <memory>
#include <string>

namespace cdq {

class Tokenizer;

// The tokenizer for a model: tokenizer_path when given, else the one inside a GGUF model, else
// the one stored beside the model (find_tokenizer_for). Throws Error when there is none.
std::unique_ptr<Tokenizer> load_model_tokenizer(const std::string& model_path,
                                                const std::string& tokenizer_path = "");

// The tokenizer at tokenizer_path, or when empty the one stored with the model (beside it,
// or inside a GGUF file). Throws Error saying what to pass when there is none.
std::unique_ptr<Tokenizer> tokenizer_for_model(const std::string& model_path,
                                               const std::string& tokenizer_path);

// Throws Error, naming `tokenizer_name`, when the tokenizer has ids beyond the model's
// vocabulary (a tokenizer smaller than the vocabulary is fine: padded embeddings).
void check_tokenizer_fits(const Tokenizer& tokenizer, const ModelConfig& config,
                          const std::string& tokenizer_name);

}  // namespace cdq
