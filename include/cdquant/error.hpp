// Two tiers of errors (faiss-style):
//  - user or file errors: throw cdq::Error with context; the CLI catches it and exits non-zero.
//  - internal invariants: CDQ_ASSERT aborts, because continuing would give wrong numbers.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace cdq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace cdq

// User-facing check: throws cdq::Error with a formatted message.
#define CDQ_CHECK(cond, ...)               \
  do {                                     \
    if (!(cond)) ::cdq::fail(__VA_ARGS__); \
  } while (0)

// Internal invariant: a bug if it fires.
#define CDQ_ASSERT(cond)                                                                        \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "cdquant internal error: %s at %s:%d\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)
