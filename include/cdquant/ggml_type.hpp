// ggml's tensor type ids and their block sizes: what a GGUF tensor's bytes are, shared by the
// GGUF container (io) and the block codecs (quant, src/quant/ggml_quants.hpp).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace cdq {

// ggml type ids as stored in GGUF tensor infos (only the ones cdquant reads and writes).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  IQ4_NL = 20,
  IQ4_XS = 23,
  BF16 = 30,
};

struct GgmlTypeTraits {
  GgmlType type;
  const char* name;  // "Q4_K", as ggml names it
  int block_size;    // weights per block (1 for float types)
  int type_size;     // bytes per block
  int group_size;    // weights per sub-block sharing one (scale, bias); 0 for float types
  int maxq;          // codes 0..maxq on the grid; 0 for float types
  // Codes index a non-uniform table of levels (IQ4_NL / IQ4_XS: kvalues_iq4nl) instead of
  // being integer steps.
  bool codebook = false;
  bool quantized() const { return group_size > 0; }
};

// Every supported type, in id order.
std::span<const GgmlTypeTraits> ggml_all_types();
const GgmlTypeTraits& ggml_traits(GgmlType t);
// Null when the id is not a type cdquant supports (any other ggml type, or garbage).
const GgmlTypeTraits* find_ggml_traits(uint32_t id);
// "Q4_K", "q4_k", "f16", "bf16" ... Throws Error listing the supported names.
GgmlType parse_ggml_type(std::string_view name);
const char* ggml_type_name(GgmlType t);
// Bytes of n consecutive weights; throws Error unless n is a multiple of the block size.
uint64_t ggml_row_bytes(GgmlType t, int64_t n);

// What ggml's CPU backend converts a product's float activations to before the dot products
// with a weight of a given type (its vec_dot_type): the weight's own type for F32 / F16 / BF16,
// Q8_0 (int8, fp16 scale per 32) for Q4_0 / Q5_0 / Q8_0, Q8_1 (the same plus an fp16 block sum)
// for Q4_1 / Q5_1, Q8_K (int8, float scale per 256) for the K-quants. So llama.cpp's products
// are those of the weights with these rounded activations, not with the float ones.
enum class ActivationType : uint8_t { F32, F16, BF16, Q8_0, Q8_1, Q8_K };
ActivationType ggml_vec_dot_type(GgmlType weight);
const char* activation_type_name(ActivationType a);  // "F32", "Q8_K", ...

}  // namespace cdq
