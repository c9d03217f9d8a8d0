// Where the tests find ../shared and the CLI binary.
#pragma once

#include <string>

namespace cdq::test {

std::string shared_dir();  // ../shared beside the checkout
std::string cli_path();    // the built cdquant binary ($CDQ_TEST_CLI when set)

}  // namespace cdq::test
