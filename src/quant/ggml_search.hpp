// ggml's per-sub-block scale searches, reproduced operation for operation (the same float
// expressions in the same order, no fused multiply-add) so that the bytes match ggml's.
//  - make_qx_quants: symmetric grid {-nmax .. nmax-1} * scale, best of 19 candidate scales by
//    the weighted least-squares fit (Q6_K, and Q4_0/Q5_0/Q3_K/Q6_K with importance weights).
//  - make_q3_quants: the same grid refined by coordinate moves (Q3_K reference).
//  - make_qkx_quants: asymmetric grid scale*{0..nmax} - min, best of nstep+1 candidate ranges
//    by the weighted error after a least-squares refit of (scale, min) (Q2_K/Q4_K/Q5_K, and
//    Q4_1/Q5_1 with importance weights). ggml's make_qkx2_quants and make_qkx3_quants differ
//    only in parameters and in a NaN corner, so one routine serves both.
//  - make_qp_quants: non-negative scales of the sub-blocks on {0..nmax} * d (K-quants with
//    importance weights).
#pragma once

#include <cstdint>

namespace cdq::ggml {

// Returns the scale; L[i] = code + nmax in 0..2*nmax-1. qw null: weights from rmse_type
// (1: x^2, 2: 1, 3: |x|, else sqrt|x|).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);
// Returns the scale; *the_min receives the (non-negative) min to subtract. Laux: scratch [n].
float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                      float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                      bool use_mad);
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

}  // namespace cdq::ggml
