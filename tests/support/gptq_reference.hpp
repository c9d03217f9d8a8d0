// Straightforward GPTQ for tests, written from the algorithm description (gptq.py fasterquant)
// in double precision: column by column, every error spread at once over all later columns (no
// lazy blocks), U from the literal path cholesky -> inverse -> cholesky of the damped H, and an
// own min-max quantizer. Independent of src/quant except for the GridSpec type.
#pragma once

#include <cdquant/grid.hpp>
#include <cdquant/matrix.hpp>
#include <cstdint>
#include <vector>

namespace cdq::test {

struct GptqReferenceOptions {
  GridSpec grid;  // min-max only: bits, group_size (<= 0: per-channel), symmetric
  double percdamp = 0.01;
  bool act_order = false;
  bool static_groups = false;
  // gptq.py fits a dynamic group on the global W, which gets the updates of the current lazy
  // block only at the block's end: the reference fits on a snapshot of W taken at every
  // multiple of fit_block (the blocked solver's block size).
  int64_t fit_block = 128;
};

struct GptqReference {
  std::vector<uint8_t> codes;  // [d_out, d_in] original order
  Matrix q;                    // [d_out, d_in] dequantized
  std::vector<int32_t> g_idx;  // [d_in]
  int n_groups = 0;
  std::vector<float> scale;   // [d_out, n_groups]
  std::vector<int32_t> zero;  // [d_out, n_groups]
};

GptqReference gptq_reference(const Matrix& w, const Matrix& h, const GptqReferenceOptions& o);

}  // namespace cdq::test
