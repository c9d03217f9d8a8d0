// Option validators with messages a person can read: CLI11's PositiveNumber and
// NonNegativeNumber print their upper bound, DBL_MAX, as a 309-digit number, and an unsigned
// option silently takes "-1" as 2^64 - 1.
#pragma once

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdlib>
#include <string>

namespace cdq::cli {

// The option's text as a finite number; false when it is not one.
inline bool parse_number(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && errno == 0 && out == out && out - out == 0;
}

inline const CLI::Validator kPositive(
    [](std::string& s) -> std::string {
      double v = 0;
      if (!parse_number(s, v) || !(v > 0)) return "must be a positive number, got " + s;
      return {};
    },
    "POSITIVE");

inline const CLI::Validator kNonNegative(
    [](std::string& s) -> std::string {
      double v = 0;
      if (!parse_number(s, v) || !(v >= 0)) return "must be a number >= 0, got " + s;
      return {};
    },
    "NONNEGATIVE");

// Seeds are unsigned 64-bit: a minus sign is refused instead of wrapping around.
inline const CLI::Validator kSeed(
    [](std::string& s) -> std::string {
      const bool digits = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
      if (!digits) return "must be an integer from 0 to 18446744073709551615, got " + s;
      return {};
    },
    "UINT64");

}  // namespace cdq::cli
