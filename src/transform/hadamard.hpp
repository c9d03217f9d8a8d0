// Fast Walsh-Hadamard transform (unnormalised, Sylvester order) and the block-diagonal
// rotation R = blockdiag(Had_h / sqrt(h)) built from it (HIGGS / QuIP-style incoherence).
// Internal header: include as "transform/hadamard.hpp".
#pragma once

#include <cdquant/matrix.hpp>
#include <cstdint>
#include <span>

namespace cdq {

bool is_power_of_two(int64_t n);

// Smallest power of two >= n (n >= 1).
int64_t next_power_of_two(int64_t n);

// x <- Had_h x in place, Had_h the unnormalised Sylvester matrix (H_1 = [1],
// H_2n = [[H_n, H_n], [H_n, -H_n]], entry (i, j) = (-1)^popcount(i & j)). h = x.size() must be
// a power of two. O(h log h); Had_h is symmetric and Had_h Had_h = h I, so applying it twice
// gives h * x.
void fwht(std::span<float> x);

// Every length-h block of every row of m: row r, columns [k h, (k + 1) h) <- Had_h (those).
// m.cols must be a multiple of h. OpenMP across rows.
void fwht_blocks(const MatrixView& m, int64_t h);
inline void fwht_blocks(Matrix& m, int64_t h) {
  fwht_blocks(view(m), h);
}

// The dense Sylvester matrix [h, h] with entries +-1 (a reference for tests).
Matrix hadamard_matrix(int64_t h);

// The orthogonal, symmetric R = blockdiag(Had_h / sqrt(h)) on m.cols columns (a multiple of h):
//  - rotate_rows:      M <- M R^T (each row m_r <- R m_r). R R = I, so it is its own inverse.
//  - rotate_symmetric: A <- R A R^T for a square symmetric A (the Hessian of W R^T), restored to
//    exact symmetry.
void rotate_rows(const MatrixView& m, int64_t h);
inline void rotate_rows(Matrix& m, int64_t h) {
  rotate_rows(view(m), h);
}
void rotate_symmetric(Matrix& a, int64_t h);

}  // namespace cdq
