// Deterministic, platform-independent random numbers: the same seed gives the same stream on
// every compiler (std:: distributions do not promise that).
#pragma once

#include <cstdint>

namespace cdq {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed ^ 0x9E3779B97F4A7C15ULL) {}
  uint64_t next_u64();           // splitmix64
  double uniform();              // [0, 1)
  double normal();               // standard normal (Box-Muller)
  double student_t(double dof);  // heavy-tailed, for realistic outliers
  uint64_t below(uint64_t n);    // uniform integer in [0, n)

 private:
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace cdq
