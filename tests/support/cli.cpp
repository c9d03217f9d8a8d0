#include "support/cli.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "support/paths.hpp"
#include "support/tmpdir.hpp"

extern char** environ;

namespace cdq::test {

CliResult run_program(const std::string& program, const std::vector<std::string>& args) {
  // stdout and stderr go to files: unlike two pipes, they cannot deadlock on a full buffer.
  TempDir dir("cdq-cli");
  const std::string out_path = dir.file("stdout"), err_path = dir.file("stderr");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  std::vector<std::string> argv_strings{program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = 0;
  const int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot run " + program + ": " + std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw std::runtime_error("waitpid failed for " + program);

  CliResult res;
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  res.out = read_file(out_path);
  res.err = read_file(err_path);
  return res;
}

CliResult run_cli(const std::vector<std::string>& args) {
  return run_program(cli_path(), args);
}

namespace {

std::string make_run_dir() {
  char buf[] = "/tmp/cdq-cliproc-XXXXXX";
  if (::mkdtemp(buf) == nullptr) throw std::runtime_error("mkdtemp failed");
  return buf;
}

}  // namespace

CliProcess::CliProcess(const std::vector<std::string>& args, const CliLimits& limits)
    : dir_(make_run_dir()), out_path_(dir_ + "/stdout"), err_path_(dir_ + "/stderr") {
  std::vector<std::string> argv_strings{cli_path()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || err < 0 || in < 0) throw std::runtime_error("cannot open the child's files");
  const pid_t pid = ::fork();
  if (pid == 0) {  // the child: async-signal-safe calls only, then exec
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    if (limits.max_file_bytes > 0) {
      const struct rlimit lim = {limits.max_file_bytes, limits.max_file_bytes};
      ::setrlimit(RLIMIT_FSIZE, &lim);
      ::signal(SIGXFSZ, SIG_IGN);  // survives exec: writes fail with EFBIG instead
    }
    ::execve(argv[0], argv.data(), environ);
    ::_exit(127);
  }
  ::close(out);
  ::close(err);
  ::close(in);
  if (pid < 0) throw std::runtime_error("fork failed");
  pid_ = pid;
}

CliProcess::~CliProcess() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

bool CliProcess::running() {
  if (reaped_) return false;
  const pid_t r = ::waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) reaped_ = true;
  return !reaped_;
}

void CliProcess::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

CliResult CliProcess::wait() {
  while (!reaped_) {
    if (::waitpid(pid_, &status_, 0) == pid_)
      reaped_ = true;
    else if (errno != EINTR)
      throw std::runtime_error("waitpid failed");
  }
  CliResult res;
  res.exit_code = WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  res.out = read_file(out_path_);
  res.err = read_file(err_path_);
  return res;
}

std::string CliProcess::err_so_far() const {
  return read_file(err_path_);
}

CliResult run_cli(const std::vector<std::string>& args, const CliLimits& limits) {
  CliProcess p(args, limits);
  return p.wait();
}

}  // namespace cdq::test
