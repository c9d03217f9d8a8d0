// Whole-file reads with clear errors (missing, unreadable, empty).
#pragma once

#include <string>

namespace cdq {

// The bytes of a file. Throws Error naming the file when it is missing or unreadable, and
// when it is empty unless allow_empty.
std::string read_file(const std::string& path, bool allow_empty = false);

}  // namespace cdq
