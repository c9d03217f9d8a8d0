// Time of the size-budget knapsack on a Llama-2-7B-shaped allocation: 32 blocks x 7 linears,
// every GGUF candidate its rows hold (the bytes are the real tensor sizes), random losses of the
// alpha * t^2 shape, budgets across the range. Prints seconds, cells, unit and exactness.
//
//   bench_allocation_knapsack [--max-cells N]
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cdquant/ggml_type.hpp>
#include <cdquant/rng.hpp>
#include <chrono>

#include "quant/allocation_knapsack.hpp"

int main(int argc, char** argv) {
  CLI::App app("Knapsack time on a 7B-shaped allocation");
  int64_t max_cells = int64_t{1} << 18;
  app.add_option("--max-cells", max_cells, "cells of the dynamic program at most");
  CLI11_PARSE(app, argc, argv);
  using namespace cdq;
  const GgmlType types[] = {GgmlType::F16,  GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_K,
                            GgmlType::Q5_1, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q4_1,
                            GgmlType::Q4_0, GgmlType::Q3_K, GgmlType::Q2_K};
  // Relative error of each type, roughly 4^-bits (the loss model's shape only matters here).
  const double t2[] = {1e-7, 3e-5, 3e-4, 1e-3, 2e-3, 2.5e-3, 5e-3, 6e-3, 9e-3, 2.5e-2, 9e-2};
  const int64_t shapes[7][2] = {{4096, 4096},  {4096, 4096},  {4096, 4096}, {4096, 4096},
                                {11008, 4096}, {11008, 4096}, {4096, 11008}};
  Rng rng(1);
  std::vector<std::vector<KnapsackChoice>> groups;
  int64_t lo = 0, hi = 0;
  for (int layer = 0; layer < 32; ++layer)
    for (const auto& s : shapes) {
      const double alpha = std::exp(rng.normal());
      std::vector<KnapsackChoice> g;
      for (size_t k = 0; k < std::size(types); ++k) {
        if (s[1] % ggml_traits(types[k]).block_size != 0) continue;
        g.push_back({s[0] * static_cast<int64_t>(ggml_row_bytes(types[k], s[1])), alpha * t2[k]});
      }
      int64_t mn = g[0].cost, mx = g[0].cost;
      for (const auto& c : g) mn = std::min(mn, c.cost), mx = std::max(mx, c.cost);
      lo += mn;
      hi += mx;
      groups.push_back(std::move(g));
    }
  fmt::print("7B-shaped: {} groups, linears {:.2f} GB (all Q2_K) to {:.2f} GB (all F16)\n",
             groups.size(), lo / 1e9, hi / 1e9);
  for (double f : {0.1, 0.3, 0.5, 0.7, 0.9}) {
    const auto budget = static_cast<int64_t>(lo + f * static_cast<double>(hi - lo));
    const auto t0 = std::chrono::steady_clock::now();
    const KnapsackResult r = solve_knapsack(groups, budget, max_cells);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(
        "budget {:.3f} GB: {:.3f} s, unit {} bytes ({} cells), {}, used {:.4f} GB, loss "
        "{:.4e}\n",
        budget / 1e9, s, r.unit, (budget - lo) / r.unit + 1, r.exact ? "exact" : "coarse",
        r.cost / 1e9, r.loss);
  }
  return 0;
}
