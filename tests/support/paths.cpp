#include "support/paths.hpp"

#include <cstdlib>

namespace cdq::test {

std::string shared_dir() {
  return CDQ_SHARED_DIR;
}
// CDQ_TEST_CLI runs the CLI tests against another build (e.g. to show a test fails on main).
std::string cli_path() {
  const char* other = std::getenv("CDQ_TEST_CLI");
  return other != nullptr && *other != 0 ? other : CDQ_CLI_PATH;
}

}  // namespace cdq::test
