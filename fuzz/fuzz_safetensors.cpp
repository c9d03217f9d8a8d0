// libFuzzer harness: one .safetensors file, every tensor read back in each way its dtype
// allows (raw bytes, floats, matrix, I32 / I64).
#include <cdquant/error.hpp>
#include <cdquant/safetensors.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cdq::fuzz::write_file("input.safetensors", data, size);
  try {
    cdq::SafetensorsFile f(path);
    (void)f.metadata().size();
    for (const std::string& name : f.names()) {
      const cdq::TensorInfo& info = f.info(name);
      auto bytes = f.bytes(name);
      (void)bytes.size();
      try {
        if (cdq::is_float_dtype(info.dtype)) {
          (void)f.read_floats(name);
          if (info.shape.size() <= 2) (void)f.read_matrix(name);
        } else if (info.dtype == cdq::DType::I32) {
          (void)f.read_i32(name);
        } else if (info.dtype == cdq::DType::I64) {
          (void)f.read_i64(name);
        }
      } catch (const cdq::Error&) {
        // one tensor rejected; the others are still read
      }
    }
  } catch (const cdq::Error&) {
    // the file rejected with cdquant's own error
  }
  return 0;
}
