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
std::string tokenizers_dir() {
  return std::string(CDQ_SOURCE_DIR) + "/.tokenizers";
}
std::string engine_lib_dir() {
  return std::string(CDQ_SOURCE_DIR) +
         "/.engine/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
}

}  // namespace cdq::test
