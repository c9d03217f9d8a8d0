// The HF GPTQ checkpoint tensors of one quantized linear (what vLLM, transformers and
// GPTQModel load): qweight, qzeros, scales, g_idx. Packing is a little-endian bit stream,
// least significant bits first: for b in {2, 4, 8} code k sits in word k / (32/b) at bit
// b * (k % (32/b)); for b = 3, 32 codes fill 3 words and straddle word boundaries.
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <cstdint>
#include <vector>

namespace cdq {

enum class GptqCheckpointFormat {
  V1,  // "gptq": qzeros store zero - 1 (kernels add 1 back); symmetric grids
  V2,  // "gptq_v2": qzeros store the zero itself; any grid
};

struct GptqLinear {
  int bits = 4;
  int64_t in_features = 0;       // K
  int64_t out_features = 0;      // N
  int n_groups = 0;              // G
  std::vector<int32_t> qweight;  // [K * bits / 32, N]
  std::vector<int32_t> qzeros;   // [G, N * bits / 32]
  std::vector<uint16_t> scales;  // [G, N] fp16
  std::vector<int32_t> g_idx;    // [K]
};

// Packs `count` codes of `bits` bits into ceil(count * bits / 32) words, LSB first.
std::vector<uint32_t> pack_bit_stream(const uint32_t* codes, int64_t count, int bits);
// Inverse of pack_bit_stream.
std::vector<uint32_t> unpack_bit_stream(const uint32_t* words, int64_t count, int bits);

// Whether a [N, K] linear can be stored with this bit width: K * bits and N * bits must be
// multiples of 32 (the packed words may not be partial).
bool gptq_packable(int64_t out_features, int64_t in_features, int bits);

// Packs the solver's integer grid and codes [N, K] (row = output channel). The grid's scales
// are stored as fp16: fit them fp16-exact (GridSpec::fp16_scales) for a lossless round trip.
GptqLinear pack_gptq_linear(const Grid& grid, const std::vector<uint8_t>& codes, int bits,
                            GptqCheckpointFormat format);

// Codes [N, K], integer zeros [N, G] and float scales back out of the packed tensors.
struct UnpackedGptq {
  std::vector<uint8_t> codes;  // [N, K]
  Grid grid;
};
UnpackedGptq unpack_gptq_linear(const GptqLinear& t, GptqCheckpointFormat format);

// W [N, K] = scales[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n]).
Matrix dequantize_gptq_linear(const GptqLinear& t, GptqCheckpointFormat format);

}  // namespace cdq
