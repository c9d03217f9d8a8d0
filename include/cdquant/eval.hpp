// Language-model evaluation on a token stream: perplexity, and against a second (e.g.
// quantized) model the KL divergence of the next-token distributions and top-1 agreement.
//
// Windows: the stream is cut into consecutive non-overlapping chunks. With prepend_bos (the
// default) each window is [BOS] + (ctx - 1) stream tokens, and all ctx - 1 stream tokens are
// scored (the first one predicted from BOS alone), so every stream token is scored exactly
// once and each window starts from the same state the model saw in training (llama2.c and
// SentencePiece models put BOS at every document start). Without it, a window is ctx stream
// tokens and positions 1..ctx-1 are scored (the GPTQ-paper convention: the first token of
// each window is context only). A last partial window is dropped, as in the GPTQ paper.
#pragma once

#include <cdquant/matrix.hpp>
#include <cdquant/model.hpp>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace cdq {

struct EvalOptions {
  int ctx = 0;              // window length in tokens; 0: min(max_seq_len, 2048)
  int max_windows = 0;      // 0: all full windows
  bool prepend_bos = true;  // see the header comment
  int bos_id = -1;          // -1: the model config's bos_id (pass the tokenizer's)
  // Called after each window with (windows done, windows total).
  std::function<void(int, int)> progress;
};

struct EvalResult {
  int ctx = 0;
  int windows = 0;
  int64_t scored = 0;      // scored positions (next-token predictions)
  double nll = 0.0;        // mean negative log-likelihood, nats per token
  double ppl = 0.0;        // exp(nll)
  double entropy = 0.0;    // mean entropy of the predicted distribution, nats (its sharpness)
  bool compared = false;   // a second model was given
  double nll_other = 0.0;  // the second model's mean NLL on the same positions
  double ppl_other = 0.0;
  double entropy_other = 0.0;
  double kl = 0.0;    // mean over positions of KL(P_model || P_other), nats
  double top1 = 0.0;  // fraction of positions where both argmaxes agree

  // Per window (every window scores the same number of positions): mean NLL of the model
  // and of the other one, and mean KL. Windows of a long text are close to independent
  // samples, so their spread gives the standard errors below; per-token spreads would
  // understate them, since neighbouring tokens' losses are correlated.
  std::vector<double> window_nll, window_nll_other, window_kl;
  double nll_se = 0.0;           // standard error of nll (ppl's is about ppl * nll_se)
  double nll_other_se = 0.0;     // of nll_other
  double ln_ppl_ratio_se = 0.0;  // of nll_other - nll = ln(ppl_other / ppl), paired by window
  double kl_se = 0.0;            // of kl
};

// Standard error of the mean of x (0 for fewer than two values).
double standard_error(std::span<const double> x);
// Standard error of the mean of a - b, paired element by element.
double paired_standard_error(std::span<const double> a, std::span<const double> b);

// Window start/contents for a token stream (see the header comment).
std::vector<std::vector<int>> make_windows(std::span<const int> stream, int ctx, bool prepend_bos,
                                           int bos_id, int max_windows);

// Evaluates `model` (and, when given, `other` on the same windows). Throws Error when the
// stream does not fill one window or the vocabularies differ.
EvalResult evaluate(const Model& model, std::span<const int> stream, const EvalOptions& options,
                    const Model* other = nullptr);

}  // namespace cdq
