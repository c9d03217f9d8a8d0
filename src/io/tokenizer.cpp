// load_tokenizer: recognises the tokenizer file; tokenizer_from_vocab: GGUF metadata.
#include <cdquant/error.hpp>
#include <cdquant/tokenizer.hpp>
#include <filesystem>
#include <fstream>

#include "io/tokenizer_hf.hpp"
#include "io/tokenizer_llama2c.hpp"
#include "io/tokenizer_sentencepiece.hpp"
#include "io/tokenizer_spm.hpp"

namespace cdq {

namespace {

// The first non-whitespace byte of the file (0 if none).
char first_significant_byte(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CDQ_CHECK(in.good(), "cannot open tokenizer '{}'", path);
  char c;
  while (in.get(c))
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return c;
  return 0;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  CDQ_CHECK(fs::exists(path), "tokenizer '{}' does not exist", path);
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "tokenizer.json")) return tok::load_hf_tokenizer(path);
    if (fs::exists(fs::path(path) / "tokenizer.model"))
      return tok::load_sentencepiece_tokenizer((fs::path(path) / "tokenizer.model").string());
    fail("directory '{}' has neither tokenizer.json nor tokenizer.model", path);
  }
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".json" || first_significant_byte(path) == '{') return tok::load_hf_tokenizer(path);
  if (ext == ".model") return tok::load_sentencepiece_tokenizer(path);
  return tok::load_llama2c_tokenizer(path);
}

std::unique_ptr<Tokenizer> tokenizer_from_vocab(const TokenizerVocab& vocab) {
  if (vocab.model == "llama") return std::make_unique<tok::SpmTokenizer>(vocab, "gguf-llama");
  if (vocab.model == "gpt2") return tok::hf_tokenizer_from_gpt2_vocab(vocab);
  fail("tokenizer model '{}' is not supported (supported: llama, gpt2)", vocab.model);
}

}  // namespace cdq
