// A fresh temporary directory, removed with everything in it when the object dies.
#pragma once

#include <string>
#include <vector>

namespace cdq::test {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "cdq-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const;  // path() + "/" + name (not created)
  // Writes bytes to path()/name and returns the full path.
  std::string write(const std::string& name, const std::string& bytes) const;

 private:
  std::string path_;
};

// Names in dir of the form cdquant's outputs are built under (".NAME.RANDOM.tmp", see
// cdquant/output_file.hpp): what an unfinished output would leave behind.
std::vector<std::string> temporaries_in(const std::string& dir);

// Whole file as bytes (throws std::runtime_error when it cannot be read).
std::string read_file(const std::string& path);

}  // namespace cdq::test
