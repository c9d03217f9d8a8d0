#include <cdquant/error.hpp>
#include <cdquant/text_file.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace cdq {

std::string read_file(const std::string& path, bool allow_empty) {
  std::error_code ec;
  CDQ_CHECK(std::filesystem::exists(path, ec), "{}: no such file", path);
  CDQ_CHECK(!std::filesystem::is_directory(path, ec), "{}: is a directory, expected a file", path);
  std::ifstream in(path, std::ios::binary);
  CDQ_CHECK(in.good(), "{}: cannot open for reading", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = std::move(ss).str();
  CDQ_CHECK(allow_empty || !text.empty(), "{}: the file is empty", path);
  return text;
}

}  // namespace cdq
