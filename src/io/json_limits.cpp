// check_json_limits: one pass over the text, tracking strings, nesting and element counts.
#include "io/json_limits.hpp"

#include <algorithm>
#include <cdquant/error.hpp>

namespace cdq {

namespace {

struct Level {
  uint64_t commas = 0;
};

}  // namespace

void check_json_limits(std::string_view text, const JsonLimits& limits, const std::string& what) {
  std::vector<Level> open;  // the containers enclosing the current position
  bool in_string = false, escaped = false;
  auto limit_at = [&](size_t depth) {  // depth >= 1
    if (limits.max_elements.empty()) return UINT64_MAX;
    return limits.max_elements[std::min(depth, limits.max_elements.size()) - 1];
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (ch == '\\')
        escaped = true;
      else if (ch == '"')
        in_string = false;
      continue;
    }
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') continue;
    if (ch == '"') {
      in_string = true;
    } else if (ch == '{' || ch == '[') {
      CDQ_CHECK(static_cast<int>(open.size()) < limits.max_depth,
                "{}: JSON nested deeper than {} levels (at byte {}): not a file this reads", what,
                limits.max_depth, i);
      open.push_back({});
    } else if (ch == '}' || ch == ']') {
      if (open.empty()) return;  // malformed: the parser says where
      open.pop_back();
    } else if (ch == ',' && !open.empty()) {
      const uint64_t elements = ++open.back().commas + 1;
      CDQ_CHECK(elements <= limit_at(open.size()),
                "{}: a JSON object or array at nesting level {} has more than {} elements (at byte "
                "{}): not a file this reads",
                what, open.size(), limit_at(open.size()), i);
    }
  }
}

nlohmann::json parse_json_text(std::string_view text, const std::string& what,
                               const JsonLimits& limits) {
  check_json_limits(text, limits, what);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", what, e.what());
  }
}

}  // namespace cdq
