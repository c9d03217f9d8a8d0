// JSON files: read with an error naming the file, written through a temporary file.
#include "io/json_file.hpp"

#include <cdquant/error.hpp>
#include <cdquant/text_file.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "io/json_limits.hpp"

namespace cdq {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json_file(const std::string& path) {
  return parse_json_text(read_file(path), path);
}

void write_json_file(const std::string& path, const json& j) {
  const std::string tmp = path + ".tmp";
  const std::string text = j.dump(2) + "\n";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  CDQ_CHECK(f != nullptr, "{}: cannot create: {}", tmp, std::strerror(errno));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::error_code ec;
    fs::remove(tmp, ec);
    fail("{}: write failed", tmp);
  }
  fs::rename(tmp, path);
}

}  // namespace cdq
