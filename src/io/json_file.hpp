// JSON files (config.json, quantize_config.json, tokenizer.json).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace cdq {

// The parsed file (throws Error naming the file on bad JSON).
nlohmann::json read_json_file(const std::string& path);
// Writes JSON (indented) as an OutputFile (atomic, never through a link).
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace cdq
