// Helpers the benchmark programs share (header only: every bench/*.cpp is its own program).
#pragma once

#include <omp.h>

#include <cdquant/error.hpp>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace cdq::bench {

// "a,b,,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

// "4096x11008" -> {d_out, d_in}.
inline std::pair<int64_t, int64_t> parse_shape(const std::string& s) {
  const auto x = s.find('x');
  CDQ_CHECK(x != std::string::npos, "shape '{}' must look like 4096x4096 (d_out x d_in)", s);
  return {std::stoll(s.substr(0, x)), std::stoll(s.substr(x + 1))};
}

// OpenMP threads; 0 keeps the default. (BLAS runs one-threaded inside cdquant's own tiled
// products, whose tiles OpenMP spreads: results do not depend on the thread count.)
inline void set_threads(int threads) {
  if (threads <= 0) return;
  omp_set_num_threads(threads);
}

}  // namespace cdq::bench
