// Text generation: drawing tokens from a model's next-token distribution.
#pragma once

#include <cdquant/decoder.hpp>
#include <cdquant/rng.hpp>
#include <span>
#include <vector>

namespace cdq {

struct SampleOptions {
  double temperature = 1.0;   // softmax(logits / temperature); 0 = always the most likely token
  double top_p = 1.0;         // nucleus: draw among the most likely tokens whose mass reaches top_p
  int max_tokens = 256;       // new tokens per sequence (the model's context bounds it too)
  std::vector<int> stop_ids;  // a sampled stop id ends the sequence and is not returned
};

// Throws Error for a temperature < 0, top_p outside (0, 1] or max_tokens < 1.
void validate(const SampleOptions& options);

// One token id drawn from logits [vocab] under `options` (temperature, top_p).
int sample_token(std::span<const float> logits, const SampleOptions& options, Rng& rng);

// Feeds `prompt` (non-empty; usually starting with BOS) to a fresh decoder state and returns
// the sampled continuation, without the prompt and without the stop id that ended it.
std::vector<int> generate(Decoder& decoder, std::span<const int> prompt,
                          const SampleOptions& options, Rng& rng);

}  // namespace cdq
