#include <cdquant/rng.hpp>

#include <cmath>
#include <numbers>

namespace cdq {

uint64_t Rng::next_u64() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
  has_spare_ = true;
  return r * std::cos(2.0 * std::numbers::pi * u2);
}

double Rng::student_t(double dof) {
  // t = Z / sqrt(V / dof) with V ~ chi^2(dof), V as a sum of squared normals (integer dof).
  const int k = dof < 1.0 ? 1 : static_cast<int>(dof);
  double v = 0.0;
  for (int i = 0; i < k; ++i) {
    const double z = normal();
    v += z * z;
  }
  return normal() / std::sqrt(v / k);
}

uint64_t Rng::below(uint64_t n) { return n == 0 ? 0 : next_u64() % n; }

}  // namespace cdq
