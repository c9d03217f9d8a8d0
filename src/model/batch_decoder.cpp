// Batched decoding with a KV cache: the linears and elementwise parts through the forward's
// building blocks (linear_forward, rmsnorm_rows, feed_forward, head_forward) on the rows of
// the sequences that take part; attention per sequence over its own cache.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cdquant/error.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/self_calibration.hpp>
#include <cmath>
#include <cstdint>

#include "model/forward_blocks.hpp"

namespace cdq {

namespace {

// Below this many multiply-adds the attention runs on one thread: the barrier at the end of
// a parallel region costs more than a small loop (as in the batched forward).
constexpr int64_t kParallelMin = 1 << 18;
constexpr int kMaxHeadDim = 512;  // the scaled query head lives on the stack
constexpr int kBlock = 16;        // positions scored together (see attend)

// e^x for x <= 0 (softmax scores minus their maximum), written so that a simd loop over it
// vectorises: std::exp is a scalar libm call, and one per attended position per head made it
// the larger half of decoding. x = k ln2 + r with k = round(x / ln2) and |r| <= ln2 / 2 (ln2
// split in two so that k ln2 is exact in float), e^r by its Taylor series to r^6 (truncation
// below 0.35^7 / 7! ~ 1.3e-7 relative), times 2^k built from its exponent bits: within ~2 ulps
// of e^x (2.2e-7 relative, checked over [-87, 0]), far inside the decoder's tolerance. Below
// x ~ -87.3 (k < -126, under float's normal range) the result is 0: negligible beside the
// maximum's e^0 = 1 in the sum. Only integer selects: GCC does not if-convert a float compare
// under the default -ftrapping-math, and a branch stops the vectoriser. x must be finite and
// above -2^31 ln2 (as the scores of a finite model are).
inline float exp_nonpositive(float x) {
  const int32_t k_exact = static_cast<int32_t>(x * 1.44269504f - 0.5f);  // ceil(x/ln2 - 1/2)
  const int32_t k = k_exact < -126 ? -126 : k_exact;
  const float kf = static_cast<float>(k);
  const float r = (x - kf * 0.693359375f) - kf * -2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float v = p * std::bit_cast<float>((k + 127) << 23);
  return std::bit_cast<float>(std::bit_cast<int32_t>(v) & (k_exact < -126 ? 0 : -1));
}

}  // namespace

BatchDecoder::BatchDecoder(const Model& model, int batch, int64_t max_positions)
    : model_(model), batch_(batch), max_pos_(max_positions) {
  const ModelConfig& c = model.config;
  CDQ_CHECK(batch >= 1, "batch decoder: batch must be >= 1, got {}", batch);
  CDQ_CHECK(max_positions >= 0 && max_positions <= c.max_seq_len,
            "batch decoder: max_positions must be in [0, {}] (0 = the model's context), got {}",
            c.max_seq_len, max_positions);
  CDQ_CHECK(c.head_dim <= kMaxHeadDim, "batch decoder: head_dim {} is above the supported {}",
            c.head_dim, kMaxHeadDim);
  if (max_pos_ == 0) max_pos_ = c.max_seq_len;
  stride_ = (max_pos_ + kBlock - 1) / kBlock * kBlock;
  pos_.assign(static_cast<size_t>(batch), 0);
  // RoPE angles pos * theta^(-2i / head_dim) once for every position: rows of one step sit at
  // different positions, so apply_rope (one first_pos per call) does not fit, and this saves
  // the trigonometry of every token in every layer. Same formula as apply_rope: the angle in
  // double, its cosine and sine rounded to float.
  const int half = c.head_dim / 2;
  rope_cos_.resize(static_cast<size_t>(max_pos_ * half));
  rope_sin_.resize(rope_cos_.size());
  for (int i = 0; i < half; ++i) {
    const double freq = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / c.head_dim);
    for (int64_t p = 0; p < max_pos_; ++p) {
      const double a = static_cast<double>(p) * freq;
      rope_cos_[static_cast<size_t>(p * half + i)] = static_cast<float>(std::cos(a));
      rope_sin_[static_cast<size_t>(p * half + i)] = static_cast<float>(std::sin(a));
    }
  }
  const size_t cache =
      static_cast<size_t>(batch) * static_cast<size_t>(c.kv_dim()) * static_cast<size_t>(stride_);
  keys_.assign(static_cast<size_t>(c.n_layers), std::vector<float>(cache, 0.0f));
  values_.assign(static_cast<size_t>(c.n_layers), std::vector<float>(cache, 0.0f));
  logits_ = Matrix(batch, model.classifier().rows);
}

int64_t BatchDecoder::position(int seq) const {
  CDQ_ASSERT(seq >= 0 && seq < batch_);
  return pos_[static_cast<size_t>(seq)];
}

void BatchDecoder::reset(int seq) {
  CDQ_ASSERT(seq >= 0 && seq < batch_);
  pos_[static_cast<size_t>(seq)] = 0;  // rows past the position are never read: no clearing
}

void BatchDecoder::reset() {
  std::fill(pos_.begin(), pos_.end(), 0);
}

std::span<const float> BatchDecoder::logits(int seq) const {
  CDQ_ASSERT(seq >= 0 && seq < batch_);
  return {logits_.row(seq), static_cast<size_t>(logits_.cols)};
}

// out [n, q_dim]: row r is every query head of q [n, q_dim] (sequence active_[r], whose key
// and value for this step are already cached) over cached positions 0..pos of its kv head.
// As in the batched forward's attention, keys and values are stored with positions
// contiguous, so that the loops over positions vectorise. Each row's tasks (one per kv head)
// are independent; they are shared among threads unless the caller is itself in a parallel
// region.
void BatchDecoder::attend(int64_t layer, const Matrix& q, Matrix& out) const {
  const ModelConfig& c = model_.config;
  const int hd = c.head_dim;
  const int rep = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* kc = keys_[static_cast<size_t>(layer)].data();
  const float* vc = values_[static_cast<size_t>(layer)].data();
  const int64_t tasks = q.rows * c.n_kv_heads;  // (row, kv head)
  int64_t work = 0;
  for (int s : active_) work += (pos_[static_cast<size_t>(s)] + 1) * c.q_dim();
  // Not inside an enclosing parallel region (self_calibration's workers, one decoder each),
  // even a one-thread one: its thread already has its share of the cores.
  const bool parallel = tasks > 1 && work >= kParallelMin && omp_get_level() == 0;
#pragma omp parallel if (parallel)
  {
    std::vector<float> scores(static_cast<size_t>(stride_));  // scores, then weights
    float* p = scores.data();
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t r = task / c.n_kv_heads;
      const int64_t kvh = task % c.n_kv_heads;
      const int seq = active_[static_cast<size_t>(r)];
      const int64_t n = pos_[static_cast<size_t>(seq)] + 1;
      const size_t base = (static_cast<size_t>(seq) * static_cast<size_t>(c.n_kv_heads) +
                           static_cast<size_t>(kvh)) *
                          static_cast<size_t>(hd) * static_cast<size_t>(stride_);
      for (int64_t h = kvh * rep; h < (kvh + 1) * rep; ++h) {
        const float* qr = q.row(r) + h * hd;
        float qs[kMaxHeadDim];
        for (int i = 0; i < hd; ++i) qs[i] = qr[i] * scale;
        // Scores of kBlock positions at a time, summed over head_dim in registers: K is read
        // once and p written once (accumulating into p one component at a time costs a pass
        // over p for each). The last block may read cached rows past n (zeros or stale values
        // of a restarted sequence: finite, and the scores they give are never used), which
        // the padding of stride_ keeps inside the cache.
        const float* kb = kc + base;
        for (int64_t s0 = 0; s0 < n; s0 += kBlock) {
          float acc[kBlock] = {};
          for (int i = 0; i < hd; ++i) {
            const float* kr = kb + i * stride_ + s0;
            for (int j = 0; j < kBlock; ++j) acc[j] += qs[i] * kr[j];
          }
          std::copy_n(acc, kBlock, p + s0);
        }
        // (A ternary, not std::max: GCC vectorises this reduction only in this form.)
        float mx = p[0];
#pragma omp simd reduction(max : mx)
        for (int64_t s = 0; s < n; ++s) mx = mx > p[s] ? mx : p[s];
#pragma omp simd
        for (int64_t s = 0; s < n; ++s) p[s] = exp_nonpositive(p[s] - mx);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t s = 0; s < n; ++s) sum += p[s];
        const float inv = 1.0f / sum;
        float* o = out.row(r) + h * hd;
        for (int i = 0; i < hd; ++i) {
          const float* vr = vc + base + static_cast<size_t>(i * stride_);
          float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
          for (int64_t s = 0; s < n; ++s) acc += p[s] * vr[s];
          o[i] = acc * inv;
        }
      }
    }
  }
}

const Matrix& BatchDecoder::step(std::span<const int> tokens) {
  const ModelConfig& c = model_.config;
  const int64_t vocab = model_.tok_embeddings.rows;
  CDQ_CHECK(static_cast<int64_t>(tokens.size()) == batch_,
            "batch decode: {} tokens for a batch of {} sequences (use kSkip to leave one out)",
            tokens.size(), batch_);
  // Everything is checked before anything changes, so a refused step leaves every sequence
  // as it was.
  active_.clear();
  active_tokens_.clear();
  for (int s = 0; s < batch_; ++s) {
    const int t = tokens[static_cast<size_t>(s)];
    if (t == kSkip) continue;
    const int64_t pos = pos_[static_cast<size_t>(s)];
    CDQ_CHECK(t >= 0 && t < vocab,
              "batch decode: token id {} of sequence {} at position {} is outside the "
              "vocabulary [0, {})",
              t, s, pos, vocab);
    CDQ_CHECK(pos < max_pos_, "batch decode: sequence {} at position {} is past the limit of {}", s,
              pos, max_pos_);
    active_.push_back(s);
    active_tokens_.push_back(t);
  }
  std::fill(logits_.data.begin(), logits_.data.end(), 0.0f);
  if (active_.empty()) return logits_;

  const int64_t n = static_cast<int64_t>(active_.size());
  const int hd = c.head_dim;
  const int half = hd / 2;
  const size_t mp = static_cast<size_t>(stride_);
  Matrix x = embed_tokens(model_.tok_embeddings, active_tokens_);  // [n, dim]
  Matrix a, q, k, v, att(n, c.q_dim()), y;
  // Rotates the interleaved pairs of every head of row r of m by row r's own position.
  const auto rope = [&](Matrix& m) {
    for (int64_t r = 0; r < m.rows; ++r) {
      const int64_t pos = pos_[static_cast<size_t>(active_[static_cast<size_t>(r)])];
      const float* cs = rope_cos_.data() + pos * half;
      const float* sn = rope_sin_.data() + pos * half;
      float* row = m.row(r);
      for (int64_t h = 0; h < m.cols / hd; ++h)
        for (int i = 0; i < half; ++i) {
          float* p = row + h * hd + 2 * i;
          const float x0 = p[0], x1 = p[1];
          p[0] = x0 * cs[i] - x1 * sn[i];
          p[1] = x0 * sn[i] + x1 * cs[i];
        }
    }
  };
  for (size_t l = 0; l < model_.blocks.size(); ++l) {
    const BlockWeights& b = model_.blocks[l];
    rmsnorm_rows(x, b.attn_norm, c.norm_eps, a);             // [n, dim]
    linear_forward(a, b.wq, b.bq, q, act_of(b, Linear::Q));  // [n, q_dim]
    linear_forward(a, b.wk, b.bk, k, act_of(b, Linear::K));  // [n, kv_dim]
    linear_forward(a, b.wv, b.bv, v, act_of(b, Linear::V));  // [n, kv_dim]
    rope(q);
    rope(k);
    // Cache this step's key and value of each row at its sequence's position (transposed:
    // [seq, kv head, component, position]).
    for (int64_t r = 0; r < n; ++r) {
      const size_t seq = static_cast<size_t>(active_[static_cast<size_t>(r)]);
      const size_t pos = static_cast<size_t>(pos_[seq]);
      float* kc = keys_[l].data() + seq * static_cast<size_t>(c.kv_dim()) * mp;
      float* vc = values_[l].data() + seq * static_cast<size_t>(c.kv_dim()) * mp;
      for (int64_t j = 0; j < c.kv_dim(); ++j) {
        kc[static_cast<size_t>(j) * mp + pos] = k(r, j);
        vc[static_cast<size_t>(j) * mp + pos] = v(r, j);
      }
    }
    attend(static_cast<int64_t>(l), q, att);                 // [n, q_dim]
    linear_forward(att, b.wo, {}, y, act_of(b, Linear::O));  // [n, dim]
    for (int64_t i = 0; i < x.size(); ++i)
      x.data[static_cast<size_t>(i)] += y.data[static_cast<size_t>(i)];
    feed_forward(b, c, x);
  }
  const Matrix out = head_forward(model_.final_norm, model_.classifier(), c, x,
                                  model_.classifier_act);  // [n, vocab]
  for (int64_t r = 0; r < n; ++r) {
    const int seq = active_[static_cast<size_t>(r)];
    std::copy_n(out.row(r), out.cols, logits_.row(seq));
    ++pos_[static_cast<size_t>(seq)];
  }
  return logits_;
}

}  // namespace cdq
