// Hessian preparation shared by GPTQ and the CD family, with the GPTQ reference conventions:
// dead inputs (H[i,i] == 0: H[i,i] = 1 and W[:, i] = 0), damping percdamp * mean(diag H) on
// the diagonal, and the upper Cholesky factor of the inverse of the damped H.
#pragma once

#include <cdquant/matrix.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace cdq {

struct PreparedHessian {
  Matrix h;                   // [n, n] dead diagonals set to 1, then damped
  std::vector<uint8_t> dead;  // [n] 1 where the input H[i,i] was 0
  std::vector<float> diag;    // [n] diagonal after the dead fix, before damping (act-order key)
  double mean_diag = 0.0;     // mean(diag) after the dead fix: the unit of damping
  double percdamp = 0.0;      // damping fraction in use (escalations raise it)
  double damp = 0.0;          // absolute amount on the diagonal = percdamp * mean_diag
  std::vector<std::string> notes;  // damping escalations

  int64_t n() const { return h.rows; }
  int64_t dead_count() const;
};

// Dead fix and damping of a square H (not modified). percdamp >= 0.
PreparedHessian prepare_hessian(const Matrix& h, double percdamp);

// W[:, i] = 0 for every dead input i. W: [d_out, n] in the same column order as ph.
void zero_dead_columns(Matrix& w, const PreparedHessian& ph);

// H[perm][:, perm] (symmetric permutation). perm[j] = original index of position j.
Matrix permute_symmetric(const Matrix& h, const std::vector<int64_t>& perm);

// Upper triangular U with U^T U = inverse(ph.h), i.e. torch
// cholesky(cholesky_inverse(cholesky(H)), upper=True), computed as J L^-1 J where
// J H J = L L^T (J reverses the order): one Cholesky and one triangular inverse instead of
// two Cholesky factorizations and an inverse. Works on ph.h as it is now (permute it first for
// act-order). When H is not positive definite (in float32), the damping is raised x10 (from 0:
// to 0.01) up to 4 times, ph.h/percdamp/damp are updated and a note is added; throws Error
// when every try fails.
Matrix inverse_cholesky_upper(PreparedHessian& ph);

}  // namespace cdq
