// What the GPTQ writer (gptq_writer.cpp) records about a run.
#pragma once

#include <cdquant/gptq_checkpoint.hpp>
#include <cdquant/quantize.hpp>

namespace cdq {

// The checkpoint config of a cdquant run: bits/group size/symmetry from the grid, desc_act from
// act-order; v1 ("gptq") for symmetric grids, v2 ("gptq_v2") for asymmetric ones.
GptqCheckpointConfig gptq_config_for(const QuantizeOptions& options);

}  // namespace cdq
