// Dense row-major float32 matrices: the currency between layers of the library.
#pragma once

#include <cdquant/error.hpp>
#include <cstdint>
#include <span>
#include <vector>

namespace cdq {

// Owning row-major matrix. W uses [d_out, d_in] (row = output channel), H uses [d_in, d_in].
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;  // [rows, cols]

  Matrix() = default;
  Matrix(int64_t r, int64_t c, float fill = 0.0f)
      : rows(r), cols(c), data(static_cast<size_t>(r * c), fill) {}

  float* row(int64_t r) { return data.data() + r * cols; }
  const float* row(int64_t r) const { return data.data() + r * cols; }
  float& operator()(int64_t r, int64_t c) { return data[static_cast<size_t>(r * cols + c)]; }
  float operator()(int64_t r, int64_t c) const { return data[static_cast<size_t>(r * cols + c)]; }
  int64_t size() const { return rows * cols; }
  bool empty() const { return data.empty(); }
  std::span<float> span() { return data; }
  std::span<const float> span() const { return data; }
};

// Non-owning view of a row-major block with a leading dimension (stride between rows).
struct MatrixView {
  float* ptr = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;

  float& operator()(int64_t r, int64_t c) const { return ptr[r * ld + c]; }
  float* row(int64_t r) const { return ptr + r * ld; }
};

inline MatrixView view(Matrix& m) {
  return {m.data.data(), m.rows, m.cols, m.cols};
}

// True when every entry is finite.
bool all_finite(std::span<const float> values);

// Matrix transpose (copy).
Matrix transpose(const Matrix& m);

}  // namespace cdq
