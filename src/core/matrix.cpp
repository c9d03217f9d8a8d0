#include <cdquant/matrix.hpp>

#include <cmath>

namespace cdq {

bool all_finite(std::span<const float> values) {
  for (float v : values)
    if (!std::isfinite(v)) return false;
  return true;
}

Matrix transpose(const Matrix& m) {
  Matrix t(m.cols, m.rows);
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = 0; c < m.cols; ++c) t(c, r) = m(r, c);
  return t;
}

}  // namespace cdq
