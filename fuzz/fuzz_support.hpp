// Shared by the libFuzzer harnesses: the readers take paths (they memory-map their files), so
// each input is written to a file in a private scratch directory first.
//
// Every harness treats cdq::Error as the reader's correct answer to a bad file and lets any
// other exception escape: an uncaught std::length_error or std::bad_alloc is a finding (the
// reader should have rejected the file with its own error), as is every sanitizer report.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

namespace cdq::fuzz {

// A directory of this process's own (TMPDIR or /tmp), removed at exit with what it holds.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string t = std::string(base && *base ? base : "/tmp") + "/cdq-fuzz-XXXXXX";
    if (mkdtemp(t.data()) == nullptr) {
      std::perror("cdq fuzz: mkdtemp");
      std::abort();
    }
    return t;
  }();
  return dir;
}

// The scratch files, removed at exit (a crash leaves them behind, in TMPDIR).
inline std::set<std::string>& scratch_files() {
  static std::set<std::string> files;
  static const bool registered = [] {
    std::atexit([] {
      for (const auto& f : scratch_files()) ::unlink(f.c_str());
      ::rmdir(scratch_dir().c_str());
    });
    return true;
  }();
  (void)registered;
  return files;
}

// Writes bytes to scratch_dir()/name (replacing it) and returns the path.
inline std::string write_file(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  scratch_files().insert(path);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror("cdq fuzz: writing the input");
    std::abort();
  }
  return path;
}

}  // namespace cdq::fuzz
