// JSON files: read with an error naming the file, written as an OutputFile.
#include "io/json_file.hpp"

#include <cdquant/error.hpp>
#include <cdquant/output_file.hpp>
#include <cdquant/text_file.hpp>

#include "io/json_limits.hpp"

namespace cdq {

using json = nlohmann::json;

json read_json_file(const std::string& path) {
  return parse_json_text(read_file(path), path);
}

void write_json_file(const std::string& path, const json& j) {
  OutputFile out(path);
  out.write(j.dump(2) + "\n");
  out.commit();
}

}  // namespace cdq
