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

// Limits for the child process.
struct CliLimits {
  // RLIMIT_FSIZE: a write that would grow a file beyond this fails with EFBIG (SIGXFSZ is
  // ignored in the child), a real write failure in the middle of an output. 0: none.
  uint64_t max_file_bytes = 0;
};

// The CLI started in the background (stdin, stdout and stderr as run_cli), to be signalled.
class CliProcess {
 public:
  explicit CliProcess(const std::vector<std::string>& args, const CliLimits& limits = {});
  ~CliProcess();  // kills (SIGKILL) and reaps a child still running
  CliProcess(const CliProcess&) = delete;
  CliProcess& operator=(const CliProcess&) = delete;

  bool running();                  // false once it has exited (reaps it)
  void signal(int sig);            // sends sig if it still runs
  CliResult wait();                // waits for the exit and returns what it printed
  std::string err_so_far() const;  // stderr up to now

 private:
  int pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  std::string dir_, out_path_, err_path_;
};

// run_cli under limits.
CliResult run_cli(const std::vector<std::string>& args, const CliLimits& limits);

}  // namespace cdq::test
