// Fast Walsh-Hadamard transform: log2(h) butterfly stages over contiguous halves, written as
// plain loops over restrict pointers so GCC vectorises the stages with stride >= 8; the three
// short-stride stages are fused into one radix-8 pass per 8 values.
#include "transform/hadamard.hpp"

#include <cdquant/error.hpp>
#include <cmath>

namespace cdq {

namespace {

// Stages of stride 1, 2 and 4 on one group of 8 values (Had_8 x).
inline void radix8(float* __restrict x) {
  const float a0 = x[0] + x[1], a1 = x[0] - x[1], a2 = x[2] + x[3], a3 = x[2] - x[3];
  const float a4 = x[4] + x[5], a5 = x[4] - x[5], a6 = x[6] + x[7], a7 = x[6] - x[7];
  const float b0 = a0 + a2, b1 = a1 + a3, b2 = a0 - a2, b3 = a1 - a3;
  const float b4 = a4 + a6, b5 = a5 + a7, b6 = a4 - a6, b7 = a5 - a7;
  x[0] = b0 + b4;
  x[1] = b1 + b5;
  x[2] = b2 + b6;
  x[3] = b3 + b7;
  x[4] = b0 - b4;
  x[5] = b1 - b5;
  x[6] = b2 - b6;
  x[7] = b3 - b7;
}

// One stage with stride len: (a, b) <- (a + b, a - b) for a = x[i + j], b = x[i + j + len].
inline void butterfly_stage(float* __restrict x, int64_t h, int64_t len) {
  for (int64_t i = 0; i < h; i += 2 * len) {
    float* __restrict a = x + i;
    float* __restrict b = x + i + len;
    for (int64_t j = 0; j < len; ++j) {
      const float u = a[j], v = b[j];
      a[j] = u + v;
      b[j] = u - v;
    }
  }
}

void fwht_raw(float* x, int64_t h) {
  int64_t len = 1;
  if (h >= 8) {
    for (int64_t i = 0; i < h; i += 8) radix8(x + i);
    len = 8;
  }
  for (; len < h; len *= 2) butterfly_stage(x, h, len);
}

void check_block(int64_t cols, int64_t h) {
  CDQ_CHECK(is_power_of_two(h), "Hadamard block size must be a power of two, got {}", h);
  CDQ_CHECK(cols % h == 0, "Hadamard blocks of {} do not tile {} columns", h, cols);
}

}  // namespace

bool is_power_of_two(int64_t n) {
  return n > 0 && (n & (n - 1)) == 0;
}

int64_t next_power_of_two(int64_t n) {
  CDQ_ASSERT(n >= 1);
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

void fwht(std::span<float> x) {
  const auto h = static_cast<int64_t>(x.size());
  CDQ_CHECK(is_power_of_two(h), "Hadamard length must be a power of two, got {}", h);
  fwht_raw(x.data(), h);
}

void fwht_blocks(const MatrixView& m, int64_t h) {
  check_block(m.cols, h);
#pragma omp parallel for schedule(static) if (m.rows * m.cols >= (1 << 15))
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = 0; c < m.cols; c += h) fwht_raw(m.row(r) + c, h);
}

Matrix hadamard_matrix(int64_t h) {
  CDQ_CHECK(is_power_of_two(h), "Hadamard size must be a power of two, got {}", h);
  Matrix m(h, h);  // [h, h]
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < h; ++j) m(i, j) = (__builtin_popcountll(i & j) & 1) ? -1.0f : 1.0f;
  return m;
}

void rotate_rows(const MatrixView& m, int64_t h) {
  check_block(m.cols, h);
  const float norm = static_cast<float>(1.0 / std::sqrt(static_cast<double>(h)));
#pragma omp parallel for schedule(static) if (m.rows * m.cols >= (1 << 15))
  for (int64_t r = 0; r < m.rows; ++r) {
    float* row = m.row(r);
    for (int64_t c = 0; c < m.cols; c += h) fwht_raw(row + c, h);
    for (int64_t c = 0; c < m.cols; ++c) row[c] *= norm;
  }
}

void rotate_symmetric(Matrix& a, int64_t h) {
  CDQ_CHECK(a.rows == a.cols, "rotate_symmetric needs a square matrix, got {}x{}", a.rows, a.cols);
  // A R^T transforms the rows; (A R^T)^T = R A, whose rows transformed give R A R^T (A = A^T).
  rotate_rows(a, h);
  a = transpose(a);
  rotate_rows(a, h);
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = i + 1; j < a.cols; ++j) {
      const float s = 0.5f * (a(i, j) + a(j, i));
      a(i, j) = s;
      a(j, i) = s;
    }
}

}  // namespace cdq
