// libFuzzer harness: llama2.c tokenizer files (tokenizer.bin), parsed into a vocabulary, built
// into a tokenizer, and used to encode and decode.
#include <cdquant/error.hpp>
#include <cdquant/tokenizer.hpp>
#include <string_view>

#include "fuzz_support.hpp"
#include "io/tokenizer_llama2c.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    const cdq::TokenizerVocab vocab = cdq::tok::parse_llama2c_tokenizer(bytes, "fuzz input");
    auto tok = cdq::tokenizer_from_vocab(vocab);
    const std::vector<int> ids = tok->encode("Once upon a time, \xc3\xa9 \xff 12\n", true);
    (void)tok->decode(ids);
  } catch (const cdq::Error&) {
    // rejected with cdquant's own error
  }
  return 0;
}
