// Whole-model quantization, GPTQ-style and sequential: for each transformer block in order,
// run the calibration activations through it, accumulate one H per distinct linear input
// (q/k/v share one, gate/up share one, o and down have their own), solve every linear with
// the chosen method, recompute the block's outputs with the quantized weights, and go on.
// Peak memory: one block's weights, the calibration activations and the block's Hessians.
#pragma once

#include <cdquant/communicator.hpp>
#include <cdquant/grid.hpp>
#include <cdquant/grid_constraint.hpp>
#include <cdquant/model.hpp>
#include <cdquant/solver.hpp>
#include <cdquant/transform.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace cdq {

// One solved linear: its grid and codes (for packed export) and how well it did.
struct LinearResult {
  int layer = 0;
  Linear linear = Linear::Q;
  Grid grid;
  std::vector<uint8_t> codes;      // [d_out, d_in]
  std::vector<int16_t> sub_scale;  // refitted sub-scales under a GridConstraint, or empty
  // What the codes' basis asks of an exporter (cdquant/transform.hpp): Nothing, or Undo when
  // grid and codes live in a transformed basis (the block's weights are already undone).
  TransformExport transform_export = TransformExport::Nothing;
  std::string transform = "identity";
  double objective = 0.0;  // L(Q) with the undamped H
  double relative = 0.0;   // L(Q) / tr(W H W^T)
  double seconds = 0.0;
  std::vector<std::string> notes;
};

struct LayerProgress {
  const LinearResult* result = nullptr;
  int done = 0;          // linears solved so far
  int total = 0;         // linears in the model
  double elapsed = 0.0;  // seconds since the start
  double eta = 0.0;      // estimated seconds left
};

// Chooses the grid constraint of one linear (e.g. a GGUF block format's grid), or nullopt for
// the solver's own grid (options.solver.grid).
using GridChooser = std::function<std::optional<GridConstraint>(int layer, Linear linear,
                                                                const Matrix& w, const Matrix& h)>;

// Receives each finished block: its weights with every linear replaced by the dequantized
// quantized one, and the solved linears (codes + grids).
using BlockSink =
    std::function<void(int layer, BlockWeights& block, std::vector<LinearResult>& linears)>;

struct QuantizeOptions {
  Method method = default_method();
  SolverOptions solver;          // grid spec, damping, act-order, CD budget, threads
  bool true_sequential = false;  // refresh H after each group (qkv, o, gate/up, down)
  int64_t chunk_tokens = 4096;   // calibration tokens pushed through a block at once
  GridChooser choose_grid;       // optional
  // Optional: changes one linear's solver options before it is solved (a size-budget
  // allocation's bits per linear for GPTQ checkpoints). Writers read it too.
  std::function<void(int layer, Linear linear, SolverOptions& options)> tune_linear;
  TransformFactory transform;  // optional: each linear's change of basis; none: identity
  std::function<void(const LayerProgress&)> progress;  // optional, after every linear
  // Several processes (ranks) together, or null for one. The calibration windows are shared
  // out in fixed chunks (chunk_tokens) and their H summed by a tree that depends on the number
  // of chunks alone, so the output bytes do not depend on the number of ranks. Every rank
  // passes the same reader, windows and options; only rank 0 calls sink and progress.
  Communicator* comm = nullptr;
};

// Seconds this rank spent in each stage (summed over blocks), and bytes it exchanged.
struct QuantizeTimings {
  double forward = 0.0;    // capture forwards, without the H products
  double hessian = 0.0;    // H products X^T X and the tree's additions
  double exchange = 0.0;   // sending and awaiting H parts, constraints and results
  double solve = 0.0;      // this rank's solves
  double recompute = 0.0;  // the forward with the quantized block (next block's input)
  double sink = 0.0;       // handing finished blocks to the sink (writing)
  double bytes = 0.0;      // communication
};

struct QuantizeSummary {
  int linears = 0;
  double seconds = 0.0;
  double mean_relative = 0.0;  // mean over linears of L(Q) / tr(W H W^T)
  // Of the linears, as the method stores them (bits_per_weight of cdquant/method.hpp), weighted
  // by their sizes; the format may add its own overhead (GGUF types are fixed per tensor).
  double bits_per_weight = 0.0;
  QuantizeTimings time;
};

// Quantizes every block of the model read from `reader` with calibration windows of equal
// length (token ids), handing each finished block to `sink`. No windows: data-free, for
// methods that read no H (needs_hessian false); each linear is solved against H = I.
QuantizeSummary quantize_model(ModelReader& reader,
                               const std::vector<std::vector<int>>& calibration,
                               const QuantizeOptions& options, const BlockSink& sink);

// "blk.3.attn_q" style name of a linear (GGUF tensor naming without ".weight").
std::string linear_display_name(int layer, Linear linear);

}  // namespace cdq
