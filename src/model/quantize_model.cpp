#include <array>
#include <cdquant/forward.hpp>
#include <cdquant/method.hpp>
#include <cdquant/quantize.hpp>
#include <chrono>
#include <numeric>

#include "linalg/linalg.hpp"
#include "model/hessian_shards.hpp"
#include "model/wire.hpp"

namespace cdq {

namespace {

using Clock = std::chrono::steady_clock;

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

// This rank's calibration windows embedded and stacked: [its windows * seqlen, dim].
Matrix embed_calibration(ModelReader& reader, const std::vector<std::vector<int>>& windows,
                         const CalibrationShards& shards) {
  const Matrix emb = reader.read_embeddings();  // [vocab, dim]
  const int64_t first = shards.first_window(shards.rank);
  Matrix x(shards.windows_of(shards.rank) * shards.seqlen, emb.cols);
  for (int64_t w = 0; w < shards.windows_of(shards.rank); ++w) {
    const Matrix e = embed_tokens(emb, windows[static_cast<size_t>(first + w)]);
    std::copy(e.data.begin(), e.data.end(), x.data.begin() + w * e.size());
  }
  return x;
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

// The grid constraint of the format (options.choose_grid) for a linear, seen in the basis of
// its transform: what solve_linear would choose itself.
std::optional<GridConstraint> choose_constraint(int layer, Linear l, const Matrix& w_in,
                                                const Matrix& h_in,
                                                const QuantizeOptions& options) {
  if (!options.choose_grid) return std::nullopt;
  const auto transform = transform_of(layer, l, w_in.cols, options);
  if (!transform) return options.choose_grid(layer, l, w_in, h_in);
  Matrix w = w_in, h = h_in;
  transform->apply(w, h);
  return options.choose_grid(layer, l, w, h);
}

// given: the constraint chosen elsewhere (by rank 0, which owns the writer), or null to choose.
LinearResult solve_linear(int layer, Linear l, BlockWeights& block, const Matrix& h_in,
                          const QuantizeOptions& options,
                          const std::optional<GridConstraint>* given) {
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
  if (given != nullptr)
    constraint = *given;
  else if (options.choose_grid)
    constraint = options.choose_grid(layer, l, w, h);
  if (constraint) so.constraint = &*constraint;
  SolveResult r;
  try {
    r = solve_layer(w, h, options.method, so);
  } catch (const Error& e) {  // the solver knows matrices, not tensors: name the linear here
    fail("layer {} linear {}: {}", layer, linear_name(l), e.what());
  }
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

// Which rank solves each linear of a group: the largest first, each to the least loaded rank
// (cost ~ d_out d_in^2 + d_in^3, the solvers' leading terms). Depends on shapes and ranks only.
std::vector<int> solve_owners(const std::vector<Linear>& group, const BlockWeights& block,
                              int ranks) {
  std::vector<double> cost(group.size()), load(static_cast<size_t>(ranks), 0.0);
  for (size_t i = 0; i < group.size(); ++i) {
    const Matrix& w = block.linear(group[i]);
    const auto d_out = static_cast<double>(w.rows), d_in = static_cast<double>(w.cols);
    cost[i] = d_in * d_in * (d_out + d_in);
  }
  std::vector<size_t> order(group.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::vector<int> owner(group.size());
  for (size_t i : order) {
    const auto r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = r;
    load[static_cast<size_t>(r)] += cost[i];
  }
  return owner;
}

void send_message(Communicator& comm, std::vector<std::byte> bytes, int to) {
  uint64_t n = bytes.size();
  comm.send(std::as_bytes(std::span(&n, 1)), to);
  comm.send(bytes, to);
}

std::vector<std::byte> recv_message(Communicator& comm, int from) {
  uint64_t n = 0;
  comm.recv(std::as_writable_bytes(std::span(&n, 1)), from);
  std::vector<std::byte> bytes(n);
  comm.recv(bytes, from);
  return bytes;
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Solves one group of linears against hs, spread over the ranks; afterwards every rank's block
// holds every quantized linear, and rank 0 has every LinearResult (in group order) in results.
void solve_group(int layer, const std::vector<Linear>& group, BlockWeights& block,
                 const HessianSet& hs, const QuantizeOptions& options, Communicator* comm,
                 std::vector<LinearResult>& results, QuantizeTimings& time) {
  const int rank = comm ? comm->rank() : 0, ranks = comm ? comm->size() : 1;
  const std::vector<int> owner = solve_owners(group, block, ranks);
  const auto h_of = [&](Linear l) -> const Matrix& { return hs[static_cast<size_t>(input_of(l))]; };
  auto t0 = Clock::now();
  // Rank 0 holds the writer and with it the format's grid choice: it chooses for the linears
  // solved elsewhere and sends the constraint along.
  std::vector<std::optional<GridConstraint>> given(group.size());
  for (size_t i = 0; i < group.size(); ++i) {
    if (owner[i] == 0) continue;
    if (rank == 0)
      send_message(*comm,
                   encode_constraint(choose_constraint(layer, group[i], block.linear(group[i]),
                                                       h_of(group[i]), options)),
                   owner[i]);
    else if (rank == owner[i])
      given[i] = decode_constraint(recv_message(*comm, 0));
  }
  auto t1 = Clock::now();
  time.exchange += seconds_between(t0, t1);
  std::vector<LinearResult> mine(group.size());
  for (size_t i = 0; i < group.size(); ++i)
    if (owner[i] == rank)
      mine[i] = solve_linear(layer, group[i], block, h_of(group[i]), options,
                             rank == 0 ? nullptr : &given[i]);
  auto t2 = Clock::now();
  time.solve += seconds_between(t1, t2);
  for (size_t i = 0; i < group.size(); ++i) {
    if (ranks > 1) {
      comm->broadcast(matrix_bytes(block.linear(group[i])), owner[i]);
      if (owner[i] != 0 && rank == owner[i]) send_message(*comm, encode_result(mine[i]), 0);
      if (owner[i] != 0 && rank == 0) mine[i] = decode_result(recv_message(*comm, owner[i]));
    }
    if (rank == 0) results.push_back(std::move(mine[i]));
  }
  time.exchange += seconds_between(t2, Clock::now());
}

// Every rank must quantize the same thing: rank 0's hash of the windows and settings, compared.
void check_same_inputs(Communicator& comm, const std::vector<std::vector<int>>& calibration,
                       const QuantizeOptions& options, const ModelConfig& config) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  const auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xFF)) * 1099511628211ULL;
  };
  mix(calibration.size());
  for (const auto& w : calibration) {
    mix(w.size());
    for (int t : w) mix(static_cast<uint64_t>(t));
  }
  mix(static_cast<uint64_t>(options.chunk_tokens));
  mix(static_cast<uint64_t>(options.true_sequential));
  mix(static_cast<uint64_t>(config.n_layers));
  mix(static_cast<uint64_t>(config.dim));
  uint64_t root = h;
  comm.broadcast(std::as_writable_bytes(std::span(&root, 1)), 0);
  CDQ_CHECK(root == h,
            "rank {}'s calibration windows or settings differ from rank 0's: every rank must be "
            "given the same model, calibration text, --nsamples, --seqlen, --seed and "
            "--chunk-tokens",
            comm.rank());
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
  Communicator* comm = options.comm != nullptr && options.comm->size() > 1 ? options.comm : nullptr;
  const int rank = comm ? comm->rank() : 0;
  if (comm) check_same_inputs(*comm, calibration, options, reader.config());
  const ModelConfig& config = reader.config();
  const auto t0 = Clock::now();
  const CalibrationShards shards(data_free ? 1 : static_cast<int64_t>(calibration.size()), seqlen,
                                 options.chunk_tokens, rank, comm ? comm->size() : 1);
  Matrix x = data_free ? Matrix() : embed_calibration(reader, calibration, shards);
  const int total = config.n_layers * 7;
  QuantizeSummary summary;
  QuantizeTimings& time = summary.time;
  double relative_sum = 0.0, bits_sum = 0.0, weights = 0.0;

  for (int layer = 0; layer < config.n_layers; ++layer) {
    BlockWeights block = reader.read_block(layer);
    std::vector<LinearResult> results;
    for (const auto& group : linear_groups(options.true_sequential)) {
      HessianSet hs;
      InputMask wanted{};
      for (Linear l : group) wanted[static_cast<size_t>(input_of(l))] = true;
      if (data_free) {
        for (Linear l : group) hs[static_cast<size_t>(input_of(l))] = identity_hessian(block, l);
      } else {
        hs = block_hessians(block, config, shards, x, wanted, comm, time);
      }
      const size_t first = results.size();
      solve_group(layer, group, block, hs, options, comm, results, time);
      for (size_t i = first; i < results.size(); ++i) {
        const Linear l = results[i].linear;
        ++summary.linears;
        relative_sum += results[i].relative;
        const Matrix& w = block.linear(l);
        const auto numel = static_cast<double>(w.rows * w.cols);
        SolverOptions so = options.solver;
        if (options.tune_linear) options.tune_linear(layer, l, so);
        bits_sum += numel * bits_per_weight(options.method, so, w.cols);
        weights += numel;
        if (options.progress) {
          const double elapsed = seconds_since(t0);
          options.progress({&results[i], summary.linears, total, elapsed,
                            elapsed / summary.linears * (total - summary.linears)});
        }
      }
    }
    auto ts = Clock::now();
    if (!data_free) block_outputs(block, config, shards, x);  // the next block's input
    time.recompute += seconds_since(ts);
    ts = Clock::now();
    if (rank == 0) sink(layer, block, results);
    time.sink += seconds_since(ts);
  }
  if (comm) time.bytes = comm->bytes_moved();
  summary.seconds = seconds_since(t0);
  summary.mean_relative = summary.linears ? relative_sum / summary.linears : 0.0;
  summary.bits_per_weight = weights > 0 ? bits_sum / weights : 0.0;
  return summary;
}

}  // namespace cdq
