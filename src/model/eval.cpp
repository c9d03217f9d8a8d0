// Perplexity, KL divergence and top-1 agreement over non-overlapping windows.
#include <algorithm>
#include <cdquant/eval.hpp>
#include <cdquant/forward.hpp>
#include <cmath>

#include "model/forward_blocks.hpp"
#include "model/log_softmax.hpp"

namespace cdq {

std::vector<std::vector<int>> make_windows(std::span<const int> stream, int ctx, bool prepend_bos,
                                           int bos_id, int max_windows) {
  CDQ_CHECK(ctx >= 2, "eval: context {} is too short (need at least 2 tokens)", ctx);
  const size_t take = static_cast<size_t>(prepend_bos ? ctx - 1 : ctx);  // stream tokens each
  std::vector<std::vector<int>> windows;
  for (size_t at = 0; at + take <= stream.size(); at += take) {
    if (max_windows > 0 && static_cast<int>(windows.size()) >= max_windows) break;
    std::vector<int> w;
    w.reserve(static_cast<size_t>(ctx));
    if (prepend_bos) w.push_back(bos_id);
    w.insert(w.end(), stream.begin() + static_cast<std::ptrdiff_t>(at),
             stream.begin() + static_cast<std::ptrdiff_t>(at + take));
    windows.push_back(std::move(w));
  }
  return windows;
}

std::vector<double> log_softmax_row(const float* logits, int64_t vocab) {
  double mx = logits[0];
  for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, static_cast<double>(logits[j]));
  double z = 0.0;
  for (int64_t j = 0; j < vocab; ++j) z += std::exp(logits[j] - mx);
  const double lz = mx + std::log(z);
  std::vector<double> out(static_cast<size_t>(vocab));
  for (int64_t j = 0; j < vocab; ++j) out[static_cast<size_t>(j)] = logits[j] - lz;
  return out;
}

double standard_error(std::span<const double> x) {
  const size_t n = x.size();
  if (n < 2) return 0.0;
  double mean = 0.0, sq = 0.0;
  for (double v : x) mean += v / static_cast<double>(n);
  for (double v : x) sq += (v - mean) * (v - mean);
  return std::sqrt(sq / static_cast<double>(n - 1) / static_cast<double>(n));
}

double paired_standard_error(std::span<const double> a, std::span<const double> b) {
  CDQ_ASSERT(a.size() == b.size());
  std::vector<double> d(a.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = a[i] - b[i];
  return standard_error(d);
}

namespace {

int64_t argmax(const float* v, int64_t n) {
  return std::max_element(v, v + n) - v;
}

// Sums over the scored positions of one window.
struct WindowSums {
  double nll = 0.0, nll_other = 0.0, kl = 0.0, entropy = 0.0, entropy_other = 0.0;
  int64_t agree = 0, scored = 0;
};

// Scores window w whose logits are rows row0 .. row0 + |w| - 1 of a (and of b).
WindowSums score_window(const std::vector<int>& w, const Matrix& a, int64_t row0, const Matrix* b) {
  const int64_t n = static_cast<int64_t>(w.size()) - 1;  // position t predicts w[t + 1]
  const int64_t vocab = a.cols;
  // Each position's terms first, then summed in position order: the sums do not depend on how
  // the threads shared the positions.
  std::vector<WindowSums> at(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (n * vocab >= (1 << 18))
  for (int64_t t = 0; t < n; ++t) {
    WindowSums& s = at[static_cast<size_t>(t)];
    const size_t target = static_cast<size_t>(w[static_cast<size_t>(t + 1)]);
    const std::vector<double> lp = log_softmax_row(a.row(row0 + t), vocab);
    s.nll = -lp[target];
    std::vector<double> p(static_cast<size_t>(vocab));
    for (size_t j = 0; j < p.size(); ++j) {
      p[j] = std::exp(lp[j]);
      s.entropy -= p[j] * lp[j];
    }
    if (b == nullptr) continue;
    const std::vector<double> lq = log_softmax_row(b->row(row0 + t), vocab);
    s.nll_other = -lq[target];
    for (size_t j = 0; j < p.size(); ++j) {
      s.kl += p[j] * (lp[j] - lq[j]);
      s.entropy_other -= std::exp(lq[j]) * lq[j];
    }
    s.agree = argmax(a.row(row0 + t), vocab) == argmax(b->row(row0 + t), vocab) ? 1 : 0;
  }
  WindowSums sum;
  for (const WindowSums& s : at) {
    sum.nll += s.nll;
    sum.nll_other += s.nll_other;
    sum.kl += s.kl;
    sum.entropy += s.entropy;
    sum.entropy_other += s.entropy_other;
    sum.agree += s.agree;
  }
  sum.scored = n;
  return sum;
}

}  // namespace

EvalResult evaluate(const Model& model, std::span<const int> stream, const EvalOptions& opt,
                    const Model* other) {
  const ModelConfig& c = model.config;
  EvalResult r;
  r.ctx = opt.ctx > 0 ? opt.ctx : std::min(c.max_seq_len, 2048);
  CDQ_CHECK(r.ctx <= c.max_seq_len, "eval: context {} exceeds the model's max_seq_len {}", r.ctx,
            c.max_seq_len);
  if (other != nullptr) {
    CDQ_CHECK(other->config.vocab_size == c.vocab_size,
              "eval: the models' vocabularies differ ({} vs {} tokens)", c.vocab_size,
              other->config.vocab_size);
    CDQ_CHECK(r.ctx <= other->config.max_seq_len,
              "eval: context {} exceeds the second model's max_seq_len {}", r.ctx,
              other->config.max_seq_len);
  }
  const int bos = opt.bos_id >= 0 ? opt.bos_id : c.bos_id;
  CDQ_CHECK(!opt.prepend_bos || (bos >= 0 && bos < c.vocab_size),
            "eval: BOS id {} is outside the vocabulary [0, {})", bos, c.vocab_size);
  const auto windows = make_windows(stream, r.ctx, opt.prepend_bos, bos, opt.max_windows);
  CDQ_CHECK(!windows.empty(),
            "eval: {} tokens do not fill one window of {} (use a longer text or a smaller --ctx)",
            stream.size(), r.ctx);

  WindowSums total;
  r.windows = static_cast<int>(windows.size());
  // Windows go through the model in batches of about 4096 tokens (fewer for big
  // vocabularies, so the logits stay under ~256 MB): large products use every core.
  const int64_t batch_tokens = std::clamp<int64_t>((int64_t{64} << 20) / c.vocab_size, r.ctx, 4096);
  const int batch = static_cast<int>(std::max<int64_t>(1, batch_tokens / r.ctx));
  for (int i0 = 0; i0 < r.windows; i0 += batch) {
    const int n = std::min(batch, r.windows - i0);
    std::vector<int> tokens;
    for (int i = i0; i < i0 + n; ++i)
      tokens.insert(tokens.end(), windows[static_cast<size_t>(i)].begin(),
                    windows[static_cast<size_t>(i)].end());
    const Matrix a = forward_logits_batch(model, tokens, r.ctx);
    Matrix b;
    if (other != nullptr) b = forward_logits_batch(*other, tokens, r.ctx);
    for (int i = 0; i < n; ++i) {
      const int64_t row0 = static_cast<int64_t>(i) * r.ctx;
      const WindowSums s = score_window(windows[static_cast<size_t>(i0 + i)], a, row0,
                                        other != nullptr ? &b : nullptr);
      total.nll += s.nll;
      total.nll_other += s.nll_other;
      total.kl += s.kl;
      total.entropy += s.entropy;
      total.entropy_other += s.entropy_other;
      total.agree += s.agree;
      total.scored += s.scored;
      const double scored = static_cast<double>(s.scored);
      r.window_nll.push_back(s.nll / scored);
      if (other != nullptr) {
        r.window_nll_other.push_back(s.nll_other / scored);
        r.window_kl.push_back(s.kl / scored);
      }
    }
    if (opt.progress) opt.progress(i0 + n, r.windows);
  }
  const double n = static_cast<double>(total.scored);
  r.scored = total.scored;
  r.nll = total.nll / n;
  // Finite weights can still overflow in the forward pass: a NaN result is no perplexity.
  CDQ_CHECK(std::isfinite(r.nll),
            "eval: the model's log-likelihood is {} (its activations "
            "overflow): no perplexity to report",
            r.nll);
  r.ppl = std::exp(r.nll);
  r.entropy = total.entropy / n;
  r.nll_se = standard_error(r.window_nll);
  if (other != nullptr) {
    r.nll_other_se = standard_error(r.window_nll_other);
    r.ln_ppl_ratio_se = paired_standard_error(r.window_nll_other, r.window_nll);
    r.kl_se = standard_error(r.window_kl);
    r.compared = true;
    r.nll_other = total.nll_other / n;
    CDQ_CHECK(std::isfinite(r.nll_other) && std::isfinite(total.kl),
              "eval: the second model's log-likelihood is {} and the KL {} (its activations "
              "overflow): nothing to report",
              r.nll_other, total.kl / n);
    r.ppl_other = std::exp(r.nll_other);
    r.entropy_other = total.entropy_other / n;
    r.kl = total.kl / n;
    r.top1 = static_cast<double>(total.agree) / n;
  }
  return r;
}

}  // namespace cdq
