#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/sampling.hpp>
#include <cmath>
#include <numeric>

namespace cdq {

void validate(const SampleOptions& o) {
  CDQ_CHECK(o.temperature >= 0.0 && std::isfinite(o.temperature),
            "sampling: temperature must be finite and >= 0, got {}", o.temperature);
  CDQ_CHECK(o.top_p > 0.0 && o.top_p <= 1.0, "sampling: top_p must be in (0, 1], got {}", o.top_p);
  CDQ_CHECK(o.max_tokens >= 1, "sampling: max_tokens must be >= 1, got {}", o.max_tokens);
}

int sample_token(std::span<const float> logits, const SampleOptions& o, Rng& rng) {
  CDQ_ASSERT(!logits.empty());
  const auto best = std::max_element(logits.begin(), logits.end());
  if (o.temperature == 0.0) return static_cast<int>(best - logits.begin());
  // Probabilities in double, most likely first; the nucleus is the shortest prefix whose mass
  // reaches top_p.
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < p.size(); ++i)
    sum += (p[i] = std::exp((static_cast<double>(logits[i]) - *best) / o.temperature));
  std::vector<int> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)];
  });
  size_t keep = 0;
  double mass = 0.0;
  while (keep < order.size() && mass < o.top_p * sum) mass += p[static_cast<size_t>(order[keep++])];
  const double u = rng.uniform() * mass;
  double acc = 0.0;
  for (size_t r = 0; r < keep; ++r) {
    acc += p[static_cast<size_t>(order[r])];
    if (u < acc) return order[r];
  }
  return order[keep - 1];  // u rounded up to the total
}

std::vector<int> generate(Decoder& decoder, std::span<const int> prompt, const SampleOptions& o,
                          Rng& rng) {
  validate(o);
  CDQ_CHECK(!prompt.empty(), "generate: the prompt needs at least one token (e.g. BOS)");
  CDQ_CHECK(static_cast<int64_t>(prompt.size()) < decoder.max_position(),
            "generate: the prompt has {} tokens, which leaves no room in the model's context of {}",
            prompt.size(), decoder.max_position());
  decoder.reset();
  std::span<const float> logits;
  for (int t : prompt) logits = decoder.step(t);
  std::vector<int> out;
  while (true) {
    const int next = sample_token(logits, o, rng);
    if (std::find(o.stop_ids.begin(), o.stop_ids.end(), next) != o.stop_ids.end()) break;
    out.push_back(next);
    if (static_cast<int>(out.size()) >= o.max_tokens) break;
    if (decoder.position() >= decoder.max_position()) break;
    logits = decoder.step(next);
  }
  return out;
}

}  // namespace cdq
