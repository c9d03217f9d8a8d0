// Shared by the GGUF reader and writer.
#pragma once

#include <cdquant/gguf.hpp>
#include <cstddef>
#include <cstdint>

namespace cdq::gguf {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr size_t kMaxNameBytes = 63;     // GGML_MAX_NAME - 1: llama.cpp's tensor name limit

// Bytes of one fixed-size value; 0 for String / Array / unknown types.
size_t fixed_size(GgufType t);
bool known_type(uint32_t t);

inline uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

}  // namespace cdq::gguf
