// libFuzzer harness: GGUF files, through the raw reader (metadata, tensor infos, tensor byte
// views), the model reader (every tensor dequantized, the config checked) and the tokenizer
// stored in the metadata (encode / decode).
#include <cdquant/error.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/model.hpp>
#include <cdquant/tokenizer.hpp>

#include "fuzz_support.hpp"
#include "model/gguf_model_reader.hpp"

namespace {

void read_raw(const std::string& path) {
  cdq::GgufReader r(path);
  for (const auto& kv : r.metadata()) (void)kv.second.size();
  uint64_t sum = 0;
  for (const auto& t : r.tensors()) {
    auto bytes = r.tensor_bytes(t);
    if (!bytes.empty()) sum += bytes.front() + bytes.back();
  }
  (void)sum;
  (void)cdq::gguf_size_info(path);
}

void read_model(const std::string& path) {
  auto reader = cdq::open_gguf_model(path);
  cdq::Model m = cdq::load_model(*reader);
  cdq::check_model(m);
}

void read_tokenizer(const std::string& path) {
  auto tok = cdq::load_gguf_tokenizer(path);
  const std::vector<int> ids = tok->encode("Once upon a time, <s> 12 \xe2\x96\x81x\n", true);
  (void)tok->decode(ids);
  (void)tok->vocab();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cdq::fuzz::write_file("input.gguf", data, size);
  for (auto step : {read_raw, read_model, read_tokenizer}) {
    try {
      step(path);
    } catch (const cdq::Error&) {
      // rejected with cdquant's own error: the right answer to a bad file
    }
  }
  return 0;
}
