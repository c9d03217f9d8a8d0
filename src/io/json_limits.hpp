// Structural limits checked on JSON text before it is parsed. nlohmann's parser is iterative,
// but copying, dumping and walking the parsed value recurse once per nesting level, and a DOM
// costs tens of bytes per element: a small hostile file (a normalizer nested 40,000 deep, a
// tensor shape of 45M entries) would overflow the stack or take gigabytes. The scan is linear
// in the text and allocates one counter per open level.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace cdq {

struct JsonLimits {
  int max_depth = 64;  // nesting of objects / arrays (the outermost is depth 1)
  // Most elements (members or array entries) of one container at depth i + 1; the last entry
  // applies to every deeper level; empty: no limit.
  std::vector<uint64_t> max_elements;
};

// Throws Error naming `what` when the text nests deeper or holds larger containers than
// allowed. Malformed JSON is left to the parser.
void check_json_limits(std::string_view text, const JsonLimits& limits, const std::string& what);

// check_json_limits, then nlohmann's parse; any parse error becomes an Error naming `what`.
nlohmann::json parse_json_text(std::string_view text, const std::string& what,
                               const JsonLimits& limits = {});

}  // namespace cdq
