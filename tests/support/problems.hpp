// Small seeded layer problems for tests: random W and correlated or degenerate H.
#pragma once

#include <cdquant/matrix.hpp>
#include <cstdint>

namespace cdq::test {

// Gaussian weights [d_out, d_in] with the given standard deviation.
Matrix random_weights(int64_t d_out, int64_t d_in, uint64_t seed, double std = 1.0);

// Weights at a trained layer's scale (0.02): Gaussian (dof <= 0) or Student-t with `dof`
// degrees of freedom (heavy tails, as real checkpoints have).
Matrix layer_weights(int64_t rows, int64_t cols, uint64_t seed, double dof);

// |a - b|_F^2 and |a|_F^2, summed in double.
double squared_distance(const Matrix& a, const Matrix& b);
double squared_norm(const Matrix& a);

// H = (2/s) X^T X [n, n] for s samples (0: 4n) of inputs with AR(1) correlation rho between
// neighbouring channels and log-normal channel scales: strongly correlated, positive definite.
Matrix correlated_hessian(int64_t n, uint64_t seed, double rho = 0.9, int64_t samples = 0);

// H = (2/rank) X^T X with X [rank, n] Gaussian: positive semi-definite of rank `rank` < n.
Matrix low_rank_hessian(int64_t n, int64_t rank, uint64_t seed);

// Sets row and column i of H to zero (a dead input).
void kill_input(Matrix& h, int64_t i);

}  // namespace cdq::test
