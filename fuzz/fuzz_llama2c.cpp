// libFuzzer harness: llama2.c checkpoints (.bin), opened and read block by block.
#include <cdquant/error.hpp>
#include <cdquant/model.hpp>

#include "fuzz_support.hpp"
#include "model/llama2c.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cdq::fuzz::write_file("model.bin", data, size);
  try {
    auto reader = cdq::open_llama2c(path);
    cdq::Model m = cdq::load_model(*reader);
    cdq::check_model(m);
  } catch (const cdq::Error&) {
    // rejected with cdquant's own error
  }
  return 0;
}
