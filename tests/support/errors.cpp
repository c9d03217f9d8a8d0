#include "support/errors.hpp"

#include <cdquant/error.hpp>

namespace cdq::test {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace cdq::test
