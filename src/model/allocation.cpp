// Size-budget allocation: sensitivities by noise injection, candidate errors on the float
// model's H, and the plan from the knapsack (cdquant/allocation.hpp).
#include <cdquant/allocation.hpp>
#include <cdquant/error.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/quantize.hpp>
#include <cdquant/rng.hpp>
#include <cmath>

#include "linalg/linalg.hpp"
#include "model/forward_blocks.hpp"
#include "model/log_softmax.hpp"
#include "quant/allocation_knapsack.hpp"

namespace cdq {

namespace {

double squared_norm(const Matrix& m) {
  double s = 0.0;
  for (float v : m.data) s += static_cast<double>(v) * v;
  return s;
}

double squared_distance(const Matrix& a, const Matrix& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const double d = static_cast<double>(a.data[i]) - b.data[i];
    s += d * d;
  }
  return s;
}

// All windows embedded and stacked: [n * seqlen, dim].
Matrix embed_windows(const Model& model, const std::vector<std::vector<int>>& windows) {
  const auto seqlen = static_cast<int64_t>(windows.front().size());
  Matrix x(static_cast<int64_t>(windows.size()) * seqlen, model.config.dim);
  for (size_t w = 0; w < windows.size(); ++w) {
    CDQ_CHECK(static_cast<int64_t>(windows[w].size()) == seqlen,
              "allocation: calibration windows differ in length");
    const Matrix e = embed_tokens(model.tok_embeddings, windows[w]);
    std::copy(e.data.begin(), e.data.end(), x.data.begin() + static_cast<int64_t>(w) * e.size());
  }
  return x;
}

// Log-probabilities [T, vocab] of the logits rows, as float.
Matrix log_probs(const Matrix& logits) {
  Matrix out(logits.rows, logits.cols);
  for (int64_t r = 0; r < logits.rows; ++r) {
    const std::vector<double> lp = log_softmax_row(logits.row(r), logits.cols);
    for (int64_t c = 0; c < logits.cols; ++c) out(r, c) = static_cast<float>(lp[c]);
  }
  return out;
}

// Mean over positions of KL(P_ref || softmax(logits)).
double mean_kl(const Matrix& ref_logp, const Matrix& logits) {
  double total = 0.0;
  for (int64_t r = 0; r < logits.rows; ++r) {
    const std::vector<double> lq = log_softmax_row(logits.row(r), logits.cols);
    const float* lp = ref_logp.row(r);
    double kl = 0.0;
    for (int64_t c = 0; c < logits.cols; ++c) kl += std::exp(lp[c]) * (lp[c] - lq[c]);
    total += kl;
  }
  return total / static_cast<double>(logits.rows);
}

// Logits of the model from block `first` on, given that block's input x (copied).
Matrix logits_from(const Model& model, int first, const BlockWeights& replaced, Matrix x,
                   int64_t seqlen) {
  for (int i = first; i < model.config.n_layers; ++i)
    block_forward(i == first ? replaced : model.blocks[static_cast<size_t>(i)], model.config, x,
                  nullptr, seqlen);
  return head_forward(model.final_norm, model.classifier(), model.config, x);
}

std::string tensor_name(int layer, Linear l) {
  return linear_display_name(layer, l);
}

}  // namespace

void add_relative_noise(Matrix& w, double t, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> n(w.data.size());
  double nn = 0.0;
  for (double& v : n) {
    v = rng.normal();
    nn += v * v;
  }
  const double scale = nn > 0.0 ? t * std::sqrt(squared_norm(w) / nn) : 0.0;
  for (size_t i = 0; i < n.size(); ++i) w.data[i] = static_cast<float>(w.data[i] + scale * n[i]);
}

double fit_through_origin(const std::vector<double>& x, const std::vector<double>& y) {
  CDQ_ASSERT(x.size() == y.size());
  double xy = 0.0, xx = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    xy += x[i] * y[i];
    xx += x[i] * x[i];
  }
  return xx > 0.0 ? xy / xx : 0.0;
}

TensorSensitivity fit_sensitivity(const Matrix& w, const std::vector<double>& levels, uint64_t seed,
                                  const std::function<double(const Matrix& perturbed)>& response) {
  CDQ_CHECK(!levels.empty(), "sensitivity: no noise levels");
  TensorSensitivity s;
  std::vector<double> t2;
  for (double t : levels) {
    CDQ_CHECK(t > 0.0, "sensitivity: noise level {} is not positive", t);
    Matrix p = w;
    // One noise direction for every level: the points differ only in t.
    add_relative_noise(p, t, seed);
    s.t.push_back(t);
    s.kl.push_back(response(p));
    t2.push_back(t * t);
  }
  s.alpha = fit_through_origin(t2, s.kl);
  return s;
}

std::vector<TensorSensitivity> measure_sensitivity(const Model& model,
                                                   const std::vector<std::vector<int>>& windows,
                                                   const SensitivityOptions& options) {
  CDQ_CHECK(!windows.empty(), "sensitivity: no calibration windows");
  const size_t n = std::min(windows.size(), static_cast<size_t>(std::max(1, options.max_windows)));
  const std::vector<std::vector<int>> used(windows.begin(), windows.begin() + n);
  const auto seqlen = static_cast<int64_t>(used.front().size());
  Matrix x = embed_windows(model, used);  // [n * seqlen, dim], the float input of block i
  const Matrix ref =
      log_probs(logits_from(model, 0, model.blocks.front(), x, seqlen));  // [n * seqlen, vocab]
  std::vector<TensorSensitivity> out;
  for (int i = 0; i < model.config.n_layers; ++i) {
    const BlockWeights& block = model.blocks[static_cast<size_t>(i)];
    for (Linear l : kAllLinears) {
      BlockWeights b = block;
      const uint64_t seed =
          options.seed * 1000003ULL + static_cast<uint64_t>(i) * 7 + static_cast<uint64_t>(l);
      TensorSensitivity s =
          fit_sensitivity(block.linear(l), options.levels, seed, [&](const Matrix& p) {
            b.linear(l) = p;
            return mean_kl(ref, logits_from(model, i, b, x, seqlen));
          });
      s.layer = i;
      s.linear = l;
      if (options.progress)
        options.progress(fmt::format("sensitivity {:<18} alpha {:.4e}  (KL {:.3e} at t = {})",
                                     tensor_name(i, l), s.alpha, s.kl.back(), s.t.back()));
      out.push_back(std::move(s));
    }
    block_forward(block, model.config, x, nullptr, seqlen);
  }
  return out;
}

void measure_candidate_errors(const Model& model, const std::vector<std::vector<int>>& windows,
                              Method method, const CandidateSetupFn& setup,
                              std::vector<AllocUnit>& units,
                              const std::function<void(const std::string&)>& progress) {
  CDQ_CHECK(!windows.empty() || !needs_hessian(method, SolverOptions{}),
            "allocation: --method {} needs calibration windows", method.name());
  const bool data_free = windows.empty();
  const auto seqlen = data_free ? int64_t{1} : static_cast<int64_t>(windows.front().size());
  Matrix x = data_free ? Matrix() : embed_windows(model, windows);
  for (int i = 0; i < model.config.n_layers; ++i) {
    const BlockWeights& block = model.blocks[static_cast<size_t>(i)];
    // One H per distinct input, from the float activations.
    Matrix hs[4];
    if (!data_free) {
      const auto alpha = static_cast<float>(2.0 / static_cast<double>(x.rows));
      const BlockInputsCallback capture = [&](BlockInput in, const Matrix& act) {
        Matrix& h = hs[static_cast<int>(in)];
        if (h.empty()) h = Matrix(act.cols, act.cols);
        syrk_accumulate(act.data.data(), act.rows, act.cols, alpha, h);
      };
      block_forward(block, model.config, x, &capture, seqlen);  // x: the next block's input
    }
    for (AllocUnit& u : units) {
      if (u.layer != i) continue;
      u.t2_weight.assign(u.linears.size(), std::vector<double>(u.candidates.size(), 0.0));
      u.t2_objective = u.t2_weight;
      for (size_t m = 0; m < u.linears.size(); ++m) {
        const Linear l = u.linears[m];
        const Matrix& w = block.linear(l);
        Matrix h = hs[static_cast<int>(input_of(l))];
        if (data_free) {
          h = Matrix(w.cols, w.cols);
          for (int64_t k = 0; k < w.cols; ++k) h(k, k) = 1.0f;
        }
        const double ww = squared_norm(w);
        for (size_t c = 0; c < u.candidates.size(); ++c) {
          CandidateSetup s = setup(i, l, u.candidates[c], w, h);
          if (s.constraint) s.solver.constraint = &*s.constraint;
          const SolveResult r = solve_layer(w, h, method, s.solver);
          u.t2_weight[m][c] = ww > 0.0 ? squared_distance(r.q, w) / ww : 0.0;
          u.t2_objective[m][c] = r.relative();
        }
        if (progress) {
          std::string line = fmt::format("errors {:<18}", tensor_name(i, l));
          for (size_t c = 0; c < u.candidates.size(); ++c)
            line += fmt::format(" {} {:.2e}", u.candidates[c], u.t2_weight[m][c]);
          progress(line);
        }
      }
    }
  }
}

AllocationPlan plan_allocation(const std::vector<AllocUnit>& units,
                               const std::vector<TensorSensitivity>& sensitivity, int64_t budget,
                               AllocationError error) {
  const auto alpha_of = [&](int layer, Linear l) {
    for (const TensorSensitivity& s : sensitivity)
      if (s.layer == layer && s.linear == l) return s.alpha;
    fail("allocation: no sensitivity measured for {}", tensor_name(layer, l));
  };
  std::vector<std::vector<KnapsackChoice>> groups;
  for (const AllocUnit& u : units) {
    CDQ_CHECK(u.t2_weight.size() == u.linears.size(),
              "allocation: the errors of {} were not measured", tensor_name(u.layer, u.linears[0]));
    std::vector<KnapsackChoice> g;
    for (size_t c = 0; c < u.candidates.size(); ++c) {
      double loss = 0.0;
      for (size_t m = 0; m < u.linears.size(); ++m) {
        const auto& t2 = error == AllocationError::Weight ? u.t2_weight : u.t2_objective;
        loss += alpha_of(u.layer, u.linears[m]) * t2[m][c];
      }
      g.push_back({u.bytes[c], loss});
    }
    groups.push_back(std::move(g));
  }
  const KnapsackResult k = solve_knapsack(groups, budget);
  AllocationPlan plan;
  plan.budget = budget;
  plan.exact = k.exact;
  plan.error = error;
  for (size_t i = 0; i < units.size(); ++i) {
    const auto c = static_cast<size_t>(k.choice[i]);
    AllocationEntry e;
    e.layer = units[i].layer;
    e.linears = units[i].linears;
    e.candidate = units[i].candidates[c];
    e.bytes = units[i].bytes[c];
    e.predicted = groups[i][c].loss;
    const auto& t2 = error == AllocationError::Weight ? units[i].t2_weight : units[i].t2_objective;
    for (size_t m = 0; m < e.linears.size(); ++m)
      e.member_predicted.push_back(alpha_of(e.layer, e.linears[m]) * t2[m][c]);
    plan.bytes += e.bytes;
    plan.predicted += e.predicted;
    plan.entries.push_back(std::move(e));
  }
  return plan;
}

std::string format_allocation_plan(const AllocationPlan& plan) {
  std::string s =
      fmt::format("{:<28} {:>8} {:>12} {:>12}\n", "tensor", "type", "bytes", "predicted");
  for (const AllocationEntry& e : plan.entries) {
    std::string name = tensor_name(e.layer, e.linears.front());
    for (size_t m = 1; m < e.linears.size(); ++m) {
      name += '+';  // two appends: GCC 12 warns (-Wrestrict) falsely on "+" + string
      name += linear_name(e.linears[m]);
    }
    s += fmt::format("{:<28} {:>8} {:>12} {:>12.4e}\n", name, e.candidate, e.bytes, e.predicted);
  }
  s += fmt::format("total: {} of {} bytes, predicted KL increase {:.4e}{}", plan.bytes, plan.budget,
                   plan.predicted, plan.exact ? "" : " (knapsack on a coarse grid)");
  return s;
}

}  // namespace cdq
