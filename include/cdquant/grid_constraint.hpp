// What the output format lets a layer solver choose about the grid: one type for every format.
//
// The solvers pick integer codes on an affine grid (grid.hpp). Some formats let the solver fit
// that grid itself; others fix most of it, and the solver must put its codes (and whatever
// scales the format still leaves free) on the format's own grid so that the writer can store
// the result bit for bit. A GridConstraint says which, once per linear:
//
// - Free: a uniform integer grid the solver fits itself from SolverOptions::grid (GridSpec:
//   bits, group size, symmetric, scale search), scales stored as fp32 or, with
//   GridSpec::fp16_scales, as fp16 (GPTQ checkpoints), integer zero points. The CD family may
//   refit every group scale (zero points kept). This is the default: no constraint given.
// - GgmlBlock: `grid` is fixed by the format (ggml block types: the scales and mins/biases
//   its own rule chose, or any caller's grid) and every solver picks codes on it. With
//   `sub_scale`, the format stores the scale of group k of row r as d * sub_scale[r, k], one
//   free fp16 multiplier d per block of `block_groups` consecutive groups of the row (ggml:
//   Q4_0's d per 32-weight group with sub-scale 1, Q4_K's per 8 groups over 6-bit
//   sub-scales): the CD family refits every d, and moves each integer sub-scale within
//   [sub_lo, sub_hi] (the bit field's range, ggml_sub_scale_range; lo == hi: they stay).
//   Mins, zero points and biases never move. Without sub_scale the grid is kept as it is:
//   codes only. The solver returns the refitted grid and sub-scales (SolveResult::grid,
//   SolveResult::sub_scale) for the writer to store.
// - Codebook: `grid` is a fixed codebook grid (Grid::levels non-empty: value = scale *
//   levels[q] + bias, levels shared by the matrix, not evenly spaced: HIGGS's Lloyd-Max levels
//   in its rotated basis, IQ4_NL's table) and every solver that supports it (MethodInfo::grids,
//   method.hpp) picks codes on it: RTN the nearest level, GPTQ the nearest level of each column
//   in turn, the CD family moves codes along the sorted levels. Biases and levels never move;
//   with `sub_scale` (ggml's IQ4_NL / IQ4_XS) the scales are d * sub_scale as for GgmlBlock and
//   the CD family refits every d and sub-scale; without, codes only (HIGGS).
#pragma once

#include <cdquant/grid.hpp>
#include <cstdint>
#include <vector>

namespace cdq {

enum class GridKind {
  Free,       // the solver fits a uniform integer grid from SolverOptions::grid
  GgmlBlock,  // a grid fixed by the format, with optionally free block multipliers d
  Codebook,   // a non-uniform codebook grid (Grid::levels), optionally free multipliers d
};

struct GridConstraint {
  GridKind kind = GridKind::Free;
  Grid grid;                       // GgmlBlock, Codebook: the format's grid; Free: unused
  std::vector<int16_t> sub_scale;  // GgmlBlock: [d_out, n_groups], or empty (kept as is)
  int block_groups = 1;            // with sub_scale: groups per free fp16 d
  int sub_lo = 1, sub_hi = 1;      // with sub_scale: range the sub-scales may move within
  // GgmlBlock: the codes [d_out, d_in] the format's own quantizer picks along with these scales
  // (ggml's rounds x * (1 / d) with the unrounded d, not x / fp16(d)), or empty. RTN takes them,
  // so that its file holds exactly the bytes of the format's quantizer.
  std::vector<uint8_t> rule_codes;

  // A grid the format fixes and the solver keeps as it is (codes only): a Codebook constraint
  // when the grid has levels, else GgmlBlock.
  static GridConstraint kept(Grid grid) {
    GridConstraint c;
    c.kind = grid.is_codebook() ? GridKind::Codebook : GridKind::GgmlBlock;
    c.grid = std::move(grid);
    return c;
  }
  // A ggml block grid whose scales are d * sub_scale: one free fp16 d per block_groups groups,
  // sub-scales movable within [sub_lo, sub_hi].
  static GridConstraint ggml_block(Grid grid, std::vector<int16_t> sub_scale, int block_groups,
                                   int sub_lo, int sub_hi) {
    GridConstraint c = kept(std::move(grid));
    c.sub_scale = std::move(sub_scale);
    c.block_groups = block_groups;
    c.sub_lo = sub_lo;
    c.sub_hi = sub_hi;
    return c;
  }

  // The grid every solver must use, or null when the solver fits its own (Free).
  const Grid* fixed_grid() const { return kind != GridKind::Free ? &grid : nullptr; }
  // Whether the CD family may refit the block multipliers d (a fixed grid with sub-scales).
  bool free_multipliers() const { return kind != GridKind::Free && !sub_scale.empty(); }
};

}  // namespace cdq
