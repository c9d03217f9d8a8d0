// IEEE fp16 and bfloat16 <-> float32 conversions (round to nearest even).
#pragma once

#include <cstdint>

namespace cdq {

float fp16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_bf16(float f);

}  // namespace cdq
