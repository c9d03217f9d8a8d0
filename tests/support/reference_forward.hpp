// A deliberately plain token-by-token Llama forward pass with a KV cache (in the manner of
// llama2.c's run.c, written from the math): scalar loops, double accumulation. It shares no
// code with src/model/forward.cpp, so agreement between the two is a real check.
#pragma once

#include <cdquant/model.hpp>
#include <span>
#include <vector>

namespace cdq::test {

// Logits [T][vocab] for the tokens fed one at a time at positions 0..T-1.
std::vector<std::vector<double>> reference_logits(const Model& model, std::span<const int> tokens);

}  // namespace cdq::test
