#include "support/paths.hpp"

namespace cdq::test {

std::string shared_dir() { return CDQ_SHARED_DIR; }
std::string cli_path() { return CDQ_CLI_PATH; }

}  // namespace cdq::test
