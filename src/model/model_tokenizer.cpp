// load_model_tokenizer, tokenizer_for_model, check_tokenizer_fits: the tokenizer of a model.
#include <cdquant/error.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/model_tokenizer.hpp>
#include <cdquant/tokenizer.hpp>
#include <filesystem>

#include "model/gguf_model_reader.hpp"

namespace cdq {

std::unique_ptr<Tokenizer> load_model_tokenizer(const std::string& model_path,
                                                const std::string& tokenizer_path) {
  if (!tokenizer_path.empty()) return load_tokenizer(tokenizer_path);
  std::error_code ec;
  if (std::filesystem::is_regular_file(model_path, ec) && is_gguf_file(model_path))
    return load_gguf_tokenizer(model_path);
  const std::string found = find_tokenizer_for(model_path);
  CDQ_CHECK(!found.empty(),
            "{}: no tokenizer found beside the model (looked for tokenizer.json, "
            "tokenizer.model, tokenizer.bin, tok*.bin, tok*.model): pass --tokenizer",
            model_path);
  return load_tokenizer(found);
}

std::unique_ptr<Tokenizer> tokenizer_for_model(const std::string& model_path,
                                               const std::string& tokenizer_path) {
  if (tokenizer_path.empty() && is_gguf_file(model_path)) return load_gguf_tokenizer(model_path);
  const std::string path = tokenizer_path.empty() ? find_tokenizer_for(model_path) : tokenizer_path;
  CDQ_CHECK(!path.empty(),
            "no tokenizer found beside {} (looked for tokenizer.json, tokenizer.model, "
            "tokenizer.bin, tok*.bin, tok*.model): pass --tokenizer",
            model_path);
  return load_tokenizer(path);
}

void check_tokenizer_fits(const Tokenizer& tokenizer, const ModelConfig& config,
                          const std::string& tokenizer_name) {
  CDQ_CHECK(tokenizer.vocab_size() <= config.vocab_size,
            "{}: tokenizer has {} tokens but the model only {}", tokenizer_name,
            tokenizer.vocab_size(), config.vocab_size);
}

}  // namespace cdq
