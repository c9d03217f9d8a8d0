// libFuzzer harness: Hugging Face tokenizer.json text, parsed into a tokenizer that then
// encodes and decodes a text with spaces, digits, an added-token lookalike and raw bytes.
#include <cdquant/error.hpp>
#include <cdquant/tokenizer.hpp>
#include <string_view>

#include "fuzz_support.hpp"
#include "io/tokenizer_hf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string_view json(reinterpret_cast<const char*>(data), size);
    auto tok = cdq::tok::parse_hf_tokenizer(json, "", "fuzz input");
    const std::vector<int> ids =
        tok->encode("Hello  world! <s>12 345 \xe2\x96\x81x\xc3\xa9\xff\n", true);
    (void)tok->decode(ids);
    (void)tok->vocab();
  } catch (const cdq::Error&) {
    // rejected with cdquant's own error
  }
  return 0;
}
