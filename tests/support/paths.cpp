#include "support/paths.hpp"

namespace cdq::test {

std::string shared_dir() {
  return CDQ_SHARED_DIR;
}
std::string cli_path() {
  return CDQ_CLI_PATH;
}
std::string tokenizers_dir() {
  return std::string(CDQ_SOURCE_DIR) + "/.tokenizers";
}
std::string engine_lib_dir() {
  return std::string(CDQ_SOURCE_DIR) +
         "/.engine/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
}

}  // namespace cdq::test
