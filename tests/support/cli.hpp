// Runs the built cdquant binary and captures what it prints.
#pragma once

#include <string>
#include <vector>

namespace cdq::test {

struct CliResult {
  int exit_code = -1;  // the process's exit status; 128 + signal when killed by one
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs cli_path() with args (no shell: arguments are passed as they are), stdin from
// /dev/null, and waits for it.
CliResult run_cli(const std::vector<std::string>& args);

// The same for any program (argv[0] = program).
CliResult run_program(const std::string& program, const std::vector<std::string>& args);

}  // namespace cdq::test
