// The activation rounding of ggml's CPU matrix products (round_activations, ggml_quants.hpp).
#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/half.hpp>
#include <cmath>

#include "quant/ggml_quants.hpp"

namespace cdq {

namespace {

// Q8_0 / Q8_1 (the x86 kernels quantize_row_q8_0 / _q8_1): scale by 127 / amax with the
// unrounded amax, round to nearest even, decode with the fp16-rounded d.
void round_q8_0(float* x) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = fp16_to_float(float_to_fp16(amax / 127.0f));
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  for (int j = 0; j < 32; ++j) x[j] = d * std::nearbyint(x[j] * id);
}

// Q8_K (quantize_row_q8_K_ref, which the x86 backend calls): signed max, float d.
void round_q8_k(float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 256; ++j)
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  if (amax == 0.0f) {
    std::fill_n(x, 256, 0.0f);
    return;
  }
  const float iscale = -127.0f / max;
  const float d = 1.0f / iscale;
  for (int j = 0; j < 256; ++j) x[j] = d * std::min(127.0f, std::nearbyint(iscale * x[j]));
}

}  // namespace

void round_activations(ActivationType type, std::span<float> row) {
  const size_t n = row.size();
  switch (type) {
    case ActivationType::F32:
      return;
    case ActivationType::F16:
      for (float& v : row) v = fp16_to_float(float_to_fp16(v));
      return;
    case ActivationType::BF16:
      for (float& v : row) v = bf16_to_float(float_to_bf16(v));
      return;
    case ActivationType::Q8_0:
    case ActivationType::Q8_1:
      CDQ_ASSERT(n % 32 == 0);
      for (size_t i = 0; i < n; i += 32) round_q8_0(row.data() + i);
      return;
    case ActivationType::Q8_K:
      CDQ_ASSERT(n % 256 == 0);
      for (size_t i = 0; i < n; i += 256) round_q8_k(row.data() + i);
      return;
  }
}

}  // namespace cdq
