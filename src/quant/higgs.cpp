// HIGGS quantizer: per block, a norm, one FWHT and a nearest-point search; dequantization is
// the inverse FWHT of the grid values. Scratch buffers live per thread, outside the row loop.
#include "quant/higgs.hpp"

#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/half.hpp>
#include <cmath>

#include "transform/hadamard.hpp"

namespace cdq {

namespace {

void check_block_size(int64_t h, int dim) {
  CDQ_CHECK(is_power_of_two(h) && h >= 2 && h <= (int64_t{1} << 14),
            "HIGGS block size must be a power of two in [2, 16384], got {}", h);
  CDQ_CHECK(h % dim == 0, "HIGGS block size {} is not a multiple of the grid dimension {}", h, dim);
}

float to_fp16_value(float v) {
  const float r = fp16_to_float(float_to_fp16(v));
  CDQ_CHECK(std::isfinite(r), "HIGGS block scale {} overflows fp16", v);
  return r;
}

double sum_squares(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

// One block of one row: buf [h] holds the (zero-padded) weights on entry, u on exit.
float quantize_block(float* buf, int64_t h, const GridSearch& search, int dim, uint8_t* codes) {
  const double norm = std::sqrt(sum_squares(buf, h));
  const float s = to_fp16_value(static_cast<float>(norm / std::sqrt(static_cast<double>(h))));
  fwht(std::span<float>(buf, static_cast<size_t>(h)));
  const float inv = norm > 0.0 ? static_cast<float>(1.0 / norm) : 0.0f;  // zero block: u = 0
  for (int64_t i = 0; i < h; ++i) buf[i] *= inv;
  search.nearest(buf, h / dim, codes);
  return s;
}

// Zero-padded copy of W with d_pad columns.
Matrix pad_columns(const Matrix& w, int64_t d_pad) {
  Matrix p(w.rows, d_pad);  // [d_out, d_pad]
  for (int64_t r = 0; r < w.rows; ++r) std::copy_n(w.row(r), w.cols, p.row(r));
  return p;
}

int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

}  // namespace

int64_t higgs_default_block(int64_t d_in) {
  CDQ_CHECK(d_in >= 1, "HIGGS needs d_in >= 1, got {}", d_in);
  return std::clamp<int64_t>(next_power_of_two(d_in), 64, 512);
}

double higgs_bits_per_weight(int bits, int64_t h) {
  return bits + 16.0 / static_cast<double>(h);
}

HiggsCodes higgs_quantize(const Matrix& w, const HiggsSpec& spec) {
  CDQ_CHECK(w.rows > 0 && w.cols > 0, "HIGGS needs a non-empty matrix, got {}x{}", w.rows, w.cols);
  CDQ_CHECK(all_finite(w.span()), "HIGGS: weights contain NaN or Inf");
  const NormalGrid& grid = normal_grid(spec.bits, spec.dim);
  HiggsCodes q;
  q.d_out = w.rows;
  q.d_in = w.cols;
  q.h = spec.h > 0 ? spec.h : higgs_default_block(w.cols);
  check_block_size(q.h, spec.dim);
  q.n_blocks = (w.cols + q.h - 1) / q.h;
  q.bits = spec.bits;
  q.dim = spec.dim;
  q.codes.resize(static_cast<size_t>(q.d_out * q.codes_per_row()));
  q.scales.resize(static_cast<size_t>(q.d_out * q.n_blocks));
  const GridSearch search(grid);  // built once, shared read-only by the threads
#pragma omp parallel
  {
    std::vector<float> buf(static_cast<size_t>(q.h));  // [h] one block
#pragma omp for schedule(static)
    for (int64_t r = 0; r < q.d_out; ++r)
      for (int64_t b = 0; b < q.n_blocks; ++b) {
        const int64_t c0 = b * q.h, n = std::min(q.h, q.d_in - c0);
        std::fill(std::copy_n(w.row(r) + c0, n, buf.begin()), buf.end(), 0.0f);
        uint8_t* codes = q.codes.data() + r * q.codes_per_row() + c0 / q.dim;
        q.scales[static_cast<size_t>(r * q.n_blocks + b)] =
            quantize_block(buf.data(), q.h, search, q.dim, codes);
      }
  }
  return q;
}

Matrix higgs_dequantize(const HiggsCodes& q) {
  const NormalGrid& grid = normal_grid(q.bits, q.dim);
  Matrix out(q.d_out, q.d_in);  // [d_out, d_in]
  const double root_h = std::sqrt(static_cast<double>(q.h));
#pragma omp parallel
  {
    std::vector<float> buf(static_cast<size_t>(q.h));  // [h]
#pragma omp for schedule(static)
    for (int64_t r = 0; r < q.d_out; ++r)
      for (int64_t b = 0; b < q.n_blocks; ++b) {
        const uint8_t* codes = q.codes.data() + r * q.codes_per_row() + b * q.h / q.dim;
        for (int64_t i = 0; i < q.h / q.dim; ++i)
          std::copy_n(grid.point(codes[i]), q.dim, buf.begin() + i * q.dim);
        fwht(buf);
        const auto f =
            static_cast<float>(q.scales[static_cast<size_t>(r * q.n_blocks + b)] / root_h);
        const int64_t c0 = b * q.h, n = std::min(q.h, q.d_in - c0);
        for (int64_t i = 0; i < n; ++i) out(r, c0 + i) = f * buf[static_cast<size_t>(i)];
      }
  }
  return out;
}

double higgs_stored_bits_per_weight(const HiggsCodes& q) {
  const double bits = static_cast<double>(q.d_out) * (q.d_pad() * q.bits + q.n_blocks * 16.0);
  return bits / static_cast<double>(q.d_out * q.d_in);
}

Matrix higgs_rotate_weights(const Matrix& w, int64_t h) {
  check_block_size(h, 1);
  Matrix p = pad_columns(w, round_up(w.cols, h));
  rotate_rows(p, h);
  return p;
}

Matrix higgs_rotate_hessian(const Matrix& hess, int64_t h) {
  check_block_size(h, 1);
  CDQ_CHECK(hess.rows == hess.cols, "H must be square, got {}x{}", hess.rows, hess.cols);
  const int64_t d_pad = round_up(hess.cols, h);
  Matrix p(d_pad, d_pad);  // [d_pad, d_pad]
  for (int64_t r = 0; r < hess.rows; ++r) std::copy_n(hess.row(r), hess.cols, p.row(r));
  rotate_symmetric(p, h);
  return p;
}

Matrix higgs_unrotate_weights(const Matrix& q_rotated, int64_t d_in, int64_t h) {
  check_block_size(h, 1);
  CDQ_CHECK(q_rotated.cols % h == 0 && q_rotated.cols >= d_in && q_rotated.cols - d_in < h,
            "rotated weights have {} columns, not d_in = {} padded to blocks of {}", q_rotated.cols,
            d_in, h);
  Matrix full = q_rotated;
  rotate_rows(full, h);         // R is its own inverse: Q' R = Q' R^T
  Matrix out(full.rows, d_in);  // [d_out, d_in]
  for (int64_t r = 0; r < full.rows; ++r) std::copy_n(full.row(r), d_in, out.row(r));
  return out;
}

Grid higgs_codebook_grid(const Matrix& w_rotated, int bits, int64_t h) {
  check_block_size(h, 1);
  CDQ_CHECK(w_rotated.cols % h == 0, "rotated weights ({} columns) are not padded to blocks of {}",
            w_rotated.cols, h);
  const NormalGrid& table = normal_grid(bits, 1);
  Grid g = make_grid_layout(w_rotated.rows, w_rotated.cols, static_cast<int>(h), 0);
  set_codebook(g, table.points);
  const double root_h = std::sqrt(static_cast<double>(h));
  for (int64_t r = 0; r < g.d_out; ++r)
    for (int b = 0; b < g.n_groups; ++b)
      g.scale[g.at(r, b)] = to_fp16_value(
          static_cast<float>(std::sqrt(sum_squares(w_rotated.row(r) + b * h, h)) / root_h));
  return g;
}

}  // namespace cdq
