#include <array>
#include <cdquant/forward.hpp>
#include <cdquant/method.hpp>
#include <cdquant/quantize.hpp>
#include <chrono>

#include "linalg/linalg.hpp"

namespace cdq {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kInputs = 4;  // distinct linear inputs of a block (BlockInput)

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The linears solved together before H is refreshed (true-sequential), in graph order.
std::vector<std::vector<Linear>> linear_groups(bool true_sequential) {
  if (!true_sequential)
    return {{Linear::Q, Linear::K, Linear::V, Linear::O, Linear::Gate, Linear::Up, Linear::Down}};
  return {
      {Linear::Q, Linear::K, Linear::V}, {Linear::O}, {Linear::Gate, Linear::Up}, {Linear::Down}};
}

// All calibration windows embedded and stacked: [n_windows * seqlen, dim].
Matrix embed_calibration(ModelReader& reader, const std::vector<std::vector<int>>& windows) {
  const Matrix emb = reader.read_embeddings();  // [vocab, dim]
  const auto seqlen = static_cast<int64_t>(windows.front().size());
  Matrix x(static_cast<int64_t>(windows.size()) * seqlen, emb.cols);
  for (size_t w = 0; w < windows.size(); ++w) {
    const Matrix e = embed_tokens(emb, windows[w]);
    std::copy(e.data.begin(), e.data.end(), x.data.begin() + static_cast<int64_t>(w) * e.size());
  }
  return x;
}

struct BlockRun {
  const BlockWeights& block;
  const ModelConfig& config;
  int64_t seqlen;
  int64_t chunk_seqs;
};

// Pushes the activations x through the block chunk by chunk. H of every wanted input is
// accumulated as (2/n) sum x x^T; with update, x is replaced by the block's outputs.
void run_block(const BlockRun& run, Matrix& x, std::array<Matrix, kInputs>& hs,
               const std::array<bool, kInputs>& wanted, bool update) {
  const int64_t n_tokens = x.rows;
  const auto alpha = static_cast<float>(2.0 / static_cast<double>(n_tokens));
  const BlockInputsCallback capture = [&](BlockInput in, const Matrix& act) {
    const auto i = static_cast<size_t>(in);
    if (!wanted[i]) return;
    if (hs[i].empty()) hs[i] = Matrix(act.cols, act.cols);
    syrk_accumulate(act.data.data(), act.rows, act.cols, alpha, hs[i]);
  };
  const bool any_wanted = wanted[0] || wanted[1] || wanted[2] || wanted[3];
  const int64_t chunk_rows = run.chunk_seqs * run.seqlen;
  for (int64_t r0 = 0; r0 < n_tokens; r0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, n_tokens - r0);
    Matrix chunk(rows, x.cols);
    std::copy(x.row(r0), x.row(r0) + rows * x.cols, chunk.data.begin());
    block_forward(run.block, run.config, chunk, any_wanted ? &capture : nullptr, run.seqlen);
    if (update) std::copy(chunk.data.begin(), chunk.data.end(), x.row(r0));
  }
}

// The linear's transform, when its factory gives one that changes the basis.
std::unique_ptr<LinearTransform> transform_of(int layer, Linear l, int64_t d_in,
                                              const QuantizeOptions& options) {
  if (!options.transform) return nullptr;
  auto t = options.transform(layer, static_cast<int>(l), d_in);
  CDQ_CHECK(t != nullptr, "the transform factory gave no transform for {}",
            linear_display_name(layer, l));
  if (t->export_needs() == TransformExport::Nothing) return nullptr;
  return t;
}

// H = I [d_in, d_in] of a linear's input: the data-free stand-in.
Matrix identity_hessian(const BlockWeights& block, Linear l) {
  const int64_t n = block.linear(l).cols;
  Matrix h(n, n);
  for (int64_t i = 0; i < n; ++i) h(i, i) = 1.0f;
  return h;
}

LinearResult solve_linear(int layer, Linear l, BlockWeights& block, const Matrix& h_in,
                          const QuantizeOptions& options) {
  Matrix& w = block.linear(l);
  // A change of basis: the solver sees W R^T and R H R^T; the block gets Q' R back below.
  const auto transform = transform_of(layer, l, w.cols, options);
  Matrix h_rotated;
  if (transform) {
    h_rotated = h_in;
    transform->apply(w, h_rotated);
  }
  const Matrix& h = transform ? h_rotated : h_in;
  SolverOptions so = options.solver;
  if (options.tune_linear) options.tune_linear(layer, l, so);
  std::optional<GridConstraint> constraint;
  if (options.choose_grid) constraint = options.choose_grid(layer, l, w, h);
  if (constraint) so.constraint = &*constraint;
  SolveResult r = solve_layer(w, h, options.method, so);
  LinearResult out;
  out.layer = layer;
  out.linear = l;
  out.objective = r.objective;
  out.relative = r.relative();
  out.seconds = r.seconds;
  out.notes = std::move(r.notes);
  out.grid = std::move(r.grid);
  out.codes = std::move(r.codes);
  out.sub_scale = std::move(r.sub_scale);
  if (transform) {
    transform->undo(r.q);
    out.transform_export = transform->export_needs();
    out.transform = transform->name();
  }
  w = std::move(r.q);
  return out;
}

}  // namespace

std::string linear_display_name(int layer, Linear linear) {
  static constexpr const char* kNames[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                           "ffn_gate", "ffn_up", "ffn_down"};
  return fmt::format("blk.{}.{}", layer, kNames[static_cast<int>(linear)]);
}

QuantizeSummary quantize_model(ModelReader& reader,
                               const std::vector<std::vector<int>>& calibration,
                               const QuantizeOptions& options, const BlockSink& sink) {
  // Data-free: no forward pass at all, and every linear's H is the identity, so the objective
  // the solvers report is the weight error |Q - W|_F^2.
  const bool data_free = calibration.empty();
  CDQ_CHECK(!data_free || !needs_hessian(options.method, options.solver),
            "--method {} needs calibration data (H), and no calibration windows were given",
            options.method.name());
  const auto seqlen = data_free ? 1 : static_cast<int64_t>(calibration.front().size());
  for (const auto& w : calibration)
    CDQ_CHECK(static_cast<int64_t>(w.size()) == seqlen, "calibration windows differ in length");
  const ModelConfig& config = reader.config();
  const auto t0 = Clock::now();
  Matrix x = data_free ? Matrix() : embed_calibration(reader, calibration);  // [n * seqlen, dim]
  const int64_t chunk_seqs = std::max<int64_t>(1, options.chunk_tokens / seqlen);
  const int total = config.n_layers * 7;
  QuantizeSummary summary;
  double relative_sum = 0.0, bits_sum = 0.0, weights = 0.0;

  for (int layer = 0; layer < config.n_layers; ++layer) {
    BlockWeights block = reader.read_block(layer);
    const BlockRun run{block, config, seqlen, chunk_seqs};
    std::vector<LinearResult> results;
    for (const auto& group : linear_groups(options.true_sequential)) {
      std::array<Matrix, kInputs> hs;
      std::array<bool, kInputs> wanted{};
      for (Linear l : group) wanted[static_cast<size_t>(input_of(l))] = true;
      if (data_free) {
        for (Linear l : group) hs[static_cast<size_t>(input_of(l))] = identity_hessian(block, l);
      } else {
        run_block(run, x, hs, wanted, false);
      }
      for (Linear l : group) {
        results.push_back(
            solve_linear(layer, l, block, hs[static_cast<size_t>(input_of(l))], options));
        ++summary.linears;
        relative_sum += results.back().relative;
        const Matrix& w = block.linear(l);
        const auto numel = static_cast<double>(w.rows * w.cols);
        SolverOptions so = options.solver;
        if (options.tune_linear) options.tune_linear(layer, l, so);
        bits_sum += numel * bits_per_weight(options.method, so, w.cols);
        weights += numel;
        if (options.progress) {
          const double elapsed = seconds_since(t0);
          options.progress({&results.back(), summary.linears, total, elapsed,
                            elapsed / summary.linears * (total - summary.linears)});
        }
      }
    }
    std::array<Matrix, kInputs> none;
    if (!data_free) run_block(run, x, none, {}, true);  // the next block sees the quantized outputs
    sink(layer, block, results);
  }
  summary.seconds = seconds_since(t0);
  summary.mean_relative = summary.linears ? relative_sum / summary.linears : 0.0;
  summary.bits_per_weight = weights > 0 ? bits_sum / weights : 0.0;
  return summary;
}

}  // namespace cdq
