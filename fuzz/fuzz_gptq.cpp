// libFuzzer harness: GPTQ checkpoints (HF directories: config.json + model.safetensors). One
// input holds both files: a little-endian u32 length L, L bytes of config.json, then the
// safetensors file (fuzz/make_corpus.sh packs the tool's GPTQ outputs this way). open_model
// picks the GPTQ reader when the config says so and the plain HF reader otherwise, so both
// are exercised; every linear is unpacked and dequantized.
#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/model.hpp>
#include <cstring>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  uint32_t config_len = 0;
  std::memcpy(&config_len, data, 4);  // little-endian hosts only, as the readers
  const size_t n_config = std::min<size_t>(config_len, size - 4);
  cdq::fuzz::write_file("config.json", data + 4, n_config);
  cdq::fuzz::write_file("model.safetensors", data + 4 + n_config, size - 4 - n_config);
  try {
    auto reader = cdq::open_model(cdq::fuzz::scratch_dir());
    cdq::Model m = cdq::load_model(*reader);
    cdq::check_model(m);
  } catch (const cdq::Error&) {
    // rejected with cdquant's own error
  }
  return 0;
}
